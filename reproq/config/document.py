"""Reading a config file, TOML or YAML, into plain values and the line of every key.

The format follows the file name, as the Go worker's loader does: ``.yaml`` and ``.yml``
are YAML, anything else TOML. Both end up as the same nested dicts and lists, with a
:class:`~reproq.config.text.KeyLines` so the loader can point an error at
``reproq.yaml:12``. YAML is composed into nodes first (PyYAML's safe loader), because
nodes carry their line marks; walking them also catches a key written twice, which
PyYAML's plain loader would let the last one win.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reproq.config.text import KeyLines, KeyLocator, KeyPath, dotted_key
from reproq.errors import ConfigError

__all__ = ["YAML_SUFFIXES", "Document", "read_document"]

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Document:
    """A config file's values (a table of sections) and where each key was written."""

    data: dict[str, Any]
    lines: KeyLines


def read_document(path: Path) -> Document | list[ConfigError]:
    """The document in *path*, or the problems that keep it from being read at all."""
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [ConfigError(f"cannot read config file: {reason}", file=label)]
    if path.suffix.lower() in YAML_SUFFIXES:
        return _read_yaml(text, label)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(found.group(1)) if found else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        return [ConfigError(f"invalid TOML: {message}", file=label, line=line)]
    return Document(data, KeyLocator(text))


def _read_yaml(text: str, label: str) -> Document | list[ConfigError]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:  # an empty file, or one of comments only
            return Document({}, KeyLines())
        walker = _YamlWalker(loader, label)
        if not isinstance(root, yaml.MappingNode):
            return [
                ConfigError(
                    "expected a mapping of sections (database:, worker:, ...), got " + _kind(root),
                    file=label,
                    line=root.start_mark.line + 1,
                )
            ]
        data = walker.mapping(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        line = mark.line + 1 if mark is not None else None
        return [ConfigError(f"invalid YAML: {problem}", file=label, line=line)]
    except yaml.YAMLError as exc:
        return [ConfigError(f"invalid YAML: {exc}", file=label)]
    finally:
        loader.dispose()
    if walker.problems:
        return walker.problems
    return Document(data, walker.lines)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return f"the value {node.value!r}"


class _YamlWalker:
    """Turns composed YAML nodes into values, recording the line of every key."""

    def __init__(self, loader: yaml.SafeLoader, label: str) -> None:
        self.loader = loader
        self.label = label
        self.lines = KeyLines()
        self.problems: list[ConfigError] = []

    def value(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines.record((*path, index), item.start_mark.line + 1)
                items.append(self.value(item, (*path, index)))
            return items
        # Scalars: PyYAML's safe constructor decides null, booleans, numbers, dates, text.
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        self.loader.flatten_mapping(node)  # resolves "<<: *anchor" merge keys
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                self.problems.append(
                    ConfigError(
                        f"keys must be text, got {key!r}",
                        file=self.label,
                        key=dotted_key(path) or None,
                        line=line,
                    )
                )
                continue
            here = (*path, key)
            if key in first_line:
                self.problems.append(
                    ConfigError(
                        f"duplicate key (first at line {first_line[key]})",
                        file=self.label,
                        key=dotted_key(here),
                        line=line,
                    )
                )
                continue
            first_line[key] = line
            self.lines.record(here, line)
            result[key] = self.value(value_node, here)
        return result
