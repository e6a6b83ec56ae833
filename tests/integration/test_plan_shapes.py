"""The worker's statements keep index plans whatever the table's statistics say.

A worker prepares its statements once, usually while its queue is empty, and keeps the
plans for the whole session; a burst of inserts never makes PostgreSQL plan again. Each
test builds a state of the statistics a worker meets in production, prepares the
statements in a session set up as the worker's own, and reads the plans PostgreSQL
would use with ``EXPLAIN (FORMAT JSON) EXECUTE``: every read of ``task_runs`` must be an
index scan bounded by an index condition. Only the RUNNING-only indexes may be walked
whole: they hold the rows running right now, never the queue or its history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from psycopg import sql

from reproq.db import Conn, connect
from reproq.engine.claim import MAX_PRIORITY_LEVELS
from reproq.queries import q
from tests.integration.sql_rows import DJANGO_COLUMNS

_WORKER = "plan-w"

_UNBOUNDED_OK = frozenset(
    {"task_runs_lock_key_idx", "task_runs_concurrency_idx", "task_runs_parent_idx"}
)
"""Indexes that may be walked whole: they hold only RUNNING rows (bounded by the fleet's
slots) or only WAITING ones (workflow steps whose turn has not come), never the queue or
its history."""

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _insert_rows(conn: Conn, count: int, status: str = "READY") -> None:
    """``count`` no-op rows written as reproq-django writes them: every column named,
    ``run_after`` NULL, no concurrency limit."""
    conn.execute(
        "INSERT INTO task_runs ("
        + DJANGO_COLUMNS
        + """)
        SELECT 'default', 'default', 0, NULL, s.spec,
               encode(sha256(convert_to(s.spec::text, 'UTF8')), 'hex'),
               'reproq.demo.noop', %(status)s, now(),
               CASE WHEN %(status)s = 'READY' THEN NULL ELSE now() END,
               CASE WHEN %(status)s = 'READY' THEN NULL ELSE now() END,
               CASE WHEN %(status)s = 'READY' THEN NULL ELSE now() END,
               CASE WHEN %(status)s = 'READY' THEN 0 ELSE 1 END, 3, 900, NULL, NULL, 0,
               '[]'::jsonb, NULL, '[]'::jsonb, '{}'::jsonb, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL, 0, now(), now(), false
        FROM (
            SELECT jsonb_build_object(
                'v', 1, 'task_path', 'reproq.demo.noop', 'args', jsonb_build_array(i),
                'kwargs', '{}'::jsonb, 'queue_name', 'default', 'priority', 0,
                'run_after', NULL, 'n', %(tag)s::text) AS spec
            FROM generate_series(1, %(count)s) AS i
        ) s
        """,
        {"count": count, "status": status, "tag": f"{status}-{count}"},
    )


def _claim_params(n: int) -> dict[str, Any]:
    return {
        "queues": ["default"],
        "n": n,
        "scan": n * 2,
        "aging": 60.0,
        "max_levels": MAX_PRIORITY_LEVELS,
        "lock_keys": [],
        "conc_keys": [],
        "worker_id": _WORKER,
        "lease_seconds": 60.0,
    }


def _statements(running: Mapping[int, int]) -> dict[str, dict[str, Any]]:
    """Every statement a worker runs on task_runs, with parameters naming ``running``
    (result_id -> attempt), rows this worker holds."""
    done = {
        str(rid): {"a": attempt, "s": "SUCCESSFUL", "r": None} for rid, attempt in running.items()
    }
    leases = {str(rid): attempt for rid, attempt in running.items()}
    ids = list(running) or [2**40]  # never a row; as wide as a bigint, as ids can be
    return {
        "worker_sync": {**_claim_params(32), "rows": json.dumps(done)},
        "worker_claim": _claim_params(32),
        "worker_heartbeat": {
            "worker_id": _WORKER,
            "hostname": "h",
            "concurrency": 32,
            "queues": '["default"]',
            "version": "t",
            "leases": json.dumps(leases),
            "lease_seconds": 60.0,
        },
        "worker_give_back": {
            "worker_id": _WORKER,
            "leases": json.dumps({k: {"a": v, "h": 0.0} for k, v in leases.items()}),
        },
        "worker_reclaim": {"limit": 100, "held": list(running)},
        "worker_next_due": {"queues": ["default"]},
        "worker_release_children": {"ids": ids},
        "worker_release_callbacks": {"ids": ids, "remaining": [1] * len(ids)},
        "worker_fail_waiting": {
            "failed_ids": ids,
            "callback_ids": ids,
            "callback_causes": ids,
            "worker_id": _WORKER,
        },
    }


def _prepare(conn: Conn, statements: Mapping[str, Mapping[str, Any]]) -> None:
    """Prepare and run each statement once: its generic plan is made now, on the table
    as it is, and kept for the session."""
    for name, params in statements.items():
        conn.cursor().execute(q(name), params, prepare=True)


def _plan(conn: Conn, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The plan the session's prepared statement ``name`` runs with these parameters."""
    text = q(name)
    names: list[str] = []
    for found in _PLACEHOLDER.finditer(text):
        if found.group(1) not in names:
            names.append(found.group(1))
    server_text = _PLACEHOLDER.sub(lambda m: f"${names.index(m.group(1)) + 1}", text)
    prepared = conn.execute(
        "SELECT name, parameter_types::text[] AS types FROM pg_prepared_statements "
        "WHERE statement = %s ORDER BY prepare_time LIMIT 1",
        (server_text,),
    ).fetchone()
    assert prepared is not None, f"{name} is not prepared in this session"
    args = [
        sql.SQL("{}::{}").format(sql.Literal(params[key]), sql.SQL(type_name))
        for key, type_name in zip(names, prepared["types"], strict=True)
    ]
    found_plan = conn.execute(
        sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}({})").format(
            sql.Identifier(prepared["name"]), sql.SQL(", ").join(args)
        )
    ).fetchone()
    assert found_plan is not None
    plan: dict[str, Any] = found_plan["QUERY PLAN"][0]["Plan"]
    return plan


