"""The round trip: ``worker_sync``, one statement that records ended attempts and claims.

Most rounds of a lane cost the database one statement and one commit: it records the
attempts that ended since the last round and claims the next rows. This module owns
that statement and is its only caller; two modules feed it:

- :mod:`reproq.engine.claim` sends the claim (while no keyed rows or rate limits are
  about, see :attr:`~reproq.engine.claim.Claimer.lean`), with the outcomes of the round;
- :mod:`reproq.engine.completion` sends outcomes alone, claiming nothing.

Its result rows have the shape of ``worker_claim``'s, plus rows of kind ``finished``
naming the attempts recorded (see :func:`applied_ids`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import Cursor
from psycopg.rows import tuple_row

from reproq.db import Conn
from reproq.queries import q

__all__ = ["NOTHING_DONE", "applied_ids", "send"]

NOTHING_DONE = "{}"
"""The ``done`` of a round in which no attempt ended."""

_RECORD_ONLY: dict[str, Any] = {
    "queues": [],
    "n": 0,
    "scan": 0,
    "aging": 0.0,
    "max_levels": 0,
    "lease_seconds": 0.0,
}
"""The claim parameters of a round that only records."""


def send(
    conn: Conn,
    *,
    worker_id: str,
    done: str = NOTHING_DONE,
    claim: Mapping[str, Any] | None = None,
) -> Cursor[tuple[Any, ...]]:
    """Send one round without reading its answer (so pipelined callers can batch it).

    ``done`` is the JSON object of ended attempts
    (:func:`reproq.engine.completion.encode`); ``claim`` the claim's parameters
    (:class:`reproq.engine.claim.Claimer` builds them), or None to claim nothing.
    """
    cur = conn.cursor(row_factory=tuple_row)
    params = {**(claim if claim is not None else _RECORD_ONLY), "rows": done}
    params["worker_id"] = worker_id
    cur.execute(q("worker_sync"), params, prepare=True)
    return cur


def applied_ids(cur: Cursor[tuple[Any, ...]]) -> set[int]:
    """The attempts a round that only recorded has applied (rows of kind ``finished``)."""
    return {row[1] for row in cur.fetchall() if row[0] == "finished"}
