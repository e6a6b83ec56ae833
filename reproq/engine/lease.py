"""Leases: a worker's time-bounded, fenced hold on one attempt of a task run.

A lease is identified by (``result_id``, ``attempt``) and the worker id: every statement
that renews, finishes or gives one back checks all three plus ``status = 'RUNNING'``, so
an attempt that was reclaimed, or re-claimed by a restarted worker with the same id,
can no longer be touched by its old holder.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from psycopg.rows import tuple_row

from reproq.db import Conn
from reproq.queries import q

__all__ = [
    "Held",
    "Lease",
    "Renewal",
    "WorkerRecord",
    "by_result_id",
    "give_back",
    "register",
    "renew",
]


class Held(Protocol):
    """What identifies a held attempt: a :class:`Lease`, or the claimed row it came from."""

    @property
    def result_id(self) -> int:
        """The task run."""
        ...

    @property
    def attempt(self) -> int:
        """The claimed attempt number: the fencing token."""
        ...

    @property
    def max_attempts(self) -> int:
        """Attempts the run may use."""
        ...

    @property
    def workflow_id(self) -> uuid.UUID | None:
        """The chain, group or chord the run belongs to."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Lease:
    """A worker's time-bounded claim on one task run."""

    result_id: int
    attempt: int  # the fencing token: renew/complete must match it
    max_attempts: int
    workflow_id: uuid.UUID | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerRecord:
    """A worker as the registry (``reproq_workers``) shows it."""

    worker_id: str
    hostname: str
    concurrency: int
    queues: tuple[str, ...]
    version: str

    def params(self) -> dict[str, object]:
        """Query parameters shared by ``worker_register`` and ``worker_heartbeat``."""
        return {
            "worker_id": self.worker_id,
            "hostname": self.hostname,
            "concurrency": self.concurrency,
            "queues": json.dumps(list(self.queues)),
            "version": self.version,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Renewal:
    """The answer to one heartbeat."""

    renewed: frozenset[int]  # result_ids whose lease was extended
    cancel_requested: frozenset[int]  # of those, the ones an operator asked to cancel


def by_result_id(entries: Iterable[tuple[int, str]]) -> str:
    """A JSON object from ``(result_id, JSON text)`` pairs: the per-row parameter of the
    worker's batch statements, which look each row up by its id instead of joining."""
    return "{" + ",".join([f'"{rid}":{value}' for rid, value in entries]) + "}"


def register(conn: Conn, record: WorkerRecord) -> None:
    """Upsert the worker into the registry (``started_at`` survives a re-registration)."""
    conn.execute(q("worker_register"), record.params())


def renew(
    conn: Conn, record: WorkerRecord, leases: Sequence[Held], lease_seconds: float
) -> Renewal:
    """Extend every lease still held and mark the worker seen, in one statement."""
    params = record.params()
    params["leases"] = by_result_id([(h.result_id, str(h.attempt)) for h in leases])
    params["lease_seconds"] = float(lease_seconds)
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(q("worker_heartbeat"), params, prepare=True)
    renewed: set[int] = set()
    cancel: set[int] = set()
    for rid, cancel_requested in cur:
        renewed.add(rid)
        if cancel_requested:
            cancel.add(rid)
    return Renewal(renewed=frozenset(renewed), cancel_requested=frozenset(cancel))


def give_back(
    conn: Conn,
    worker_id: str,
    leases: Sequence[Held],
    *,
    holds: Sequence[float] | None = None,
) -> set[int]:
    """Return unfinished attempts to READY without charging them; the ids given back.

    ``holds`` (seconds, one per lease) keeps a run from being claimed again for a while:
    for attempts still executing in a thread that cannot be killed.
    """
    if not leases:
        return set()
    hold_list = list(holds) if holds is not None else [0.0] * len(leases)
    entries = by_result_id(
        (h.result_id, f'{{"a":{h.attempt},"h":{float(hold)!r}}}')
        for h, hold in zip(leases, hold_list, strict=True)
    )
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(
        q("worker_give_back"),
        {"leases": entries, "worker_id": worker_id},
    )
    return {row[0] for row in cur}
