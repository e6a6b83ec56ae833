"""Locating keys in TOML text, ${ENV} interpolation and inline TOML rendering."""

from __future__ import annotations

import tomllib
from textwrap import dedent

import pytest

from reproq.config.text import (
    KeyLocator,
    MissingVariable,
    dotted_key,
    inline_toml,
    interpolate,
)

DOC = dedent(
    '''\
    # comment
    dsn = "x"
    [database]
    pool_size = 3

    [[pools]]
    name = "a"
    queues = [
      "x", # [[pools]] in a comment
      "y",
    ]
    [pools.options]
    max_tasks_per_child = 3

    [[pools]]
    name = "b"
    note = """
    [[pools]]
    fake = 1
    """
    concurrency = 0

    [queues.emails]
    rate = 5
    [limits]
    "task:app.send" = { rate = 1, burst = 2 }
    queue.x.rate = 3
    [[schedules]]
    name = 's'
    '''
)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("dsn",), 2),
        (("database", "pool_size"), 4),
        (("pools", 0), 6),
        (("pools", 0, "queues"), 8),
        (("pools", 0, "options", "max_tasks_per_child"), 13),
        (("pools", 1), 15),
        (("pools", 1, "concurrency"), 21),
        (("pools", 1, "queues"), 15),  # missing key: its table's header
        (("queues", "emails", "rate"), 24),
        (("queues", "emails", "burst"), 23),
        (("limits", "task:app.send", "rate"), 26),
        (("limits", "queue", "x", "rate"), 27),
        (("schedules", 0, "name"), 29),
    ],
)
def test_locator_finds_headers_array_tables_and_dotted_keys(
    path: tuple[str | int, ...], line: int
) -> None:
    tomllib.loads(DOC)  # the fixture itself is valid TOML
    assert KeyLocator(DOC).line_of(path) == line


def test_locator_returns_none_for_keys_not_in_the_document() -> None:
    assert KeyLocator(DOC).line_of(("metrics", "addr")) is None


def test_dotted_key_quotes_only_when_needed() -> None:
    assert dotted_key(("pools", 1, "queues")) == "pools[1].queues"
    assert dotted_key(("limits", "task:app.send", "rate")) == 'limits."task:app.send".rate'


def test_interpolate_replaces_variables_defaults_and_escapes() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("${A}-${B:-two}-${EMPTY:-three}-${EMPTY}-$$A", env) == "1-two-three--$A"
    with pytest.raises(MissingVariable) as info:
        interpolate("x${NOPE}", env)
    assert info.value.name == "NOPE"


def test_inline_toml_renders_one_line_that_parses_back() -> None:
    value = {"a": [1, "x\n", {"b c": True}], "t": 1.5, "e": {}}
    text = inline_toml(value)
    assert "\n" not in text
    assert tomllib.loads(f"v = {text}")["v"] == value
