"""Claiming: turning due READY rows into RUNNING attempts leased to one worker.

One statement (``worker_claim``, or the lean round trip ``worker_sync`` of
:mod:`reproq.engine.round_trip` while no keyed rows or rate limits are about) takes up to
the number of free slots, SKIP LOCKED, across
the worker's queues (interleaved so none starves another), honouring paused queues,
``run_after``, priority with aging, FIFO within a priority, rate limits, ``lock_key`` and
concurrency limits. The common case (rows without keys) is that single statement, which
also records the attempts that ended since the last claim (see :mod:`reproq.engine.completion`).
Both statements take their candidates and order from one SQL fragment, so the fairness
rules are the same on either (``claim_candidates`` in ``reproq/sql/worker.sql``).

Rows with a ``lock_key`` or a ``concurrency_key`` are claimed only on the *keyed path*:
in a transaction, first take transaction-scoped advisory locks on their keys
(``worker_lock_keys``, never waiting), then run the claim again naming the locked keys.
Because the second statement starts after the locks are held, its snapshot sees every
RUNNING row of those keys that any other claimer committed, and no other claimer can
commit a claim of those keys until this transaction ends: at most one RUNNING row per
lock_key, at most ``concurrency_limit`` per concurrency key, with any number of workers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Cursor
from psycopg.rows import tuple_row

from reproq.db import Conn
from reproq.engine import round_trip
from reproq.queries import q

__all__ = ["FULL_CLAIM_SECONDS", "MAX_PRIORITY_LEVELS", "ClaimResult", "ClaimedRow", "Claimer"]

MAX_PRIORITY_LEVELS = 32
"""Distinct priorities looked at per queue and claim; lower ones wait for these to drain."""

FULL_CLAIM_SECONDS = 10.0
"""After keyed rows or rate limits were seen, how long claims use the full statement."""


@dataclass(kw_only=True, slots=True)  # not frozen: one is built per claimed row, and frozen costs
class ClaimedRow:
    """One row this worker now holds a lease on (``attempt`` is the fencing token).

    Read-only by convention.
    """

    result_id: int
    attempt: int
    spec_text: str
    timeout_seconds: int
    max_attempts: int
    workflow_id: uuid.UUID | None
    expired: bool  # expires_at has passed: the run must not execute
    cancel_requested: bool
    queue_name: str = "default"
    keyed: bool = False  # has a lock_key or a concurrency limit


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimResult:
    """What one claim produced, plus hints for when to claim next."""

    rows: list[ClaimedRow]
    limited: bool = False  # a rate limit held rows back: try again soon
    deferred: bool = False  # keyed rows were left for the keyed path
    lock_keys: tuple[str, ...] = ()  # the keys of deferred rows
    conc_keys: tuple[str, ...] = ()
    escalate: bool = False  # the lean claim stood back: keyed rows or rate limits in play
    finished: frozenset[int] = frozenset()  # ended attempts recorded by the same statement

    @property
    def partial(self) -> bool:
        """Whether :meth:`Claimer.claim_rest` has more to claim."""
        return self.escalate or self.deferred


class Claimer:
    """Builds and runs the claim statements of one worker."""

    def __init__(
        self,
        *,
        worker_id: str,
        queues: Sequence[str],
        lease_seconds: float,
        priority_aging_factor: float,
        scan_factor: int = 2,
    ) -> None:
        self.worker_id = worker_id
        self.queues = list(queues)
        self.lease_seconds = float(lease_seconds)
        self.aging = float(priority_aging_factor)
        self.scan_factor = scan_factor
        self._turn = 0
        self._full_until = 0.0  # monotonic instant until which the full claim is used

    def claim(self, conn: Conn, n: int) -> ClaimResult:
        """Claim up to ``n`` rows; runs in the caller's transaction, if there is one."""
        if n <= 0:
            return ClaimResult(rows=[])
        return self.claim_rest(conn, self.read(self.send(conn, n)), n)

    @property
    def lean(self) -> bool:
        """Whether the next :meth:`send` is the lean round trip, which can also record."""
        return time.monotonic() >= self._full_until

    def send(
        self, conn: Conn, n: int, done: str = round_trip.NOTHING_DONE
    ) -> Cursor[tuple[Any, ...]]:
        """Send a claim for up to ``n`` rows without reading it (see :meth:`read`).

        Split so a caller in pipeline mode can send it together with other statements
        and the COMMIT, in a single round trip. It is the lean round trip
        (:func:`reproq.engine.round_trip.send`), which also records ``done`` (ended
        attempts, :func:`reproq.engine.completion.encode`), unless keyed rows or rate
        limits were seen recently: then ``worker_claim``, and ``done`` must be empty
        (record it with :func:`reproq.engine.completion.send`).
        """
        params = self._params(self._rotated(), n, [], [])
        if self.lean:
            return round_trip.send(conn, worker_id=self.worker_id, done=done, claim=params)
        if done != round_trip.NOTHING_DONE:
            raise ValueError("the full claim records nothing: send the outcomes first")
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(q("worker_claim"), params, prepare=True)
        return cur

    def read(self, cur: Cursor[tuple[Any, ...]]) -> ClaimResult:
        """The rows a sent claim took, and what is left for :meth:`claim_rest`."""
        rows, limited, lock_keys, conc_keys, escalate, finished = self._read(cur)
        return ClaimResult(
            rows=rows,
            limited=limited,
            deferred=bool(lock_keys or conc_keys),
            lock_keys=tuple(lock_keys),
            conc_keys=tuple(conc_keys),
            escalate=escalate,
            finished=frozenset(finished),
        )

    def claim_rest(self, conn: Conn, first: ClaimResult, n: int) -> ClaimResult:
        """Claim what a first claim left (:attr:`ClaimResult.partial`), within ``n`` rows.

        An escalated lean claim is redone with the full statement (which stays in use for
        a while). Deferred keyed rows are then claimed on the keyed path, a transaction
        of its own (a savepoint inside the caller's): advisory locks on the keys first,
        then the claim again naming the locked keys.
        """
        if first.escalate:
            self._full_until = time.monotonic() + FULL_CLAIM_SECONDS
            cur = conn.cursor(row_factory=tuple_row)
            cur.execute(q("worker_claim"), self._params(self.queues, n, [], []), prepare=True)
            rows, limited, lock_keys, conc_keys, _, _ = self._read(cur)
            first = ClaimResult(
                rows=first.rows + rows,
                limited=limited,
                deferred=bool(lock_keys or conc_keys),
                lock_keys=tuple(lock_keys),
                conc_keys=tuple(conc_keys),
                finished=first.finished,
            )
        room = n - len(first.rows)
        if not first.deferred or room <= 0:
            return first
        rows = list(first.rows)
        limited = first.limited
        deferred = True
        with conn.transaction():
            held_lock, held_conc = self._lock(conn, list(first.lock_keys), list(first.conc_keys))
            if held_lock or held_conc:
                cur = conn.cursor(row_factory=tuple_row)
                cur.execute(
                    q("worker_claim"),
                    self._params(self.queues, room, held_lock, held_conc),
                    prepare=True,
                )
                more, limited2, left_lock, left_conc, _, _ = self._read(cur)
                rows.extend(more)
                limited = limited or limited2
                deferred = bool(left_lock or left_conc) or (
                    len(held_lock) < len(first.lock_keys) or len(held_conc) < len(first.conc_keys)
                )
        return ClaimResult(rows=rows, limited=limited, deferred=deferred, finished=first.finished)

    def _rotated(self) -> list[str]:
        """The queue list starting one further each claim: the round-robin tie-break."""
        queues = self.queues
        if len(queues) > 1:
            self._turn = (self._turn + 1) % len(queues)
            return queues[self._turn :] + queues[: self._turn]
        return queues

    def _params(
        self, queues: list[str], n: int, lock_keys: list[str], conc_keys: list[str]
    ) -> dict[str, Any]:
        return {
            "queues": queues,
            "n": n,
            "scan": max(n * self.scan_factor, n + 8),
            "aging": self.aging,
            "max_levels": MAX_PRIORITY_LEVELS,
            "lock_keys": lock_keys,
            "conc_keys": conc_keys,
            "worker_id": self.worker_id,
            "lease_seconds": self.lease_seconds,
        }

    @staticmethod
    def _read(
        cur: Cursor[tuple[Any, ...]],
    ) -> tuple[list[ClaimedRow], bool, list[str], list[str], bool, list[int]]:
        claimed: list[ClaimedRow] = []
        finished: list[int] = []
        limited = escalate = False
        want_lock: list[str] = []
        want_conc: list[str] = []
        for (
            kind,
            rid,
            attempt,
            spec,
            timeout,
            max_attempts,
            wf,
            expired,
            cancel,
            queue,
            keyed,
            lk,
            ck,
        ) in cur.fetchall():
            if kind == "claimed":
                claimed.append(
                    ClaimedRow(
                        result_id=rid,
                        attempt=attempt,
                        spec_text=spec,
                        timeout_seconds=timeout,
                        max_attempts=max_attempts,
                        workflow_id=wf,
                        expired=expired,
                        cancel_requested=cancel,
                        queue_name=queue,
                        keyed=keyed,
                    )
                )
            elif kind == "finished":
                finished.append(rid)
            elif kind == "deferred":
                if lk is not None and lk not in want_lock:
                    want_lock.append(lk)
                if ck is not None and ck not in want_conc:
                    want_conc.append(ck)
            elif kind == "limited":
                limited = True
            else:
                escalate = True
        return claimed, limited, want_lock, want_conc, escalate, finished

    def _lock(
        self, conn: Conn, lock_keys: list[str], conc_keys: list[str]
    ) -> tuple[list[str], list[str]]:
        """Try the advisory locks of these keys; the ones this transaction now holds."""
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(q("worker_lock_keys"), {"lock_keys": lock_keys, "conc_keys": conc_keys})
        held_lock: list[str] = []
        held_conc: list[str] = []
        for kind, key in cur:
            (held_lock if kind == "lock" else held_conc).append(key)
        return held_lock, held_conc
