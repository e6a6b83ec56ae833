"""Reclaiming expired leases: the recovery path for workers that died mid-task.

A RUNNING row whose ``leased_until`` has passed belongs to a worker that crashed, was
killed or lost the database for longer than its lease. It goes back to READY (the
attempt stays counted, an ``errors_json`` entry of kind ``lease_expiry`` records it), or
to FAILED when its attempts are used up, with the usual workflow consequences. Every
worker runs this periodically; SKIP LOCKED lets several do so at once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from psycopg.rows import tuple_row

from reproq.db import Conn
from reproq.engine.workflow_progress import Ended, advance
from reproq.models import TaskStatus
from reproq.queries import q

__all__ = ["ReclaimResult", "reclaim_expired"]

DEFAULT_BATCH = 500
"""Rows handled per statement; a larger backlog is worked off over several calls."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReclaimResult:
    """What one reclaim pass did."""

    requeued: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        """How many expired leases were handled."""
        return len(self.requeued) + len(self.failed)


def reclaim_expired(
    conn: Conn, *, worker_id: str, held: Collection[int] = (), limit: int = DEFAULT_BATCH
) -> ReclaimResult:
    """Handle up to ``limit`` expired leases in one transaction.

    ``held`` are the runs the calling worker is itself executing: after a database outage
    their leases may look expired, but its next heartbeat renews them if nobody else
    took them in the meantime.
    """
    with conn.transaction():
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(q("worker_reclaim"), {"limit": limit, "held": list(held)})
        requeued: list[int] = []
        failed: list[Ended] = []
        for rid, status, workflow_id in cur:
            if status == TaskStatus.FAILED:
                failed.append(Ended(result_id=rid, workflow_id=workflow_id))
            else:
                requeued.append(rid)
        if failed:
            advance(conn, worker_id=worker_id, failed=failed)
    return ReclaimResult(requeued=tuple(requeued), failed=tuple(e.result_id for e in failed))
