"""All SQL lives in reproq/sql/*.sql by name: every named query is used, every used name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reproq.queries import all_queries, parse_named_blocks, q

PACKAGE = Path(__file__).resolve().parents[2] / "reproq"
_USE = re.compile(r"""\bq\(\s*["']([a-z_][a-z0-9_]*)["']\s*\)""")


def _used_names() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        names.update(_USE.findall(path.read_text("utf-8")))
    return names


def test_every_used_query_name_exists() -> None:
    missing = _used_names() - set(all_queries())
    assert not missing, f"q() names with no SQL block: {sorted(missing)}"


def test_every_named_query_is_used() -> None:
    unused = set(all_queries()) - _used_names()
    assert not unused, f"SQL blocks never used: {sorted(unused)}"


def test_placeholders_are_named_parameters() -> None:
    # Values travel only as %(name)s parameters; a bare %s or %d would be positional.
    for name, text in all_queries().items():
        for match in re.finditer(r"%(.)", text):
            assert match.group(1) in "(%", f"{name} has a non-named placeholder"


def test_duplicate_names_in_one_file_are_rejected() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_named_blocks("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;", "x.sql")


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no SQL query named 'nope'"):
        q("nope")
