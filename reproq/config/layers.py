"""The layers of the settings, read into raw cells: the file, the environment, the flags.

A :class:`Layers` holds, for every dotted setting, the raw value of the strongest layer
that set it (a :class:`Cell`, which remembers where it came from), plus the tables of
the file's arrays and maps (pools, schedules, queues, limits). It never stops at the
first problem: each one is recorded with its file, key and line, so ``reproq config
check`` can list them all. :mod:`reproq.config.load` turns the cells into settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, cast

from reproq.config.document import Document, read_document
from reproq.config.schema import (
    ALIASES,
    LIMIT_KEY,
    MERGE_MAX,
    POOL_OVERRIDE,
    SCALARS,
    TOP_KEYS,
    Coerce,
    Invalid,
    Note,
    describe,
    did_you_mean,
)
from reproq.config.settings import ENV_VARS
from reproq.config.text import KeyLines, KeyPath, dotted_key, interpolate_tree
from reproq.db import dsn_from_env
from reproq.errors import ConfigError

__all__ = ["Cell", "Entry", "Flag", "Layers"]


@dataclass(frozen=True, slots=True)
class Flag:
    """A command-line flag's value for :func:`~reproq.config.load.load_settings`'s
    ``overrides``, with the flag's name for sources and errors (``--metrics-addr``)."""

    value: object
    name: str


@dataclass(slots=True)
class Cell:
    """One raw value and where it came from."""

    raw: object
    source: str  # "file:<path>", "env:<NAME>" or "flag:--<name>"
    path: KeyPath | None = None  # location in the file, for file values
    text: bool = False  # an environment or flag string, to be parsed rather than type-checked


@dataclass(slots=True)
class Entry:
    """One table of an array ([[pools]], [[schedules]]) or of a map ([queues.NAME])."""

    path: KeyPath
    cells: dict[str, Cell]


def _empty(value: object) -> bool:
    return value is None or value == ""


