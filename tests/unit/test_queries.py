"""All SQL lives in reproq/sql/*.sql by name: every named query is used, every used name exists,
and a part that statements share is one fragment, spliced where they name it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reproq.queries import all_queries, build_library, library, parse_named_blocks, q

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


def test_every_fragment_is_included_by_some_statement() -> None:
    sql = library()
    included = {name for used in sql.includes.values() for name in used}
    assert set(sql.fragments) == included, "fragments never included"


def test_no_include_line_is_left_in_a_statement() -> None:
    for name, text in all_queries().items():
        assert "-- include:" not in text, name


def test_the_claim_candidates_are_one_fragment_spliced_into_both_claim_statements() -> None:
    sql = library()
    assert {name for name, used in sql.includes.items() if "claim_candidates" in used} == {
        "worker_claim",
        "worker_sync",
    }
    candidates = sql.fragments["claim_candidates"]
    for name in ("worker_claim", "worker_sync"):
        text = sql.statements[name]
        assert text.count(candidates) == 1, name
        # The fairness rules live in the fragment, not in a copy beside it.
        assert text.count("FROM unnest(%(queues)s::text[]) WITH ORDINALITY") == 1, name
        assert text.count("make_interval(secs => c.priority * %(aging)s::float8)") == 1, name


def test_a_fragment_is_spliced_where_a_statement_names_it() -> None:
    sql = build_library(
        {
            "a.sql": "-- fragment: two\nb AS (SELECT 2),\n-- name: s\nWITH a AS (SELECT 1),\n"
            "-- include: two\nc AS (SELECT 3) SELECT * FROM a, b, c;",
        }
    )
    assert sql.statements["s"] == (
        "WITH a AS (SELECT 1),\nb AS (SELECT 2),\nc AS (SELECT 3) SELECT * FROM a, b, c;"
    )
    assert sql.includes == {"s": ("two",)}


def test_an_include_of_an_unknown_fragment_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="query 's' includes 'nope', which no file defines"):
        build_library({"a.sql": "-- name: s\nWITH\n-- include: nope\nx AS (SELECT 1) SELECT 1;"})


def test_a_name_defined_in_two_files_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"'x' is defined in a\.sql and b\.sql"):
        build_library({"a.sql": "-- name: x\nSELECT 1;", "b.sql": "-- fragment: x\ny AS (1),"})


def test_fragments_do_not_include_fragments() -> None:
    with pytest.raises(ValueError, match="fragment 'f' includes another fragment"):
        build_library({"a.sql": "-- fragment: f\n-- include: g\n-- fragment: g\nx AS (1),"})
