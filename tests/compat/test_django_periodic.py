"""Beat reads and writes ``periodic_tasks`` rows as the Go worker does.

Expected behaviour is read from the Go Reproq Worker's ``internal/queue/periodic.go`` at
commit 544aae0: ``EnqueueDuePeriodicTasks`` sets ``last_run_at = next_run_at`` (the fire
time it enqueued, not the moment it ran) and ``parsePeriodicPayload`` takes an object
with an ``args`` or a ``kwargs`` key as the ``{args, kwargs}`` envelope, whatever other
keys it has.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from reproq.clock import FakeClock
from reproq.db import Conn
from reproq.schedule.beat import Beat

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _add_like_django(conn: Conn, name: str, payload: Any, *, cron: str = "*/5 * * * *") -> None:
    """A periodic_tasks row with only the columns reproq-django's PeriodicTask model has."""
    conn.execute(
        "INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name,"
        " priority, max_attempts, concurrency_key, concurrency_limit, last_run_at,"
        " next_run_at, enabled, created_at, updated_at)"
        " VALUES (%s, %s, 'myapp.tasks.report', %s::jsonb, 'default', 0, 3, NULL, 0, NULL,"
        " %s, true, now(), now())",
        (name, cron, json.dumps(payload), T0),
    )


def _run_spec(conn: Conn, name: str) -> dict[str, Any]:
    found = conn.execute(
        "SELECT spec_json FROM task_runs WHERE spec_json->>'periodic_name' = %s", (name,)
    ).fetchone()
    assert found is not None, f"no run of {name}"
    spec: dict[str, Any] = found["spec_json"]
    return spec


def _last_run_at(conn: Conn, name: str) -> datetime | None:
    found = conn.execute(
        "SELECT last_run_at FROM periodic_tasks WHERE name = %s", (name,)
    ).fetchone()
    assert found is not None
    value: datetime | None = found["last_run_at"]
    return value


def test_last_run_at_is_the_fire_time_enqueued_not_the_time_beat_ran(dsn: str, conn: Conn) -> None:
    _add_like_django(conn, "report", {"args": [], "kwargs": {}})
    with Beat(dsn, clock=FakeClock(T0 + timedelta(seconds=42)), name="compat") as beat:
        assert beat.run_once() == 1
    assert _last_run_at(conn, "report") == T0


def test_after_catching_up_last_run_at_is_the_latest_fire_time_enqueued(
    dsn: str, conn: Conn
) -> None:
    _add_like_django(conn, "report", {})
    conn.execute("UPDATE periodic_tasks SET misfire_policy = 'all' WHERE name = 'report'")
    # Down from 9:00 to 9:17: the runs of 9:00, 9:05, 9:10 and 9:15 are enqueued.
    with Beat(dsn, clock=FakeClock(T0 + timedelta(minutes=17)), name="compat") as beat:
        assert beat.run_once() == 4
    assert _last_run_at(conn, "report") == T0 + timedelta(minutes=15)


def test_an_object_with_args_or_kwargs_is_the_envelope_whatever_else_it_holds(
    dsn: str, conn: Conn
) -> None:
    _add_like_django(conn, "both", {"args": [1, "x"], "kwargs": {"full": True}, "note": "hi"})
    _add_like_django(conn, "args-only", {"args": [2], "description": "nightly"})
    _add_like_django(conn, "kwargs-only", {"kwargs": {"user": 7}, "owner": "ops"})
    _add_like_django(conn, "plain", {"user": 7, "note": "hi"})
    with Beat(dsn, clock=FakeClock(T0 + timedelta(seconds=1)), name="compat") as beat:
        assert beat.run_once() == 4
    got = {
        name: (_run_spec(conn, name)["args"], _run_spec(conn, name)["kwargs"])
        for name in ("both", "args-only", "kwargs-only", "plain")
    }
    assert got == {
        "both": ([1, "x"], {"full": True}),
        "args-only": ([2], {}),
        "kwargs-only": ([], {"user": 7}),
        "plain": ([], {"user": 7, "note": "hi"}),  # no envelope key: the kwargs
    }
