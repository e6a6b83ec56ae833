"""Rows written with plain SQL, the way another client (reproq-django, a script) writes them.

Nothing here goes through reproq's producer, so its checks cannot hide what a worker does
with a row it did not write itself.
"""

from __future__ import annotations

from typing import Any

from reproq.db import Conn
from reproq.spec import canonical_json, spec_hash

DJANGO_COLUMNS = """
    backend_alias, queue_name, priority, run_after, spec_json, spec_hash, task_path,
    status, enqueued_at, started_at, last_attempted_at, finished_at, attempts,
    max_attempts, timeout_seconds, lock_key, concurrency_key, concurrency_limit,
    worker_ids, return_json, errors_json, metadata_json, last_error, failed_at,
    leased_until, leased_by, logs_uri, artifacts_uri, expires_at, parent_id,
    workflow_id, wait_count, created_at, updated_at, cancel_requested
"""
"""Every column of ``task_runs``, named as a client without column defaults (reproq-django)
must name them, in the order the inserts here give their values."""


def insert_row(
    conn: Conn,
    task_path: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    queue: str = "default",
    lock_key: str | None = None,
    concurrency_key: str | None = None,
    concurrency_limit: int = 0,
    max_attempts: int = 3,
) -> int:
    """Insert one READY row with every column named (a Django table has no defaults)."""
    spec = {
        "v": 1,
        "task_path": task_path,
        "args": args or [],
        "kwargs": kwargs or {},
        "takes_context": False,
        "queue_name": queue,
        "priority": 0,
        "lock_key": lock_key,
        "concurrency_key": concurrency_key,
        "concurrency_limit": concurrency_limit,
        "run_after": None,
        "exec": {"timeout_seconds": 900, "max_attempts": max_attempts},
        "provenance": {"code_ref": None, "pip_lock_hash": None},
    }
    found = conn.execute(
        "INSERT INTO task_runs ("
        + DJANGO_COLUMNS
        + """) VALUES (
            'default', %(queue)s, 0, NULL, %(spec)s::jsonb, %(hash)s, %(path)s,
            'READY', now(), NULL, NULL, NULL, 0, %(max_attempts)s, 900, %(lock_key)s,
            %(concurrency_key)s, %(concurrency_limit)s, '[]'::jsonb, NULL,
            '[]'::jsonb, '{}'::jsonb, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,
            now(), now(), false
        ) RETURNING result_id
        """,
        {
            "spec": canonical_json(spec),
            "hash": spec_hash(spec),
            "path": task_path,
            "queue": queue,
            "max_attempts": max_attempts,
            "lock_key": lock_key,
            "concurrency_key": concurrency_key,
            "concurrency_limit": concurrency_limit,
        },
    ).fetchone()
    assert found is not None
    return int(found["result_id"])
