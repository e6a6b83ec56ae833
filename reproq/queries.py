"""All SQL of reproq, by name.

Statements live in ``reproq/sql/*.sql`` as named blocks::

    -- name: claim_tasks
    SELECT ...

They are loaded once, on first use. Every statement is parameterised with
``%(name)s`` placeholders; nothing is ever formatted into SQL text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_named_blocks(text: str, source: str) -> dict[str, str]:
    """Split a ``.sql`` file into ``{name: statement}``; duplicate names are an error."""
    blocks: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match.group(1)
        if name in blocks:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        if not body:
            raise ValueError(f"{source}: query {name!r} is empty")
        blocks[name] = body
    return blocks


@cache
def all_queries() -> dict[str, str]:
    """Every named query of the package, loaded once."""
    found: dict[str, str] = {}
    origin: dict[str, str] = {}
    folder = resources.files("reproq") / "sql"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, body in parse_named_blocks(entry.read_text("utf-8"), entry.name).items():
            if name in found:
                raise ValueError(f"query {name!r} is defined in {origin[name]} and {entry.name}")
            found[name] = body
            origin[name] = entry.name
    return found


def q(name: str) -> str:
    """The SQL text of the named query (a ``KeyError`` names a missing one)."""
    try:
        text = all_queries()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in reproq/sql/*.sql") from None
    # The text comes from the package's own files, never from user input.
    return text
