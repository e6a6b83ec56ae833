"""The config file schema: which keys exist where, and how each value is checked.

Each checker takes the raw value and whether it is text to parse (an environment
variable or a flag) rather than a TOML or YAML value to type-check, and returns the typed
value or raises :class:`Invalid` with a message that says what was expected. The loader
(:mod:`reproq.config.load`) adds where the value came from. Numbers and durations have
upper bounds (:mod:`reproq.engine.bounds`): a value the runtime cannot run is refused
where it is written, not when a task first meets it.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from reproq.config.settings import (
    ExecutorKind,
    MisfirePolicy,
    MockOptions,
    PayloadMode,
    PoolOptions,
    ProcessOptions,
    SubprocessOptions,
    ThreadOptions,
)
from reproq.durations import DurationError, parse_duration
from reproq.engine.bounds import (
    MAX_BYTES,
    MAX_CONCURRENCY,
    MAX_CONNECTIONS,
    MAX_DB_INT,
    MAX_DURATION,
    MAX_LEASE_SECONDS,
    MAX_POOL_SIZE,
)
from reproq.schedule.cron import CronSchedule, split_cron_tz

_E = TypeVar("_E", bound=StrEnum)


class Invalid(Exception):
    """A value is unusable; the message says why (the caller adds where)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


Coerce = Callable[[object, bool], object]


# --- value checkers ----------------------------------------------------------------------


def describe(raw: object) -> str:
    if isinstance(raw, bool):
        return f"boolean {str(raw).lower()}"
    if isinstance(raw, int):
        return f"integer {raw}"
    if isinstance(raw, float):
        return f"float {raw}"
    if isinstance(raw, str):
        return f"string {raw!r}"
    if isinstance(raw, list | tuple):
        return "an array"
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, datetime | date | time):
        return f"date-time {raw.isoformat()}"
    return type(raw).__name__


def string(raw: object, text: bool) -> object:
    if not isinstance(raw, str):
        raise Invalid(f"expected a string, got {describe(raw)}")
    if not raw.strip():
        raise Invalid("must not be empty")
    return raw


def _optional_string(raw: object, text: bool) -> object:
    if not isinstance(raw, str):
        raise Invalid(f"expected a string, got {describe(raw)}")
    return raw or None


def _integer(minimum: int | None = None, maximum: int | None = None) -> Coerce:
    def check(raw: object, text: bool) -> object:
        value: object = raw
        if text and isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise Invalid(f"expected an integer, got {raw!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {describe(raw)}")
        _bounds(value, minimum, maximum)
        return value

    return check


