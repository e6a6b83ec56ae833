"""Rendering settings as TOML for ``reproq config show``.

tomli-w cannot write comments, so each ``key = value`` line is rendered on its own (values
by tomli-w, inline) and the source of the value is appended as a trailing comment. The
result is valid TOML that loads back to the same settings (apart from redacted secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from reproq.config.settings import PoolSettings, ScheduleSettings, Settings
from reproq.config.text import inline_toml, toml_key
from reproq.db import redact_dsn

__all__ = ["render", "show_settings"]

_REDACTED = "***"


def show_settings(settings: Settings) -> str:
    """The effective configuration as TOML, each value followed by its source, secrets hidden."""
    return render(settings)


def render(settings: Settings) -> str:
    """The effective configuration of *settings* as annotated TOML."""
    origin = f" (from {settings.source_file})" if settings.source_file else ""
    out = [
        f"# Effective reproq configuration{origin}.",
        "# After each value: its source (default, file:PATH, env:VAR or flag:--NAME).",
        "# Durations are in seconds; secrets are shown as ***.",
    ]
    database = {f.name: getattr(settings.database, f.name) for f in fields(settings.database)}
    if database["dsn"]:
        database["dsn"] = redact_dsn(database["dsn"])
    embedded = "is not set: reproq up runs an embedded PostgreSQL"
    _table(out, "[database]", "database", database, settings, unset={"dsn": embedded})
    _table(out, "[worker]", "worker", _values(settings.worker), settings)
    for pool in settings.pools:
        _pool(out, pool, settings)
    for queue in settings.queues:
        values = _values(queue)
        del values["name"]
        _table(out, f"[queues.{toml_key(queue.name)}]", f"queues.{queue.name}", values, settings)
    queue_rates = {f"queue:{q.name}" for q in settings.queues if q.rate is not None}
    explicit = [limit for limit in settings.limits if limit.key not in queue_rates]
    if explicit:
        out += ["", "[limits]"]
        rows = [
            (
                f"{toml_key(limit.key)} = "
                + inline_toml({"rate": limit.rate, "burst": limit.burst}),
                settings.source_of(f"limits.{limit.key}.rate"),
            )
            for limit in explicit
        ]
        out += _aligned(rows)
    for schedule in settings.schedules:
        _schedule(out, schedule, settings)
    _table(out, "[beat]", "beat", _values(settings.beat), settings)
    metrics = _values(settings.metrics)
    if metrics["auth_token"]:
        metrics["auth_token"] = _REDACTED
    _table(out, "[metrics]", "metrics", metrics, settings)
    _table(out, "[logging]", "logging", _values(settings.logging), settings)
    if settings.warnings:
        out += ["", "# Warnings:"] + [f"#   {warning}" for warning in settings.warnings]
    return "\n".join(out) + "\n"


def _values(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _pool(out: list[str], pool: PoolSettings, settings: Settings) -> None:
    values = _values(pool)
    options = values.pop("options")
    label = f"pools.{pool.name}"
    _table(out, "[[pools]]", label, values, settings)
    option_values = _values(options)
    if option_values:
        _table(out, "[pools.options]", f"{label}.options", option_values, settings, blank=False)


def _schedule(out: list[str], schedule: ScheduleSettings, settings: Settings) -> None:
    _table(out, "[[schedules]]", f"schedules.{schedule.name}", _values(schedule), settings)


def _table(
    out: list[str],
    header: str,
    prefix: str,
    values: Mapping[str, Any],
    settings: Settings,
    *,
    blank: bool = True,
    unset: Mapping[str, str] | None = None,
) -> None:
    if blank:
        out.append("")
    out.append(header)
    rows: list[tuple[str, str]] = []
    for key, value in values.items():
        source = settings.source_of(f"{prefix}.{key}")
        if value is None:
            rows.append((f"# {key} {(unset or {}).get(key, 'is not set')}", source))
        else:
            rows.append((f"{toml_key(key)} = {inline_toml(_plain(value))}", source))
    out += _aligned(rows)


def _aligned(rows: list[tuple[str, str]]) -> list[str]:
    """``text  # source`` lines with the comments lined up (long lines are not padded)."""
    width = max((len(text) for text, _ in rows if len(text) <= 48), default=0)
    return [f"{text.ljust(width)}  # {source}" for text, source in rows]


def _plain(value: object) -> object:
    """A value tomli-w can write: paths and enums as strings, frozen containers thawed."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