def _nodes(plan: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _unbounded_reads(plan: Mapping[str, Any]) -> list[str]:
    """Every read of task_runs that is not an index scan bounded by an index condition."""
    bad = []
    for node in _nodes(plan):
        if node.get("Relation Name") != "task_runs" or node["Node Type"] == "ModifyTable":
            continue
        kind = node["Node Type"]
        index = node.get("Index Name")
        if kind not in ("Index Scan", "Index Only Scan"):
            bad.append(f"{kind} of task_runs")
        elif "Index Cond" not in node and index not in _UNBOUNDED_OK:
            bad.append(f"{kind} of all of {index}")
    return bad


@pytest.fixture
def worker_conn(dsn: str) -> Iterator[Conn]:
    """A connection set up as a worker's (its planner settings and generic plans)."""
    connection = connect(dsn)
    connection.execute(q("worker_session_setup"), {"statement_timeout": "60s"})
    try:
        yield connection
    finally:
        connection.close()


def _hold_some(conn: Conn, count: int) -> dict[int, int]:
    """Make ``count`` READY rows RUNNING under this worker; result_id -> attempt."""
    rows = conn.execute(
        "UPDATE task_runs SET status = 'RUNNING', attempts = attempts + 1, leased_by = %s, "
        "leased_until = now() + interval '1 minute' WHERE result_id IN ("
        "SELECT result_id FROM task_runs WHERE status = 'READY' ORDER BY result_id LIMIT %s) "
        "RETURNING result_id, attempts",
        (_WORKER, count),
    ).fetchall()
    return {r["result_id"]: r["attempts"] for r in rows}


def _empty_then_burst(conn: Conn, worker: Conn) -> None:
    conn.execute("ANALYZE task_runs")
    _prepare(worker, _statements({}))
    _insert_rows(conn, 20_000)


def _burst_before_start(conn: Conn, worker: Conn) -> None:
    conn.execute("ANALYZE task_runs")
    _insert_rows(conn, 20_000)
    _prepare(worker, _statements({}))


def _history_then_burst(conn: Conn, worker: Conn) -> None:
    _insert_rows(conn, 50_000, status="SUCCESSFUL")
    conn.execute("ANALYZE task_runs")
    _prepare(worker, _statements({}))
    _insert_rows(conn, 20_000)


STATES: dict[str, Callable[[Conn, Conn], None]] = {
    "empty table analyzed, worker idle, then a burst never analyzed": _empty_then_burst,
    "burst inserted before the worker starts, never analyzed": _burst_before_start,
    "finished rows analyzed, worker idle, then a burst never analyzed": _history_then_burst,
}


@pytest.mark.parametrize("state", list(STATES))
def test_every_statement_of_a_worker_reads_task_runs_through_bounded_index_scans(
    conn: Conn, worker_conn: Conn, state: str
) -> None:
    STATES[state](conn, worker_conn)
    statements = _statements(_hold_some(conn, 32))

    found = {name: _unbounded_reads(_plan(worker_conn, name, p)) for name, p in statements.items()}

    assert found == {name: [] for name in statements}


def test_a_worker_session_never_compiles_its_statements(worker_conn: Conn) -> None:
    """JIT is off: the plan kinds the session prices out make every plan's cost look
    enormous, and JIT compiles whatever costs more than jit_above_cost."""
    found = worker_conn.execute("SELECT current_setting('jit') AS jit").fetchone()
    assert found == {"jit": "off"}
