"""Building :class:`~reproq.config.settings.Settings` from a TOML file, the environment and flags.

The loader never stops at the first problem: each bad value is reported (file, dotted
key, line) and left at its default so the rest can still be checked, which is what
``reproq config check`` needs. Upstream's flat ``reproq.example.toml`` keys are read by
the same walk and mapped onto the model, keeping their own location for errors.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from reproq.config.schema import (
    ALIASES,
    LIMIT_KEY,
    LIMIT_KEYS,
    MERGE_MAX,
    OPTION_SHORTHAND,
    OPTIONS,
    POOL_KEYS,
    POOL_OVERRIDE,
    QUEUE_KEYS,
    SCALARS,
    SCHEDULE_KEYS,
    SHORTHAND,
    TOP_KEYS,
    Coerce,
    Invalid,
    Note,
    check_cron,
    default_burst,
    describe,
    did_you_mean,
    string,
)
from reproq.config.settings import (
    ENV_VARS,
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
    WorkerSettings,
)
from reproq.config.text import KeyLocator, KeyPath, dotted_key, interpolate_tree
from reproq.errors import ConfigError


@dataclass(slots=True)
class _Cell:
    """One raw value and where it came from."""

    raw: object
    source: str  # "file:<path>", "env:<NAME>" or "flag:--<name>"
    path: KeyPath | None = None  # location in the file, for file values
    text: bool = False  # an environment string, to be parsed rather than type-checked


def load(
    path: Path | None, *, env: Mapping[str, str], overrides: Mapping[str, object]
) -> tuple[Settings | None, list[ConfigError]]:
    """Settings from *path* (if any), *env* and *overrides*, or None and every problem."""
    loader = _Loader(path, env)
    loader.read_file()
    loader.read_env()
    loader.read_overrides(overrides)
    settings = loader.build()
    problems = loader.sorted_problems()
    return (None if problems else settings), problems


@dataclass(slots=True)
class _Entry:
    """One table of an array ([[pools]], [[schedules]]) or of a map ([queues.NAME])."""

    path: KeyPath
    cells: dict[str, _Cell]


class _Loader:
    def __init__(self, path: Path | None, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self.label = str(path) if path is not None else ""
        self.file_source = f"file:{path}"
        self.locator = KeyLocator("")
        self.problems: list[ConfigError] = []
        self.unresolved: set[KeyPath] = set()  # values with a missing ${VAR}, already reported
        self.warnings: list[str] = []
        self.cells: dict[str, _Cell] = {}
        self.sources: dict[str, str] = {}
        self.pools: list[_Entry] | None = None  # None: the file has no [[pools]]
        self.pool_overrides: dict[str, dict[str, _Cell]] = {}
        self.queues: dict[str, _Entry] = {}
        self.limits: dict[str, _Entry] = {}
        self.schedules: list[_Entry] = []

    # -- reporting

    def fail_at(self, path: KeyPath, message: str) -> None:
        self.problems.append(
            ConfigError(
                message, file=self.label, key=dotted_key(path), line=self.locator.line_of(path)
            )
        )

    def fail(self, key: str, cell: _Cell, message: str) -> None:
        if cell.path is not None:
            if cell.path not in self.unresolved:
                self.fail_at(cell.path, message)
            return
        kind, _, name = cell.source.partition(":")
        origin = f"${name}" if kind == "env" else name
        self.problems.append(ConfigError(f"{message} (from {origin})", key=key))

    def warn_at(self, path: KeyPath, message: str) -> None:
        self.warnings.append(
            str(
                ConfigError(
                    message, file=self.label, key=dotted_key(path), line=self.locator.line_of(path)
                )
            )
        )

    def sorted_problems(self) -> list[ConfigError]:
        return sorted(self.problems, key=lambda e: (e.line is None, e.line or 0))

    # -- layer 1: the file

    def read_file(self) -> None:
        if self.path is None:
            return
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problems.append(ConfigError(f"cannot read config file: {reason}", file=self.label))
            return
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            found = re.search(r"\(at line (\d+), column \d+\)", message)
            line = int(found.group(1)) if found else None
            message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
            self.problems.append(
                ConfigError(f"invalid TOML: {message}", file=self.label, line=line)
            )
            return
        self.locator = KeyLocator(text)

        def missing(path: KeyPath, name: str) -> None:
            self.unresolved.add(path)
            self.fail_at(
                path,
                f"environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)",
            )

        doc = cast(dict[str, Any], interpolate_tree(doc, self.env, (), missing))
        for key, value in doc.items():
            path: KeyPath = (key,)
            if key == "dsn":
                self.put_file("database.dsn", value, path)
            elif key in SCALARS:
                if self.expect_table(value, path):
                    self.read_section(key, value)
            elif key == "pools":
                self.pools = self.read_array(value, path, "[[pools]]")
            elif key == "schedules":
                self.schedules = self.read_array(value, path, "[[schedules]]")
            elif key in ("queues", "limits"):
                if self.expect_table(value, path):
                    self.read_named(key, value)
            else:
                what = "unknown table" if isinstance(value, dict | list) else "unknown key"
                self.fail_at(path, what + did_you_mean(key, TOP_KEYS))

    def expect_table(self, value: object, path: KeyPath) -> bool:
        if isinstance(value, dict):
            return True
        self.fail_at(path, f"expected a table ([{dotted_key(path)}]), got {describe(value)}")
        return False

    def read_section(self, section: str, table: dict[str, Any]) -> None:
        specs = SCALARS[section]
        aliases = ALIASES.get(section, {})
        for key, value in table.items():
            path: KeyPath = (section, key)
            alias = aliases.get(key)
            if key in specs:
                self.put_file(f"{section}.{key}", value, path)
            elif isinstance(alias, str):
                self.put_file(alias, value, path)
            elif isinstance(alias, Note):
                if alias.unsupported and value not in ("", None):
                    self.fail_at(path, f"not supported: {alias.reason}")
                elif not alias.unsupported:
                    self.warn_at(path, f"accepted for compatibility and ignored: {alias.reason}")
            else:
                self.fail_at(path, "unknown key" + did_you_mean(key, [*specs, *aliases]))

    def put_file(self, key: str, value: object, path: KeyPath) -> None:
        """Record a file value, refusing two different values for one setting."""
        cell = _Cell(value, self.file_source, path)
        old = self.cells.get(key)
        if old is None or old.raw in ("", None):
            self.cells[key] = cell
            return
        if value in ("", None) or value == old.raw:
            return
        if key in MERGE_MAX and isinstance(value, int) and isinstance(old.raw, int):
            if value > old.raw:
                self.cells[key] = cell
            return
        assert old.path is not None
        where = self.locator.line_of(old.path)
        self.fail_at(
            path,
            f"conflicts with {dotted_key(old.path)} (line {where}): both set {key}; keep one",
        )

    def read_array(self, value: object, path: KeyPath, header: str) -> list[_Entry]:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail_at(path, f"expected an array of tables ({header}), got {describe(value)}")
            return []
        return [
            _Entry(
                (*path, index),
                {k: _Cell(v, self.file_source, (*path, index, k)) for k, v in item.items()},
            )
            for index, item in enumerate(value)
        ]

    def read_named(self, kind: str, table: dict[str, Any]) -> None:
        for name, value in table.items():
            path: KeyPath = (kind, name)
            if kind == "limits":
                if not LIMIT_KEY.match(name):
                    self.fail_at(
                        path,
                        f"invalid rate-limit key {name!r}: expected 'global', "
                        "'task:<module.function>' or 'queue:<name>'",
                    )
                    continue
                if not isinstance(value, dict):
                    # `"task:x" = 5` is short for `"task:x" = { rate = 5 }`.
                    self.limits[name] = _Entry(path, {"rate": _Cell(value, self.file_source, path)})
                    continue
            elif not isinstance(value, dict):
                self.fail_at(path, f"expected a table ([queues.{name}]), got {describe(value)}")
                continue
            cells = {k: _Cell(v, self.file_source, (*path, k)) for k, v in value.items()}
            (self.limits if kind == "limits" else self.queues)[name] = _Entry(path, cells)

    # -- layer 2: the environment

    def read_env(self) -> None:
        for name, key in ENV_VARS.items():
            value = self.env.get(name)
            if value:
                self.cells[key] = _Cell(value, f"env:{name}", text=True)

    # -- layer 3: flags

    def read_overrides(self, overrides: Mapping[str, object]) -> None:
        for key, value in overrides.items():
            if value is None:
                continue
            flag = "flag:--" + key.rsplit(".", 1)[-1].replace("_", "-")
            # A flag left as text ("20", "a,b") is parsed like an environment value.
            cell = _Cell(value, flag, text=isinstance(value, str))
            section, _, name = key.partition(".")
            pool = POOL_OVERRIDE.match(key)
            if pool:
                self.pool_overrides.setdefault(pool.group(1), {})[pool.group(2)] = cell
            elif section in SCALARS and name in SCALARS[section]:
                self.cells[key] = cell
            else:
                known = [f"{s}.{k}" for s, specs in SCALARS.items() for k in specs]
                self.problems.append(
                    ConfigError("unknown setting" + did_you_mean(key, known), key=key)
                )

    # -- building

    def value(self, key: str, spec: Coerce, cell: _Cell | None) -> object:
        """The checked value of *cell*, or MISSING when absent or invalid (reported)."""
        if cell is None:
            return MISSING
        try:
            value = spec(cell.raw, cell.text)
        except Invalid as exc:
            self.fail(key, cell, exc.message)
            return MISSING
        if isinstance(value, Path) and cell.path is not None and self.path is not None:
            # Paths in a file are relative to the file, like every other tool's config.
            value = self.path.parent / value if not value.is_absolute() else value
        return value

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
                self.cells["metrics.addr"] = _Cell(f"0.0.0.0:{port}", port_cell.source)
        elif addr_cell is not None and addr_cell.raw == "":
            del self.cells["metrics.addr"]  # upstream's "no metrics"
        addr_cell = self.cells.get("metrics.addr")
        if "metrics.enabled" not in self.cells and addr_cell is not None:
            # Giving an address is asking for the endpoint.
            self.cells["metrics.enabled"] = _Cell(True, addr_cell.source)
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
            pools_in = [_Entry(("pools", 0), {})]
            shorthand_target = True
        else:
            pools_in = self.pools
            if not pools_in:
                self.fail_at(("pools",), "at least one pool is needed")
            for field, cell in shorthand.items():
                if cell.path is not None:
                    self.fail_at(
                        cell.path,
                        "only valid without [[pools]]; set it on each pool instead",
                    )
                elif len(pools_in) != 1:
                    self.fail(
                        f"pools.*.{field}",
                        cell,
                        f"the config has {len(pools_in)} pools; "
                        f"set pools.NAME.{field} for one of them",
                    )
            for cell in options.values():
                if cell.path is not None:
                    self.fail_at(
                        cell.path, "only valid without [[pools]]; set it in a pool's options"
                    )
            shorthand_target = len(pools_in) == 1
            shorthand = {f: c for f, c in shorthand.items() if c.path is None}
            options = {}
        names: dict[str, KeyPath] = {}
        for entry in pools_in:
            cells = dict(entry.cells)
            if shorthand_target:
                cells.update(shorthand)
            pool = self.build_pool(entry, cells, options, default_name=self.pools is None)
            if pool is None:
                continue
            if pool.name in names:
                first = self.locator.line_of(names[pool.name])
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
        entry: _Entry,
        cells: dict[str, _Cell],
        option_cells: dict[str, _Cell],
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
            cells.update(self.pool_overrides.get(name, {}))
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
            # Upstream's flat shape always ran tasks through `python -m executor_module`.
            executor = ExecutorKind.SUBPROCESS if option_cells else ExecutorKind.THREAD
            values["executor"] = executor
            implied_by = next(iter(option_cells.values()), None)
            self.sources[f"{label}.executor"] = implied_by.source if implied_by else "default"
        assert isinstance(executor, ExecutorKind)
        for field in ("queues", "concurrency", "connections", "timeout_seconds"):
            self.sources.setdefault(f"{label}.{field}", "default")
        connections = values.get("connections", 1)
        concurrency = values.get("concurrency", 10)
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
        options = self.build_options(label, entry.path, executor, raw_options, option_cells)
        if not ok or not isinstance(name, str):
            return None
        return PoolSettings(name=name, options=options, **values)  # type: ignore[arg-type]

    def build_options(
        self,
        label: str,
        pool_path: KeyPath,
        executor: ExecutorKind,
        raw: _Cell | None,
        shorthand: dict[str, _Cell],
    ) -> PoolOptions:
        cls, specs = OPTIONS[executor]
        cells: dict[str, _Cell] = {}
        if raw is not None:
            if not isinstance(raw.raw, dict):
                self.fail_at((*pool_path, "options"), f"expected a table, got {describe(raw.raw)}")
            else:
                for key, value in raw.raw.items():
                    cells[key] = _Cell(value, raw.source, (*pool_path, "options", key))
        for key, cell in shorthand.items():
            if key in specs:
                cells.setdefault(key, cell)
            elif cell.path is not None:
                self.warn_at(
                    cell.path, f"ignored: only used by the subprocess executor, not {executor}"
                )
        kwargs: dict[str, Any] = {}
        for key, cell in cells.items():
            if key not in specs:
                known = ", ".join(specs) or "none"
                self.fail(
                    f"{label}.options.{key}",
                    cell,
                    f"unknown option for the {executor} executor"
                    + (did_you_mean(key, specs) or f" (its options: {known})"),
                )
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
                    where = self.locator.line_of(self.limits[key].path)
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

    def entry_values(
        self, entry: _Entry, specs: Mapping[str, Coerce], label: str
    ) -> dict[str, object]:
        values: dict[str, object] = {}
        for key, cell in entry.cells.items():
            if key not in specs:
                self.fail_at((*entry.path, key), "unknown key" + did_you_mean(key, specs))
                continue
            value = self.value(f"{label}.{key}", specs[key], cell)
            if value is not MISSING:
                values[key] = value
                self.sources[f"{label}.{key}"] = cell.source
        return values

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
                    first = self.locator.line_of(names[name])
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

    def merge_zone(self, entry: _Entry, values: dict[str, object], zone: str) -> bool:
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
        self, schedule: ScheduleSettings, worker: WorkerSettings, entry: _Entry
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