def _number(minimum: float | None = None, maximum: float | None = None) -> Coerce:
    def check(raw: object, text: bool) -> object:
        value: object = raw
        if text and isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise Invalid(f"expected a number, got {raw!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"expected a number, got {describe(raw)}")
        if not math.isfinite(value):
            raise Invalid(f"expected a finite number, got {value}")
        _bounds(value, minimum, maximum)
        return float(value)

    return check


def _bounds(value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        if minimum == 1:
            raise Invalid(f"must be positive, got {value}")
        raise Invalid(f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise Invalid(f"must be at most {maximum}, got {value:g}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _boolean(raw: object, text: bool) -> object:
    if text and isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise Invalid(f"expected true or false, got {raw!r}")
    if not isinstance(raw, bool):
        raise Invalid(f"expected true or false, got {describe(raw)}")
    return raw


def _duration(*, positive: bool, maximum: int = MAX_DURATION) -> Coerce:
    def check(raw: object, text: bool) -> object:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise Invalid(
                f"expected a duration (seconds or a string like '30s'), got {describe(raw)}"
            )
        try:
            seconds = parse_duration(raw, maximum=maximum)
        except DurationError as exc:
            raise Invalid(str(exc)) from None
        if positive and seconds <= 0:
            raise Invalid(f"must be a positive duration, got {raw!r}")
        if seconds > maximum:
            raise Invalid(f"must be at most {maximum} ({_days(maximum)}), got {raw!r}")
        return seconds

    return check


def _days(seconds: int) -> str:
    return f"{seconds // 86400}d"


def _mock_duration(raw: object, text: bool) -> object:
    """Seconds, or a range ``"0.1-0.5"`` / ``[0.1, 0.5]`` drawn uniformly per task."""
    if isinstance(raw, list | tuple) or (isinstance(raw, str) and "-" in raw.strip().lstrip("-")):
        parts = raw if isinstance(raw, list | tuple) else raw.split("-", 1)
        if len(parts) != 2:
            raise Invalid(f"expected seconds or a range like '0.1-0.5', got {describe(raw)}")
        low, high = (_NON_NEGATIVE(part, isinstance(part, str)) for part in parts)
        assert isinstance(low, float) and isinstance(high, float)
        if high < low:
            raise Invalid(f"the range {raw!r} ends before it starts")
        return (low, high)
    return _NON_NEGATIVE(raw, text)


def _optional_port(raw: object, text: bool) -> object:
    """A TCP port where 0 means "pick a free one" (None)."""
    return _integer(minimum=0, maximum=65535)(raw, text) or None


def _optional_duration(raw: object, text: bool) -> object:
    """A duration where 0 or "" means none."""
    if raw == "":
        return None
    seconds = _duration(positive=False)(raw, text)
    return seconds or None


def _path(raw: object, text: bool) -> object:
    if isinstance(raw, Path):
        return raw.expanduser()
    return Path(str(string(raw, text))).expanduser()


def _optional_path(raw: object, text: bool) -> object:
    if raw == "":
        return None
    return _path(raw, text)


def _string_list(*, nonempty: bool) -> Coerce:
    def check(raw: object, text: bool) -> object:
        items: object = raw
        if isinstance(raw, str) and text:
            items = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(items, list | tuple):
            raise Invalid(f"expected an array of strings, got {describe(raw)}")
        for item in items:
            if not isinstance(item, str) or not item.strip():
                raise Invalid(f"expected non-empty strings, got {describe(item)}")
        if nonempty and not items:
            raise Invalid("must list at least one queue")
        return tuple(str(item).strip() for item in items)

    return check


def _choice(enum: type[_E]) -> Coerce:
    def check(raw: object, text: bool) -> object:
        names = [member.value for member in enum]
        if isinstance(raw, str) and raw.strip().lower() in names:
            return enum(raw.strip().lower())
        hint = did_you_mean(str(raw).lower(), names)
        shown = raw if isinstance(raw, str) else describe(raw)
        raise Invalid(f"unknown value {shown!r}; expected one of {', '.join(names)}{hint}")

    return check


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: object, text: bool) -> object:
    if isinstance(raw, str) and raw.strip().upper() in _LEVELS:
        return raw.strip().upper()
    hint = did_you_mean(str(raw).upper(), _LEVELS)
    raise Invalid(f"unknown log level {raw!r}; expected one of {', '.join(_LEVELS)}{hint}")


def _address(raw: object, text: bool) -> object:
    value = str(string(raw, text)).strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise Invalid(f"expected host:port (e.g. 127.0.0.1:9090), got {value!r}")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            raise Invalid(f"invalid IPv6 address in {value!r}") from None
    return value


def _cidrs(raw: object, text: bool) -> object:
    items = _string_list(nonempty=False)(raw, text)
    assert isinstance(items, tuple)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise Invalid(f"invalid CIDR {item!r} (expected e.g. 10.0.0.0/8 or ::1/128)") from None
    return items


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h|d)\s*$")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _rate(raw: object, text: bool) -> object:
    """Tokens per second: a number, or ``"N/s"``, ``"N/m"``, ``"N/h"``, ``"N/d"``."""
    if isinstance(raw, str):
        match = _RATE.match(raw)
        if match:
            return float(match.group(1)) / _RATE_UNITS[match.group(2)]
        if not text:
            raise Invalid(f"expected a rate (tasks per second, or '10/m'), got {raw!r}")
    try:
        return _number(minimum=0)(raw, text)
    except Invalid:
        raise Invalid(
            f"expected a rate (tasks per second, or '10/m'), got {describe(raw)}"
        ) from None


def check_cron(raw: object, text: bool) -> tuple[str, str | None]:
    """(the five fields, the zone of a ``CRON_TZ=`` prefix or None), as beat will read them."""
    expression = str(string(raw, text)).strip()
    zone, _ = split_cron_tz(expression)
    if zone:
        try:
            check_timezone(zone, text)
        except Invalid as exc:
            raise Invalid(f"CRON_TZ: {exc.message}") from None
    try:
        schedule = CronSchedule.parse(expression)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return schedule.fields, zone


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(raw: object, text: bool) -> object:
    name = str(string(raw, text)).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, _zones(), case_blind=True)
        raise Invalid(f"unknown timezone {name!r}{hint}") from None
    return name


_TASK_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def _task_path(raw: object, text: bool) -> object:
    value = str(string(raw, text)).strip()
    if not _TASK_PATH.match(value):
        raise Invalid(f"expected a dotted task path like 'myapp.tasks.send_email', got {value!r}")
    return value


def _json_value(value: object) -> Any:
    """A frozen copy of a JSON value (arrays → tuples, tables → read-only mappings)."""
    if isinstance(value, datetime | date | time):
        raise Invalid("dates and times are not JSON values; write them as strings")
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid(f"{value} is not a JSON number")
    if isinstance(value, list | tuple):
        return tuple(_json_value(item) for item in value)
    if isinstance(value, dict):
        return MappingProxyType({str(k): _json_value(v) for k, v in value.items()})
    return value


def _args(raw: object, text: bool) -> object:
    if not isinstance(raw, list | tuple):
        raise Invalid(f"expected an array of positional arguments, got {describe(raw)}")
    return _json_value(raw)


def _kwargs(raw: object, text: bool) -> object:
    if not isinstance(raw, dict):
        raise Invalid(f"expected a table of keyword arguments, got {describe(raw)}")
    return _json_value(raw)


def did_you_mean(word: str, choices: Iterable[str], *, case_blind: bool = False) -> str:
    options = list(choices)
    if case_blind:
        lowered = {choice.lower(): choice for choice in options}
        close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        return f"; did you mean {lowered[close[0]]!r}?" if close else ""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- the schema --------------------------------------------------------------------------

_POSITIVE = _duration(positive=True)
_NON_NEGATIVE = _duration(positive=False)
_CONCURRENCY = _integer(minimum=1, maximum=MAX_CONCURRENCY)
_CONNECTIONS = _integer(minimum=1, maximum=MAX_CONNECTIONS)
_BYTES = _integer(minimum=1, maximum=MAX_BYTES)
_COUNT = _integer(minimum=0, maximum=MAX_DB_INT)

SCALARS: dict[str, dict[str, Coerce]] = {
    "database": {
        "dsn": _optional_string,
        "pool_size": _integer(minimum=1, maximum=MAX_POOL_SIZE),
        "embedded_data_dir": _path,
        "embedded_port": _optional_port,
    },
    "worker": {
        "worker_id": _optional_string,
        "lease_seconds": _duration(positive=True, maximum=MAX_LEASE_SECONDS),
        "heartbeat_seconds": _POSITIVE,
        "reclaim_interval_seconds": _NON_NEGATIVE,
        "priority_aging_factor": _number(minimum=0, maximum=MAX_DURATION),
        "allowed_task_modules": _string_list(nonempty=False),
        "shutdown_timeout": _NON_NEGATIVE,
        "logs_dir": _optional_path,
        "max_payload_bytes": _BYTES,
        "max_output_bytes": _BYTES,
        "poll_interval": _POSITIVE,
        # Shorthand for the one default pool, as in upstream's flat [worker] table.
        "concurrency": _CONCURRENCY,
        "connections": _CONNECTIONS,
        "queues": _string_list(nonempty=True),
        "executor": _choice(ExecutorKind),
        "timeout_seconds": _optional_duration,
        "python_bin": string,
        "executor_module": string,
        "payload_mode": _choice(PayloadMode),
        "max_tasks_per_child": _COUNT,
        "max_memory_mb": _COUNT,
        "mock_duration": _mock_duration,
        "mock_failure_rate": _number(minimum=0, maximum=1),
        "mock_seed": _integer(),
    },
    "beat": {"enabled": _boolean, "tick": _POSITIVE},
    "metrics": {
        "enabled": _boolean,
        "addr": _address,
        "auth_token": _optional_string,
        "allowed_cidrs": _cidrs,
        "port": _integer(minimum=0, maximum=65535),
        "tls_cert": _optional_path,
        "tls_key": _optional_path,
        "tls_client_ca": _optional_path,
        "auth_limit": _integer(minimum=1, maximum=1_000_000),
        "auth_window": _POSITIVE,
        "auth_max_entries": _integer(minimum=1, maximum=1_000_000),
    },
    "logging": {"level": _log_level, "json": _boolean},
}

# Keys of [worker] that describe the default pool rather than the worker.
SHORTHAND = {
    "concurrency": "concurrency",
    "connections": "connections",
    "queues": "queues",
    "executor": "executor",
    "timeout_seconds": "timeout_seconds",
    "python_bin": "python",
    "executor_module": "module",
    "payload_mode": "payload_mode",
    "max_tasks_per_child": "max_tasks_per_child",
    "max_memory_mb": "max_memory_mb",
    "mock_duration": "duration",
    "mock_failure_rate": "failure_rate",
    "mock_seed": "seed",
}

OPTION_SHORTHAND = (
    "python",
    "module",
    "payload_mode",
    "max_tasks_per_child",
    "max_memory_mb",
    "duration",
    "failure_rate",
    "seed",
)
"""Shorthand fields that are executor options rather than pool fields."""

SUBPROCESS_SHORTHAND = ("python", "module", "payload_mode")
"""Options that only the subprocess executor has: giving one chooses that executor."""

# Upstream spellings: key → canonical dotted key (a str) or why it is ignored (a Note).


@dataclass(frozen=True, slots=True)
class Note:
    """Why an upstream key does nothing in reproq."""

    reason: str
    unsupported: bool = False  # a non-empty value is an error rather than a warning
    harmless: bool = False  # a flag may give it too (with a warning): nothing is lost


ALIASES: dict[str, dict[str, str | Note]] = {
    "worker": {
        "dsn": "database.dsn",
        "exec_timeout": "worker.timeout_seconds",
        "process_role": Note(
            "reproq labels its events with worker ids, not process roles", harmless=True
        ),
        "max_stdout_bytes": "worker.max_output_bytes",
        "max_stderr_bytes": "worker.max_output_bytes",
        "poll_max_backoff": "worker.poll_interval",
        "poll_min_backoff": Note("reproq wakes on LISTEN/NOTIFY and polls every poll_interval"),
        "max_attempts_default": Note("each task spec carries its own exec.max_attempts"),
    },
    "beat": {"dsn": "database.dsn", "interval": "beat.tick"},
    "metrics": {
        "allow_cidrs": "metrics.allowed_cidrs",
    },
}

# Several file keys may feed one setting; these merge instead of conflicting.
MERGE_MAX = {"worker.max_output_bytes"}

POOL_KEYS: dict[str, Coerce] = {
    "name": string,
    "queues": _string_list(nonempty=True),
    "concurrency": _CONCURRENCY,
    "connections": _CONNECTIONS,
    "executor": _choice(ExecutorKind),
    "timeout_seconds": _optional_duration,
}

OPTIONS: dict[ExecutorKind, tuple[type[PoolOptions], dict[str, Coerce]]] = {
    ExecutorKind.THREAD: (ThreadOptions, {}),
    ExecutorKind.PROCESS: (
        ProcessOptions,
        {"max_tasks_per_child": _COUNT, "max_memory_mb": _COUNT},
    ),
    ExecutorKind.SUBPROCESS: (
        SubprocessOptions,
        {"python": string, "module": string, "payload_mode": _choice(PayloadMode)},
    ),
    ExecutorKind.MOCK: (
        MockOptions,
        {
            "duration": _mock_duration,
            "failure_rate": _number(minimum=0, maximum=1),
            "seed": _integer(),
        },
    ),
}

_BURST = _integer(minimum=1, maximum=MAX_DB_INT)

QUEUE_KEYS: dict[str, Coerce] = {
    "paused": _boolean,
    "reason": _optional_string,
    "rate": _rate,
    "burst": _BURST,
    "concurrency": _integer(minimum=0),
}

LIMIT_KEYS: dict[str, Coerce] = {"rate": _rate, "burst": _BURST}
LIMIT_KEY = re.compile(r"^(global|task:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*|queue:\S+)$")

SCHEDULE_KEYS: dict[str, Coerce] = {
    "name": string,
    "cron": string,  # checked by check_cron, which also yields the zone
    "timezone": check_timezone,
    "task": _task_path,
    "args": _args,
    "kwargs": _kwargs,
    "queue": string,
    "priority": _integer(minimum=-MAX_DB_INT - 1, maximum=MAX_DB_INT),
    "max_attempts": _integer(minimum=1, maximum=MAX_DB_INT),
    "enabled": _boolean,
    "misfire": _choice(MisfirePolicy),
    "misfire_limit": _integer(minimum=1, maximum=100_000),
    "concurrency_key": _optional_string,
    "concurrency_limit": _COUNT,
}

TOP_KEYS = (
    "database",
    "worker",
    "pools",
    "queues",
    "limits",
    "schedules",
    "beat",
    "metrics",
    "logging",
    "dsn",
)

POOL_OVERRIDE = re.compile(
    r"^pools\.([^.]+)\.(concurrency|connections|queues|executor|timeout_seconds|options\.\w+)$"
)
"""A flag's override of one pool's field or option: ``pools.NAME.concurrency``."""


def default_burst(rate: float) -> int:
    """One second's worth of tokens, so a limit above 1/s is reachable by batched claims."""
    return max(1, math.ceil(rate))