class Layers:
    """The raw cells of every layer, and every problem found while reading them."""

    def __init__(self, path: Path | None, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self.label = str(path) if path is not None else ""
        self.file_source = f"file:{path}"
        self.lines = KeyLines()
        self.problems: list[ConfigError] = []
        self.unresolved: set[KeyPath] = set()  # values with a missing ${VAR}, already reported
        self.warnings: list[str] = []
        self.cells: dict[str, Cell] = {}
        self.sources: dict[str, str] = {}
        self.pools: list[Entry] | None = None  # None: the file has no [[pools]]
        self.pool_overrides: dict[str, dict[str, Cell]] = {}
        self.queues: dict[str, Entry] = {}
        self.limits: dict[str, Entry] = {}
        self.schedules: list[Entry] = []

    # -- reporting

    def fail_at(self, path: KeyPath, message: str) -> None:
        """A problem of the file at *path*."""
        self.problems.append(
            ConfigError(
                message, file=self.label, key=dotted_key(path), line=self.lines.line_of(path)
            )
        )

    def fail(self, key: str, cell: Cell, message: str) -> None:
        """A problem of *cell*'s value, reported where the value came from."""
        if cell.path is not None:
            if cell.path not in self.unresolved:
                self.fail_at(cell.path, message)
            return
        kind, _, name = cell.source.partition(":")
        origin = f"${name}" if kind == "env" else name
        self.problems.append(ConfigError(f"{message} (from {origin})", key=key))

    def warn_at(self, path: KeyPath, message: str) -> None:
        """A remark on the file at *path* that does not stop it from loading."""
        error = ConfigError(
            message, file=self.label, key=dotted_key(path), line=self.lines.line_of(path)
        )
        self.warnings.append(str(error))

    def warn(self, key: str, cell: Cell, message: str) -> None:
        """A remark on *cell*'s value, said where the value came from."""
        if cell.path is not None:
            self.warn_at(cell.path, message)
            return
        kind, _, name = cell.source.partition(":")
        self.warnings.append(f"{key}: {message} (from {f'${name}' if kind == 'env' else name})")

    def sorted_problems(self) -> list[ConfigError]:
        """Every problem, in file order (those without a line last)."""
        return sorted(self.problems, key=lambda e: (e.line is None, e.line or 0))

    # -- layer 1: the file

    def read_file(self) -> None:
        """Read the config file (TOML or YAML) into cells and tables."""
        if self.path is None:
            return
        document = read_document(self.path)
        if not isinstance(document, Document):
            self.problems.extend(document)
            return
        self.lines = document.lines

        def missing(path: KeyPath, name: str) -> None:
            self.unresolved.add(path)
            self.fail_at(
                path,
                f"environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)",
            )

        doc = cast(dict[str, Any], interpolate_tree(document.data, self.env, (), missing))
        for key, value in doc.items():
            path: KeyPath = (key,)
            if key == "dsn":
                self.put_file("database.dsn", value, path)
            elif key in SCALARS:
                if value is not None and self.expect_table(value, path):
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
        """Whether *value* is a table; reports it when it is not."""
        if isinstance(value, dict):
            return True
        self.fail_at(path, f"expected a table ([{dotted_key(path)}]), got {describe(value)}")
        return False

    def read_section(self, section: str, table: dict[str, Any]) -> None:
        """The keys of ``[database]``, ``[worker]``, ... including upstream's spellings."""
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
                if alias.unsupported and not _empty(value):
                    self.fail_at(path, f"not supported: {alias.reason}")
                elif not alias.unsupported:
                    self.warn_at(path, f"accepted for compatibility and ignored: {alias.reason}")
            else:
                self.fail_at(path, "unknown key" + did_you_mean(key, [*specs, *aliases]))

    def put_file(self, key: str, value: object, path: KeyPath) -> None:
        """Record a file value, refusing two different values for one setting."""
        cell = Cell(value, self.file_source, path)
        old = self.cells.get(key)
        if old is None or _empty(old.raw):
            self.cells[key] = cell
            return
        if _empty(value) or value == old.raw:
            return
        if key in MERGE_MAX and isinstance(value, int) and isinstance(old.raw, int):
            if value > old.raw:
                self.cells[key] = cell
            return
        assert old.path is not None
        where = self.lines.line_of(old.path)
        self.fail_at(
            path,
            f"conflicts with {dotted_key(old.path)} (line {where}): both set {key}; keep one",
        )

    def read_array(self, value: object, path: KeyPath, header: str) -> list[Entry]:
        """The tables of ``[[pools]]`` or ``[[schedules]]``."""
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail_at(path, f"expected an array of tables ({header}), got {describe(value)}")
            return []
        return [
            Entry(
                (*path, index),
                {k: Cell(v, self.file_source, (*path, index, k)) for k, v in item.items()},
            )
            for index, item in enumerate(value)
        ]

    def read_named(self, kind: str, table: dict[str, Any]) -> None:
        """The tables of ``[queues.NAME]`` or the entries of ``[limits]``."""
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
                    self.limits[name] = Entry(path, {"rate": Cell(value, self.file_source, path)})
                    continue
            elif not isinstance(value, dict):
                self.fail_at(path, f"expected a table ([queues.{name}]), got {describe(value)}")
                continue
            cells = {k: Cell(v, self.file_source, (*path, k)) for k, v in value.items()}
            (self.limits if kind == "limits" else self.queues)[name] = Entry(path, cells)

    # -- layer 2: the environment

    def read_env(self) -> None:
        """Environment variables (:data:`ENV_VARS`; empty ones count as unset)."""
        found = dsn_from_env(self.env)
        if found is not None:
            self.cells["database.dsn"] = Cell(found[1], f"env:{found[0]}", text=True)
        for name, key in ENV_VARS.items():
            value = self.env.get(name)
            if value:
                self.put_layer(key, Cell(value, f"env:{name}", text=True))

    # -- layer 3: flags

    def read_overrides(self, overrides: Mapping[str, object]) -> None:
        """Command-line flags; None and empty values count as not given."""
        for key, given in overrides.items():
            value, flag = (
                (given.value, given.name)
                if isinstance(given, Flag)
                else (given, "--" + key.rsplit(".", 1)[-1].replace("_", "-"))
            )
            if _empty(value):
                continue
            # A flag left as text ("20", "a,b") is parsed like an environment value.
            cell = Cell(value, f"flag:{flag}", text=isinstance(value, str))
            pool = POOL_OVERRIDE.match(key)
            if pool:
                self.pool_overrides.setdefault(pool.group(1), {})[pool.group(2)] = cell
            else:
                self.put_layer(key, cell)

    def put_layer(self, key: str, cell: Cell) -> None:
        """Set *key* from the environment or a flag (a stronger layer than the file)."""
        section, _, name = key.partition(".")
        if section in SCALARS and name in SCALARS[section]:
            self.cells[key] = cell
            return
        note = ALIASES.get(section, {}).get(name)
        if isinstance(note, Note):
            if note.unsupported or (cell.source.startswith("flag:") and not note.harmless):
                # Asked for on the command line: a setting that would do nothing is refused.
                self.fail(key, cell, f"not supported: {note.reason}")
            else:
                self.warn(key, cell, f"accepted for compatibility and ignored: {note.reason}")
            return
        known = [f"{s}.{k}" for s, specs in SCALARS.items() for k in specs]
        self.problems.append(ConfigError("unknown setting" + did_you_mean(key, known), key=key))

    # -- checked values

    def value(self, key: str, spec: Coerce, cell: Cell | None) -> object:
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

    def entry_values(
        self, entry: Entry, specs: Mapping[str, Coerce], label: str
    ) -> dict[str, object]:
        """The checked values of one table of an array or map (unknown keys reported)."""
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
