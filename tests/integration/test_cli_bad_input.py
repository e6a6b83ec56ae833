"""Hostile command-line values: one line on stderr and exit code 2, never a traceback.

Each runs the real CLI front door (``reproq.cli.main``, what ``reproq`` runs) against a
real database, so the error is about the value, not a missing DSN.
"""

from __future__ import annotations

import pytest

from reproq.cli import main
from reproq.db import Conn

DEEP = "[" * 60_000 + "]" * 60_000
"""Nested past the JSON reader's recursion limit."""

NESTED = "[" * 900 + "]" * 900
"""Readable as JSON, but deeper than encoding a spec can recurse."""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--args", '["\\ud800"]'], "args[0]: a lone surrogate"),
        (["--kwargs", '{"k": "\\udfff"}'], "kwargs.k: a lone surrogate"),
        (["--args", DEEP], "--args is nested too deeply"),
        (["--args", NESTED], "args are nested too deeply"),
        (["--run-after", "+999999999d"], "must be at most"),
        (["--expires-in", "999999999d"], "must be at most"),
        (["--timeout", "30000d"], "timeout_seconds must be at most 2147483647"),
        (["--priority", "99999999999"], "priority must be between"),
        (["--max-attempts", "99999999999"], "max_attempts must be at most 2147483647"),
    ],
    ids=[
        "surrogate-arg",
        "surrogate-kwarg",
        "deep-json",
        "deep-spec",
        "run-after",
        "expires-in",
        "timeout",
        "priority",
        "max-attempts",
    ],
)
def test_enqueue_refuses_a_bad_value_in_one_line(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "enqueue", "app.tasks.sync", *flags, "--dsn", dsn)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("reproq: error: "), err[:500]
    assert message in err
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count is not None and count["n"] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "finished", "--older-than", "999999999999d"],
        ["prune", "finished", "--older-than", "999999999d"],
        ["prune", "workers", "--older-than", "999999999d"],
    ],
)
def test_prune_refuses_an_older_than_past_any_date_in_one_line(
    dsn: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = _run(capsys, *argv, "--dsn", dsn)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "--older-than" in err and "must be at most" in err


def test_the_biggest_accepted_duration_still_works_end_to_end(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "prune", "finished", "--older-than", "365000d", "--dsn", dsn)
    assert code == 0, err
    code, out, err = _run(
        capsys, "enqueue", "app.tasks.sync", "--run-after", "+365000d", "--dsn", dsn
    )
    assert code == 0 and int(out) > 0, err
