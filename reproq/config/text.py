"""Text helpers for the config loader: key locations, ``${ENV}`` interpolation, TOML rendering.

:mod:`tomllib` returns plain values without positions, so :class:`KeyLocator` scans the
source text once and records the line on which every table header and key is defined.
That is enough to point an error at ``configs/prod.toml:42`` without a second parser.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence

import tomli_w

KeyPath = tuple[str | int, ...]
"""A location in a TOML document: table keys, with list indexes for arrays of tables."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def dotted_key(path: KeyPath) -> str:
    """*path* as people read it: ``pools[1].queues``, ``limits."task:app.send".rate``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.fullmatch(part) else _quote(part)
        out += f".{text}" if out else text
    return out


def _quote(text: str) -> str:
    return tomli_w.dumps({"k": text})[len("k = ") : -1]


class KeyLines:
    """Line numbers (1-based) of the keys of a config document, by key path."""

    def __init__(self) -> None:
        self._lines: dict[KeyPath, int] = {}

    def line_of(self, path: KeyPath) -> int | None:
        """The line defining *path*, else that of its nearest defined parent, else None."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None

    def record(self, path: KeyPath, line: int) -> None:
        """Note that *path* is defined on *line* (and its parents, where not defined yet)."""
        for end in range(1, len(path) + 1):
            self._lines.setdefault(path[:end], line)


class KeyLocator(KeyLines):
    """The lines of the headers and keys defined in a TOML document, found by scanning it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._scan(text)

    def _scan(self, text: str) -> None:
        array_counts: dict[KeyPath, int] = {}
        current: KeyPath = ()
        depth = 0  # open brackets/braces of a value spanning several lines
        in_multiline: str | None = None  # the closing delimiter of a multi-line string
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw
            if in_multiline is not None:
                end = line.find(in_multiline)
                if end < 0:
                    continue
                line = line[end + 3 :]
                in_multiline = None
                depth, in_multiline = _track(line, depth)
                continue
            if depth > 0:
                depth, in_multiline = _track(line, depth)
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                close = _find_close(stripped, 2, "]]")
                if close is None:
                    continue
                names = _split_key(stripped[2:close])
                parent = _resolve(tuple(names[:-1]), array_counts)
                table = (*parent, names[-1])
                index = array_counts.get(table, 0)
                array_counts[table] = index + 1
                current = (*table, index)
                self.record(current, number)
                continue
            if stripped.startswith("["):
                close = _find_close(stripped, 1, "]")
                if close is None:
                    continue
                current = _resolve(tuple(_split_key(stripped[1:close])), array_counts)
                self.record(current, number)
                continue
            equals = _find_equals(stripped)
            if equals is None:
                continue
            key = tuple(_split_key(stripped[:equals]))
            self.record((*current, *key), number)
            depth, in_multiline = _track(stripped[equals + 1 :], 0)


def _resolve(names: tuple[str, ...], array_counts: Mapping[KeyPath, int]) -> KeyPath:
    """*names* with the index of the latest element inserted after each array of tables."""
    resolved: list[str | int] = []
    for name in names:
        resolved.append(name)
        count = array_counts.get(tuple(resolved))
        if count:
            resolved.append(count - 1)
    return tuple(resolved)


def _split_key(text: str) -> list[str]:
    """``a."b.c" . 'd'`` → ``["a", "b.c", "d"]``."""
    parts: list[str] = []
    buf = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char in "\"'":
            end = i + 1
            while end < len(text) and text[end] != char:
                end += 2 if char == '"' and text[end] == "\\" else 1
            body = text[i + 1 : end]
            buf += _unescape(body) if char == '"' else body
            i = end + 1
            continue
        if char == ".":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += char
        i += 1
    parts.append(buf.strip())
    return parts


def _unescape(body: str) -> str:
    try:
        return str(tomllib.loads(f'k = "{body}"')["k"])
    except tomllib.TOMLDecodeError:
        return body


def _find_close(text: str, start: int, closer: str) -> int | None:
    """Index of *closer* after *start*, skipping quoted parts."""
    i = start
    quote: str | None = None
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 2
                continue
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif text.startswith(closer, i):
            return i
        i += 1
    return None


def _find_equals(text: str) -> int | None:
    """Index of the ``=`` ending a key (outside quotes), or None if the line has no key."""
    i = 0
    quote: str | None = None
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 2
                continue
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "=":
            return i
        elif char in "#[{,":
            return None
        i += 1
    return None


def _track(text: str, depth: int) -> tuple[int, str | None]:
    """Bracket depth after *text* and the pending multi-line string delimiter, if any."""
    i = 0
    while i < len(text):
        if text.startswith(('"""', "'''"), i):
            delimiter = text[i : i + 3]
            end = text.find(delimiter, i + 3)
            if end < 0:
                return depth, delimiter
            i = end + 3
            continue
        char = text[i]
        if char in "\"'":
            end = i + 1
            while end < len(text) and text[end] != char:
                end += 2 if char == '"' and text[end] == "\\" else 1
            i = end + 1
            continue
        if char == "#":
            break
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        i += 1
    return depth, None


class MissingVariable(Exception):
    """``${NAME}`` names an environment variable that is not set and has no default."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """*text* with ``${NAME}`` and ``${NAME:-default}`` replaced from *env*; ``$$`` is ``$``.

    As in a shell, the default applies when the variable is unset or empty. Raises
    :class:`MissingVariable` for an unset variable without a default.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if default is not None:
            return value if value else default
        if value is None:
            raise MissingVariable(name)
        return value

    return _INTERPOLATION.sub(replace, text)


def interpolate_tree(
    value: object,
    env: Mapping[str, str],
    path: KeyPath,
    on_missing: Callable[[KeyPath, str], None],
) -> object:
    """*value* with every string in it interpolated; *on_missing(path, name)* reports gaps."""
    if isinstance(value, str):
        try:
            return interpolate(value, env)
        except MissingVariable as exc:
            on_missing(path, exc.name)
            return value
    if isinstance(value, dict):
        return {
            key: interpolate_tree(item, env, (*path, key), on_missing)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate_tree(item, env, (*path, index), on_missing)
            for index, item in enumerate(value)
        ]
    return value


def inline_toml(value: object) -> str:
    """*value* as one line of TOML (inline arrays and tables), scalars written by tomli-w."""
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{toml_key(str(k))} = {inline_toml(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(inline_toml(item) for item in value) + "]"
    return tomli_w.dumps({"k": value})[len("k = ") : -1]


def toml_key(name: str) -> str:
    """*name* as a TOML key: bare when possible, quoted otherwise."""
    return name if _BARE_KEY.fullmatch(name) else _quote(name)
