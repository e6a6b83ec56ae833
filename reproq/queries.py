"""All SQL of reproq, by name.

Statements live in ``reproq/sql/*.sql`` as named blocks::

    -- name: claim_tasks
    SELECT ...

They are loaded once, on first use. Every statement is parameterised with
``%(name)s`` placeholders; nothing is ever formatted into SQL text.

A part that several statements must share word for word is a *fragment*, defined once
and spliced in where a statement names it on a line of its own::

    -- fragment: claim_candidates
    queues AS (...),

    -- name: worker_claim
    WITH RECURSIVE
    -- include: claim_candidates
    cand AS (...)

The splice happens when the files are loaded, so the server still receives (and plans)
each statement whole. Fragments do not include other fragments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["SqlLibrary", "all_queries", "build_library", "library", "parse_named_blocks", "q"]

_BLOCK = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^[ \t]*--\s*include:\s*([a-z_][a-z0-9_]*)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True, kw_only=True, slots=True)
class SqlLibrary:
    """Every statement (fragments spliced in), every fragment, and who includes what."""

    statements: dict[str, str]
    fragments: dict[str, str]
    includes: dict[str, tuple[str, ...]]  # statement name -> the fragments it includes


def parse_named_blocks(text: str, source: str) -> dict[str, str]:
    """Split a ``.sql`` file into ``{name: statement}`` (fragments not spliced, not listed).

    Duplicate names are an error.
    """
    return _parse(text, source)[0]


def _parse(text: str, source: str) -> tuple[dict[str, str], dict[str, str]]:
    """The named statements and the fragments of one ``.sql`` file."""
    blocks: dict[str, dict[str, str]] = {"name": {}, "fragment": {}}
    matches = list(_BLOCK.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        kind, name = match.group(1), match.group(2)
        what = "query" if kind == "name" else "fragment"
        if name in blocks[kind]:
            raise ValueError(f"{source}: {what} {name!r} is defined twice")
        if not body:
            raise ValueError(f"{source}: {what} {name!r} is empty")
        if kind == "fragment" and _INCLUDE.search(body):
            raise ValueError(f"{source}: fragment {name!r} includes another fragment")
        blocks[kind][name] = body
    return blocks["name"], blocks["fragment"]


def _splice(name: str, body: str, fragments: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """``body`` with each include line replaced by its fragment; the fragments used."""
    used: list[str] = []

    def replace(match: re.Match[str]) -> str:
        fragment = match.group(1)
        if fragment not in fragments:
            raise ValueError(f"query {name!r} includes {fragment!r}, which no file defines")
        used.append(fragment)
        return fragments[fragment]

    return _INCLUDE.sub(replace, body), tuple(used)


def build_library(files: Mapping[str, str]) -> SqlLibrary:
    """The statements and fragments of ``{file name: text}``, fragments spliced in.

    A name defined twice (in one file or across files) or an include of a fragment no
    file defines is a ``ValueError`` naming it.
    """
    raw: dict[str, str] = {}
    fragments: dict[str, str] = {}
    origin: dict[str, str] = {}
    for source, text in files.items():
        statements, parts = _parse(text, source)
        for found, blocks in ((raw, statements), (fragments, parts)):
            for name, body in blocks.items():
                if name in origin:
                    raise ValueError(f"{name!r} is defined in {origin[name]} and {source}")
                found[name] = body
                origin[name] = source
    spliced = {}
    includes = {}
    for name, body in raw.items():
        spliced[name], used = _splice(name, body, fragments)
        if used:
            includes[name] = used
    return SqlLibrary(statements=spliced, fragments=fragments, includes=includes)


@cache
def library() -> SqlLibrary:
    """The SQL of the package (``reproq/sql/*.sql``), loaded and spliced once."""
    folder = resources.files("reproq") / "sql"
    entries = sorted(folder.iterdir(), key=lambda e: e.name)
    return build_library({e.name: e.read_text("utf-8") for e in entries if e.name.endswith(".sql")})


def all_queries() -> dict[str, str]:
    """Every named query of the package (fragments spliced in), loaded once."""
    return library().statements


def q(name: str) -> str:
    """The SQL text of the named query (a ``KeyError`` names a missing one)."""
    try:
        text = all_queries()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in reproq/sql/*.sql") from None
    # The text comes from the package's own files, never from user input.
    return text
