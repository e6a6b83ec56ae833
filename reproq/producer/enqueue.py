"""Writing new task runs: one at a time or a whole batch in one round trip, with dedup.

A spec identical to one that is READY or RUNNING is never inserted twice: the unique
partial index on ``spec_hash`` guarantees it even under concurrent writers. With
``dedup=True`` the existing ``result_id`` is returned; with ``dedup=False`` the caller gets
:class:`AlreadyQueued` naming the active row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from typing import Any

from reproq.db import Conn, translate_errors
from reproq.errors import AlreadyQueued, InvalidSpec, PayloadTooLarge
from reproq.models import TaskStatus
from reproq.producer.bulk import insert_rows
from reproq.producer.staging import StagedRow, copy_field, staged_row
from reproq.queries import q
from reproq.spec import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_TIMEOUT_SECONDS,
    canonical_json,
    check_keys,
    unencodable_part,
)

MAX_SPEC_BYTES = 1024 * 1024
"""Specs larger than this are refused at enqueue time (the executor refuses them too)."""

_INT_MAX = 2**31 - 1
"""The largest value of a PostgreSQL ``integer`` column (priority, attempts, timeout)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class NewTask:
    """One row to insert into ``task_runs``; built from a spec with :meth:`from_spec`."""

    spec: Mapping[str, Any]
    spec_json: str
    spec_hash: str
    task_path: str
    queue_name: str = "default"
    priority: int = 0
    run_after: dt.datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    lock_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expires_at: dt.datetime | None = None
    parent_id: int | None = None
    workflow_id: uuid.UUID | None = None
    wait_count: int = 0
    status: TaskStatus = TaskStatus.READY
    backend_alias: str = "default"

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        expires_at: dt.datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        parent_id: int | None = None,
        workflow_id: uuid.UUID | None = None,
        wait_count: int = 0,
        status: TaskStatus = TaskStatus.READY,
        max_spec_bytes: int = MAX_SPEC_BYTES,
    ) -> NewTask:
        """Derive the row's columns from the spec (queue, priority, keys, limits, run_after)."""
        try:
            text = canonical_json(spec)
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            part = unencodable_part(spec) or "a lone surrogate"
            raise InvalidSpec(
                f"spec for {spec.get('task_path')!r} cannot be stored as UTF-8: {part}"
            ) from None
        except RecursionError:
            raise InvalidSpec(
                f"spec for {spec.get('task_path')!r} is nested too deeply to store"
            ) from None
        size = len(data)
        if size > max_spec_bytes:
            raise PayloadTooLarge(
                f"spec for {spec.get('task_path')!r} is {size} bytes, over the "
                f"{max_spec_bytes}-byte limit"
            )
        exec_opts = spec.get("exec") or {}
        run_after = spec.get("run_after")
        return cls(
            spec=spec,
            spec_json=text,
            # Hash the text already built: the same bytes spec_hash() would produce.
            spec_hash=hashlib.sha256(data).hexdigest(),
            task_path=str(spec["task_path"]),
            queue_name=str(spec.get("queue_name") or "default"),
            priority=int(spec.get("priority") or 0),
            run_after=dt.datetime.fromisoformat(run_after) if run_after else None,
            max_attempts=int(exec_opts.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            timeout_seconds=int(exec_opts.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
            lock_key=spec.get("lock_key"),
            concurrency_key=spec.get("concurrency_key"),
            concurrency_limit=int(spec.get("concurrency_limit") or 0),
            metadata=dict(metadata or {}),
            expires_at=expires_at,
            parent_id=parent_id,
            workflow_id=workflow_id,
            wait_count=wait_count,
            status=status,
        )

    def validate(self) -> None:
        """Refuse values the worker could never honour or the columns cannot hold."""
        if self.max_attempts < 1:
            raise InvalidSpec(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.timeout_seconds < 1:
            raise InvalidSpec(f"timeout_seconds must be at least 1, got {self.timeout_seconds}")
        if self.concurrency_limit < 0:
            raise InvalidSpec(f"concurrency_limit must be >= 0, got {self.concurrency_limit}")
        for name in ("max_attempts", "timeout_seconds", "concurrency_limit"):
            if getattr(self, name) > _INT_MAX:
                raise InvalidSpec(f"{name} must be at most {_INT_MAX}, got {getattr(self, name)}")
        if not -_INT_MAX - 1 <= self.priority <= _INT_MAX:
            raise InvalidSpec(
                f"priority must be between {-_INT_MAX - 1} and {_INT_MAX}, got {self.priority}"
            )
        check_keys(self.lock_key, self.concurrency_key)

    def copy_columns(self) -> str:
        """The COPY text of the columns of :data:`reproq.producer.staging.COLUMNS`."""
        return "\t".join(
            map(
                copy_field,
                (
                    self.backend_alias,
                    self.queue_name,
                    self.priority,
                    self.run_after,
                    self.task_path,
                    self.status,
                    self.max_attempts,
                    self.timeout_seconds,
                    self.lock_key,
                    self.concurrency_key,
                    self.concurrency_limit,
                    self.expires_at,
                    self.parent_id,
                    self.workflow_id,
                    self.wait_count,
                ),
            )
        )

    def staged(self) -> StagedRow:
        """This row for the bulk COPY buffer, after :meth:`validate`."""
        self.validate()
        return staged_row(
            self.spec_hash, self.spec_json, self.copy_columns(), metadata_json(self.metadata)
        )

    def params(self) -> dict[str, Any]:
        """Query parameters for ``enqueue_one``."""
        self.validate()
        return {
            "backend_alias": self.backend_alias,
            "queue_name": self.queue_name,
            "priority": self.priority,
            "run_after": self.run_after,
            "spec_json": self.spec_json,
            "spec_hash": self.spec_hash,
            "task_path": self.task_path,
            "status": str(self.status),
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout_seconds,
            "lock_key": self.lock_key,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
            "metadata_json": metadata_json(self.metadata),
            "expires_at": self.expires_at,
            "parent_id": self.parent_id,
            "workflow_id": self.workflow_id,
            "wait_count": self.wait_count,
        }


def metadata_json(metadata: Mapping[str, Any]) -> str:
    """The ``metadata_json`` column's text (values JSON cannot hold are written as text)."""
    return json.dumps(dict(metadata), default=str) if metadata else "{}"


def insert_task(conn: Conn, task: NewTask, *, dedup: bool = True) -> int:
    """Insert one task run; returns its result_id (or the active duplicate's, with dedup)."""
    params = task.params()
    with translate_errors():
        # An active duplicate can finish between our conflict and our lookup; then the
        # insert succeeds on the next round. Three rounds are plenty.
        for _ in range(3):
            row = conn.execute(q("enqueue_one"), params).fetchone()
            if row is not None:
                return int(row["result_id"])
            existing = conn.execute(
                q("enqueue_find_active"), {"hashes": [task.spec_hash]}
            ).fetchone()
            if existing is not None:
                if not dedup:
                    raise AlreadyQueued(task.spec_hash, int(existing["result_id"]))
                return int(existing["result_id"])
    raise AlreadyQueued(task.spec_hash, -1)


def insert_tasks(
    conn: Conn, tasks: Iterable[NewTask], *, dedup: bool = True, count: int | None = None
) -> list[int]:
    """Insert many task runs in a few round trips; ids come back in input order.

    Each task is validated (:meth:`NewTask.validate`) before its batch is sent; see
    :func:`reproq.producer.bulk.insert_rows` for the rest.
    """
    if count is None and isinstance(tasks, Sized):
        count = len(tasks)
    return insert_rows(conn, (task.staged() for task in tasks), dedup=dedup, count=count)


def insert_workflow_run(
    conn: Conn, workflow_id: uuid.UUID, *, expected_count: int, callback_result_id: int | None
) -> None:
    """Record a group or chord in ``workflow_runs``."""
    with translate_errors():
        conn.execute(
            q("enqueue_workflow_run"),
            {
                "workflow_id": workflow_id,
                "expected_count": expected_count,
                "callback_result_id": callback_result_id,
            },
        )
