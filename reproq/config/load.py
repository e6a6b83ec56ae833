"""Building :class:`~reproq.config.settings.Settings` from a config file, the environment
and flags: the one settings path of every command.

:class:`~reproq.config.layers.Layers` reads the raw values of each layer; the builder
here checks them against the schema and assembles the settings, reporting each bad value
(file, dotted key, line) and leaving it at its default so the rest can still be checked,
which is what ``reproq config check`` needs. Upstream's flat keys (the Go worker's TOML and
YAML files) are read by the same walk and mapped onto the model, keeping their own
location for errors.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from reproq.config.layers import Cell, Entry, Layers
from reproq.config.schema import (
    LIMIT_KEYS,
    OPTION_SHORTHAND,
    OPTIONS,
    POOL_KEYS,
    QUEUE_KEYS,
    SCALARS,
    SCHEDULE_KEYS,
    SHORTHAND,
    SUBPROCESS_SHORTHAND,
    Invalid,
    check_cron,
    default_burst,
    describe,
    did_you_mean,
    string,
)
from reproq.config.settings import (
    BeatSettings,
    DatabaseSettings,
    ExecutorKind,
    LoggingSettings,
    MetricsSettings,
    PoolOptions,
    PoolSettings,
    QueueSettings,
    RateLimitSettings,
    ScheduleSettings,
    Settings,
    SubprocessOptions,
    WorkerSettings,
)
from reproq.config.text import KeyPath, dotted_key
from reproq.engine.bounds import DEFAULT_CONCURRENCY
from reproq.errors import ConfigError

__all__ = ["CONFIG_FILE_NAMES", "check_file", "load", "load_settings", "resolve_config_path"]

CONFIG_FILE_NAMES = (
    "reproq.yaml",
    "reproq.yml",
    "reproq.toml",
    ".reproq.yaml",
    ".reproq.yml",
    ".reproq.toml",
)
"""Files a command reads from the working directory when it is given no config (the Go
worker's names, in its order)."""

DJANGO_EXECUTOR_MODULE = SubprocessOptions().module
"""reproq-django's side of the executor contract."""


def load_settings(
    path: Path | str | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """The effective :class:`Settings`: defaults < file *path* < *env* < *overrides*.

    *env* defaults to ``os.environ``. *overrides* maps dotted keys to values from
    command-line flags (``{"worker.lease_seconds": 30, "database.dsn": "..."}``, also
    ``"worker.concurrency"``/``"worker.queues"`` for a one-pool config and
    ``"pools.NAME.concurrency"``), each a plain value or a
    :class:`~reproq.config.layers.Flag` naming its flag; None and empty values are
    skipped, so unset flags can be passed as they are. Raises :class:`ConfigError` (the
    first problem, with a count of the rest).
    """
    settings, problems = load(
        Path(path) if path is not None else None,
        env=os.environ if env is None else env,
        overrides=overrides or {},
    )
    if problems:
        first = problems[0]
        if len(problems) > 1:
            more = len(problems) - 1
            hint = f" (and {more} more problem{'s' if more > 1 else ''}"
            hint += f"; run `reproq config check {path}`)" if path is not None else ")"
            raise ConfigError(first.message + hint, file=first.file, key=first.key, line=first.line)
        raise first
    assert settings is not None
    return settings


def check_file(path: Path | str, *, env: Mapping[str, str] | None = None) -> list[ConfigError]:
    """Every problem of config file *path* (empty when it is valid), in file order."""
    _, problems = load(Path(path), env=os.environ if env is None else env, overrides={})
    return problems


def resolve_config_path(
    explicit: str | Path | None,
    env: Mapping[str, str] | None = None,
    *,
    directory: Path | None = None,
) -> Path | None:
    """The config file to use: *explicit*, else ``$REPROQ_CONFIG``, else the first of
    :data:`CONFIG_FILE_NAMES` in *directory* (the working directory), else None."""
    if explicit:
        return Path(explicit)
    value = (os.environ if env is None else env).get("REPROQ_CONFIG")
    if value:
        return Path(value)
    folder = directory if directory is not None else Path.cwd()
    for name in CONFIG_FILE_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return Path(name) if directory is None else candidate
    return None


def load(
    path: Path | None, *, env: Mapping[str, str], overrides: Mapping[str, object]
) -> tuple[Settings | None, list[ConfigError]]:
    """Settings from *path* (if any), *env* and *overrides*, or None and every problem."""
    builder = _Builder(path, env)
    builder.read_file()
    builder.read_env()
    builder.read_overrides(overrides)
    settings = builder.build()
    problems = builder.sorted_problems()
    return (None if problems else settings), problems


def django_project(env: Mapping[str, str]) -> bool:
    """Whether tasks are a Django project's: its settings module is named in *env* and
    reproq-django, whose executor runs them, is importable."""
    return bool(env.get("DJANGO_SETTINGS_MODULE")) and (
        importlib.util.find_spec("reproq_django") is not None
    )


class _Builder(Layers):
    def section(self, name: str, cls: type[Any]) -> Any:
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            key = f"{name}.{f.name}"
            cell = self.cells.get(key)
            value = self.value(key, SCALARS[name][f.name], cell)
            if value is MISSING:
                self.sources[key] = "default"
                continue
            assert cell is not None
            kwargs[f.name] = value
            self.sources[key] = cell.source
        return cls(**kwargs)

    def build(self) -> Settings:
        database = self.section("database", DatabaseSettings)
        worker = self.section("worker", WorkerSettings)
        self.check_heartbeat(worker)
        self.check_prefixes(worker)
        beat = self.section("beat", BeatSettings)
        metrics = self.build_metrics()
        logging = self.section("logging", LoggingSettings)
        pools = self.build_pools()
        queues, limits = self.build_queues_and_limits()
        schedules = self.build_schedules(worker)
        return Settings(
            database=database,
            worker=worker,
            pools=pools,
            queues=queues,
            limits=limits,
            schedules=schedules,
            beat=beat,
            metrics=metrics,
            logging=logging,
            source_file=self.path,
            sources=MappingProxyType(dict(sorted(self.sources.items()))),
            warnings=tuple(self.warnings),
        )

    def check_heartbeat(self, worker: WorkerSettings) -> None:
        if worker.heartbeat_seconds < worker.lease_seconds:
            return
        for key in ("worker.heartbeat_seconds", "worker.lease_seconds"):
            cell = self.cells.get(key)
            if cell is not None:
                self.fail(
                    key,
                    cell,
                    f"heartbeat_seconds ({worker.heartbeat_seconds:g}) must be shorter than "
                    f"lease_seconds ({worker.lease_seconds:g}), or leases expire between "
                    "heartbeats",
                )
                return

    def check_prefixes(self, worker: WorkerSettings) -> None:
        cell = self.cells.get("worker.allowed_task_modules")
        if cell is None or cell.path is None:
            return
        for prefix in worker.allowed_task_modules:
            if prefix != "*" and not prefix.endswith("."):
                self.warn_at(
                    cell.path,
                    f"prefix {prefix!r} has no trailing dot, so it also allows "
                    f"'{prefix}_other.task'; write '{prefix}.' to allow one package",
                )

    def build_metrics(self) -> MetricsSettings:
        port_cell = self.cells.get("metrics.port")
        port = self.value("metrics.port", SCALARS["metrics"]["port"], port_cell)
        addr_cell = self.cells.get("metrics.addr")
        if port_cell is not None and isinstance(port, int) and port > 0:
            if addr_cell is None or addr_cell.raw in ("", None):
                # Upstream: port alone listens on every interface; addr wins over port.
                self.cells["metrics.addr"] = Cell(f"0.0.0.0:{port}", port_cell.source)
        elif addr_cell is not None and addr_cell.raw == "":
            del self.cells["metrics.addr"]  # upstream's "no metrics"
        addr_cell = self.cells.get("metrics.addr")
        if "metrics.enabled" not in self.cells and addr_cell is not None:
            # Giving an address is asking for the endpoint.
            self.cells["metrics.enabled"] = Cell(True, addr_cell.source)
        metrics: MetricsSettings = self.section("metrics", MetricsSettings)
        self.check_tls(metrics)
        return metrics

    def check_tls(self, metrics: MetricsSettings) -> None:
        """A key needs its certificate and the reverse; a client CA needs both."""
        needs = (
            ("metrics.tls_cert", metrics.tls_cert, metrics.tls_key, "tls_key"),
            ("metrics.tls_key", metrics.tls_key, metrics.tls_cert, "tls_cert"),
            ("metrics.tls_client_ca", metrics.tls_client_ca, metrics.tls_cert, "tls_cert"),
        )
        for key, given, other, missing in needs:
            cell = self.cells.get(key)
            if given is not None and other is None and cell is not None:
                self.fail(
                    key, cell, f"needs metrics.{missing} too (TLS takes a certificate and its key)"
                )

    # -- pools

    def build_pools(self) -> tuple[PoolSettings, ...]:
        shorthand = {
            field: self.cells[f"worker.{key}"]
            for key, field in SHORTHAND.items()
            if f"worker.{key}" in self.cells
        }
        options = {k: shorthand.pop(k) for k in OPTION_SHORTHAND if k in shorthand}
        pools: list[PoolSettings] = []
        if self.pools is None:
            pools_in = [Entry(("pools", 0), {})]
            shorthand_target = True
        else:
            pools_in = self.pools
            if not pools_in:
                self.fail_at(("pools",), "at least one pool is needed")
            for field, cell in [*shorthand.items(), *options.items()]:
                if cell.path is not None:
                    where = "in a pool's options" if field in options else "on each pool"
                    self.fail_at(cell.path, f"only valid without [[pools]]; set it {where} instead")
                elif len(pools_in) != 1:
                    choose = (
                        "choose one with --pool NAME"
                        if cell.source.startswith("flag:")
                        else f"set pools.NAME.{field} for one of them"
                    )
                    self.fail(
                        f"pools.*.{field}", cell, f"the config has {len(pools_in)} pools; {choose}"
                    )
            shorthand_target = len(pools_in) == 1
            shorthand = {f: c for f, c in shorthand.items() if c.path is None}
            options = {f: c for f, c in options.items() if c.path is None and shorthand_target}
        names: dict[str, KeyPath] = {}
        for entry in pools_in:
            cells = dict(entry.cells)
            if shorthand_target:
                cells.update(shorthand)
            pool = self.build_pool(entry, cells, options, default_name=self.pools is None)
            if pool is None:
                continue
            if pool.name in names:
                first = self.lines.line_of(names[pool.name])
                self.fail_at(
                    (*entry.path, "name"),
                    f"duplicate pool name {pool.name!r} (first at line {first})",
                )
                continue
            names[pool.name] = (*entry.path, "name")
            pools.append(pool)
        for name, cells in self.pool_overrides.items():
            if name not in names:
                for field, cell in cells.items():
                    self.fail(
                        f"pools.{name}.{field}",
                        cell,
                        f"no pool named {name!r}" + did_you_mean(name, names),
                    )
        return tuple(pools) if pools else (PoolSettings(name="default", queues=("default",)),)

    def build_pool(
        self,
        entry: Entry,
        cells: dict[str, Cell],
        option_cells: dict[str, Cell],
        *,
        default_name: bool,
    ) -> PoolSettings | None:
        raw_options = cells.pop("options", None)
        for key in cells:
            if key not in POOL_KEYS:
                self.fail_at(
                    (*entry.path, key), "unknown key" + did_you_mean(key, [*POOL_KEYS, "options"])
                )
        ok = True
        name = self.value("pools.name", string, cells.get("name"))
        if name is MISSING:
            if default_name:
                name = "default"
            else:
                ok = False
                if "name" not in cells:
                    self.fail_at(entry.path, "pool has no name")
        label = f"pools.{name}" if isinstance(name, str) else dotted_key(entry.path)
        if isinstance(name, str):
            for key, flag in self.pool_overrides.get(name, {}).items():
                option = key.partition("options.")[2]
                if option:
                    option_cells = {**option_cells, option: flag}
                else:
                    cells[key] = flag
            name_cell = cells.get("name")
            self.sources[f"{label}.name"] = name_cell.source if name_cell else "default"
        values: dict[str, object] = {}
        for key in ("queues", "concurrency", "connections", "executor", "timeout_seconds"):
            cell = cells.get(key)
            value = self.value(f"{label}.{key}", POOL_KEYS[key], cell)
            if value is MISSING:
                if key == "queues" and not default_name:
                    ok = False
                    if cell is None:
                        self.fail_at(entry.path, 'pool has no queues: add queues = ["..."]')
                continue
            assert cell is not None
            values[key] = value
            self.sources[f"{label}.{key}"] = cell.source
        if default_name:
            values.setdefault("queues", ("default",))
        executor = values.get("executor")
        if executor is None:
            executor, source = self.default_executor(option_cells, one_pool=default_name)
            values["executor"] = executor
            self.sources[f"{label}.executor"] = source
        assert isinstance(executor, ExecutorKind)
        for field in ("queues", "concurrency", "connections", "timeout_seconds"):
            self.sources.setdefault(f"{label}.{field}", "default")
        connections = values.get("connections", 1)
        concurrency = values.get("concurrency", DEFAULT_CONCURRENCY)
        connections_cell = cells.get("connections")
        if (
            connections_cell is not None
            and isinstance(connections, int)
            and isinstance(concurrency, int)
            and connections > concurrency
        ):
            ok = False
            self.fail(
                f"{label}.connections",
                connections_cell,
                f"must not exceed concurrency ({concurrency}): every connection's lane "
                f"needs a slot, got {connections}",
            )
        chosen_by_flag = self.sources[f"{label}.executor"].startswith("flag:")
        options = self.build_options(
            label, entry.path, executor, raw_options, option_cells, chosen_by_flag=chosen_by_flag
        )
        if not ok or not isinstance(name, str):
            return None
        return PoolSettings(name=name, options=options, **values)  # type: ignore[arg-type]

    def default_executor(
        self, option_cells: Mapping[str, Cell], *, one_pool: bool
    ) -> tuple[ExecutorKind, str]:
        """The executor of a pool that names none, and the source of that choice.

        The rule (docs/configuration.md, "Which executor runs the tasks"): an option only
        the subprocess executor has (``payload_mode``, ``python_bin``, ``executor_module``:
        the Go worker's flat shape, which always ran ``python -m executor_module``) chooses
        it; so does, for the one pool of a file without ``[[pools]]``, a Django project
        (``DJANGO_SETTINGS_MODULE`` set and reproq-django importable), whose tasks need
        Django set up by ``reproq_django.executor``. Otherwise tasks run in threads.
        """
        implied_by = next(
            (cell for key, cell in option_cells.items() if key in SUBPROCESS_SHORTHAND), None
        )
        if implied_by is not None:
            return ExecutorKind.SUBPROCESS, implied_by.source
        if one_pool and django_project(self.env):
            return ExecutorKind.SUBPROCESS, "env:DJANGO_SETTINGS_MODULE"
        return ExecutorKind.THREAD, "default"

    def build_options(
        self,
        label: str,
        pool_path: KeyPath,
        executor: ExecutorKind,
        raw: Cell | None,
        given: dict[str, Cell],
        *,
        chosen_by_flag: bool,
    ) -> PoolOptions:
        """The pool's executor options: its file table, then the shorthand and flags."""
        cls, specs = OPTIONS[executor]
        cells: dict[str, Cell] = {}
        if raw is not None:
            if not isinstance(raw.raw, dict):
                self.fail_at((*pool_path, "options"), f"expected a table, got {describe(raw.raw)}")
            else:
                for key, value in raw.raw.items():
                    cells[key] = Cell(value, raw.source, (*pool_path, "options", key))
        for key, cell in given.items():
            if key in specs:
                if cell.path is None or key not in cells:
                    cells[key] = cell  # flags beat the file's options
            else:
                owners = " or ".join(str(kind) for kind, (_, o) in OPTIONS.items() if key in o)
                self.warn(
                    f"{label}.options.{key}",
                    cell,
                    f"ignored: only used by the {owners} executor, not {executor}",
                )
        kwargs: dict[str, Any] = {}
        for key, cell in cells.items():
            if key not in specs:
                known = ", ".join(specs) or "none"
                message = f"unknown option for the {executor} executor" + (
                    did_you_mean(key, specs) or f" (its options: {known})"
                )
                if chosen_by_flag:
                    # The file's options belong to the executor the flag replaced.
                    self.warn(f"{label}.options.{key}", cell, "ignored: " + message)
                else:
                    self.fail(f"{label}.options.{key}", cell, message)
                continue
            value = self.value(f"{label}.options.{key}", specs[key], cell)
            if value is not MISSING:
                kwargs[key] = value
                self.sources[f"{label}.options.{key}"] = cell.source
        for f in fields(cls):
            self.sources.setdefault(f"{label}.options.{f.name}", "default")
        return cls(**kwargs)

    # -- queues and limits

    def build_queues_and_limits(
        self,
    ) -> tuple[tuple[QueueSettings, ...], tuple[RateLimitSettings, ...]]:
        queues: list[QueueSettings] = []
        limits: dict[str, RateLimitSettings] = {}
        for name, entry in self.limits.items():
            values = self.entry_values(entry, LIMIT_KEYS, f"limits.{name}")
            rate = values.get("rate")
            if "rate" not in entry.cells:
                self.fail_at(entry.path, "rate limit has no rate")
                continue
            if not isinstance(rate, float):
                continue
            burst = values.get("burst", default_burst(rate))
            assert isinstance(burst, int)
            limits[name] = RateLimitSettings(key=name, rate=rate, burst=burst)
        for name, entry in self.queues.items():
            values = self.entry_values(entry, QUEUE_KEYS, f"queues.{name}")
            rate = values.get("rate")
            if isinstance(rate, float):
                values.setdefault("burst", default_burst(rate))
                key = f"queue:{name}"
                if key in limits:
                    where = self.lines.line_of(self.limits[key].path)
                    self.fail_at(
                        (*entry.path, "rate"),
                        f'conflicts with limits."{key}" (line {where}); keep one',
                    )
                else:
                    burst = values["burst"]
                    assert isinstance(burst, int)
                    limits[key] = RateLimitSettings(key=key, rate=rate, burst=burst)
            elif "burst" in values:
                self.fail_at((*entry.path, "burst"), "burst needs a rate")
            if values.get("concurrency"):
                # Refused rather than ignored: a limit that silently does nothing is worse.
                self.fail_at(
                    (*entry.path, "concurrency"),
                    "a per-queue concurrency cap is not supported; give the queue's tasks a "
                    "concurrency_key and concurrency_limit, or size the pools serving it",
                )
            queues.append(QueueSettings(name=name, **values))  # type: ignore[arg-type]
        return tuple(queues), tuple(limits.values())

    # -- schedules

    def build_schedules(self, worker: WorkerSettings) -> tuple[ScheduleSettings, ...]:
        schedules: list[ScheduleSettings] = []
        names: dict[str, KeyPath] = {}
        for entry in self.schedules:
            name_cell = entry.cells.get("name")
            name = name_cell.raw if name_cell and isinstance(name_cell.raw, str) else None
            label = f"schedules.{name}" if name else dotted_key(entry.path)
            values = self.entry_values(entry, SCHEDULE_KEYS, label)
            ok = True
            for required in ("name", "cron", "task"):
                if required not in entry.cells:
                    self.fail_at(entry.path, f"schedule has no {required}")
                    ok = False
                elif required not in values:
                    ok = False
            cron_cell = entry.cells.get("cron")
            if cron_cell is not None and "cron" in values:
                try:
                    values["cron"], zone = check_cron(cron_cell.raw, False)
                except Invalid as exc:
                    self.fail_at((*entry.path, "cron"), exc.message)
                    ok = False
                    zone = None
                if zone is not None:
                    ok = self.merge_zone(entry, values, zone) and ok
            if isinstance(name, str) and "name" in values:
                if name in names:
                    first = self.lines.line_of(names[name])
                    self.fail_at(
                        (*entry.path, "name"),
                        f"duplicate schedule name {name!r} (first at line {first})",
                    )
                    ok = False
                else:
                    names[name] = (*entry.path, "name")
            if not ok:
                continue
            schedule = ScheduleSettings(**values)  # type: ignore[arg-type]
            self.check_allowed(schedule, worker, entry)
            schedules.append(schedule)
        return tuple(schedules)

    def merge_zone(self, entry: Entry, values: dict[str, object], zone: str) -> bool:
        given = values.get("timezone")
        if given is not None and given != zone:
            self.fail_at(
                (*entry.path, "timezone"),
                f"{given!r} conflicts with CRON_TZ={zone} in cron; keep one",
            )
            return False
        values["timezone"] = zone
        return True

    def check_allowed(
        self, schedule: ScheduleSettings, worker: WorkerSettings, entry: Entry
    ) -> None:
        allowed = worker.allowed_task_modules
        if not allowed or "*" in allowed:
            return
        if not any(schedule.task.startswith(prefix) for prefix in allowed):
            self.warn_at(
                (*entry.path, "task"),
                f"{schedule.task} is outside worker.allowed_task_modules; "
                "this process's workers would refuse it",
            )
