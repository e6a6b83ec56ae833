"""``reproq tui`` on the command line: argument checks and a clear error for a bad DSN."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reproq.cli import main


def test_demo_refuses_a_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tui", "--demo", "--dsn", "postgresql://x/y"]) == 2
    assert "--demo shows generated data" in capsys.readouterr().err


def test_an_unreachable_database_is_one_line_before_any_screen(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = "no_such_database_here"
    assert main(["tui", "--dsn", make_conninfo("", **params)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reproq: error: cannot connect") and err.count("\n") == 1
