"""Bulk insert of new task runs: batches of COPY text, deduplicated on the active spec.

Two ways in, chosen per batch:

- *Straight*: ``COPY task_runs FROM STDIN``, the rows in ``spec_hash`` order, in a
  savepoint. Nothing is cheaper for the server (measured on 100,000 rows in batches of
  5,000: 17.9 µs of server CPU a row, against 19.8 µs the buffered way, which parses
  each row into the buffer, sorts it and copies it again). It only works when no spec
  is already active: otherwise the unique active-spec index refuses the COPY, the
  savepoint undoes it, and the batch goes the buffered way.
- *Buffered*: COPY into a temporary buffer, then one ``INSERT ... SELECT ... ORDER BY
  spec_hash ON CONFLICT DO NOTHING``, which skips (and reports) active duplicates.

A batch that repeats a spec goes buffered at once, and so does the rest of a call once a
batch of it met an active duplicate: duplicates are about, and trying first would cost
each batch twice. Both ways name every NOT NULL column (a table created by reproq-django
has no defaults), fire the same triggers (the insert NOTIFY, the task-path fill) and
write the same rows: a test compares them column by column.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import psycopg

from reproq.db import Conn, translate_errors
from reproq.errors import AlreadyQueued
from reproq.producer.staging import StagedRow, copy_field
from reproq.queries import q

__all__ = ["BATCH_BYTES", "BATCH_ROWS", "insert_rows"]

BATCH_ROWS = 5000
"""Rows per batch: large enough to amortise the round trips."""

BATCH_BYTES = 4 * 1024 * 1024
"""COPY text per batch, at most (a batch holds at least one row): large specs come in
smaller batches, so the memory a bulk enqueue holds stays flat whatever their size."""

_ROUNDS = 3
"""Tries of one row whose active duplicate keeps finishing between conflict and lookup."""


def insert_rows(
    conn: Conn, rows: Iterable[StagedRow], *, dedup: bool = True, count: int | None = None
) -> list[int]:
    """Insert many staged rows in a few round trips; ids come back in input order.

    Ids are reserved up front so the result maps exactly onto the input. The unique
    active-spec index deduplicates: an input whose spec is already active (or repeats
    an earlier input) gets the active row's id (``dedup=True``) or raises
    :class:`AlreadyQueued`. Runs in one transaction (a savepoint when the caller has one
    open): an error, whichever row raises it, leaves nothing written. The rows of one
    call share one ``enqueued_at``; after priority they run in no particular order among
    themselves.

    ``rows`` may be a lazy iterable: it is built one batch at a time, each sent before
    the next is built, so memory stays flat however many there are. (Building the next
    batch in the calling thread while another thread sends one was measured slower on a
    2-core machine: the sending thread waits for the interpreter lock after each 128 KiB
    of COPY data.) ``count`` (how many there are, when the caller knows) spares building
    the second batch before the first is sent, which is otherwise how a lazy input shows
    it spans several.

    Concurrent calls never deadlock on specs they share. A row waits for a concurrent
    insert of the same spec until that transaction ends, while holding the rows it
    already inserted, so two calls that reach shared specs in opposite orders would wait
    for each other. Each batch therefore goes in in ``spec_hash`` order (one global order
    for every call, whichever way the batch goes in), and a call of more than one batch,
    whose batches together are not in that order, first takes an exclusive lock that
    bulk calls share otherwise (``enqueue_bulk_lock``): it runs alone among bulk enqueues.
    """
    ids: list[int] = []
    batches = _batches(rows)
    first = next(batches, None)
    if first is None:
        return ids
    second = next(batches, None) if count is None else None
    several = second is not None if count is None else len(first.rows) < count
    lock = "exclusive" if several else "shared" if len(first.rows) > 1 else None
    writer = _Writer(conn, dedup=dedup)
    with translate_errors(), conn.transaction():
        if lock is not None:
            conn.execute(q("enqueue_bulk_lock"), {"exclusive": lock == "exclusive"})
        for batch in itertools.chain([first], [second] if second else [], batches):
            ids.extend(writer.write(batch))
    return ids


@dataclass(frozen=True, slots=True)
class _Batch:
    """Rows in input order, with what the writer needs to know of them."""

    rows: list[StagedRow]
    order: list[int]
    """Positions in the order the rows go in: by ``spec_hash``, then input order."""
    repeats: bool
    """Whether some spec is in the batch twice."""


def _batches(rows: Iterable[StagedRow]) -> Iterator[_Batch]:
    """``rows`` in batches of at most :data:`BATCH_ROWS` rows and :data:`BATCH_BYTES`."""
    batch: list[StagedRow] = []
    size = 0
    for row in rows:
        if batch and size + len(row.line) > BATCH_BYTES:
            yield _sorted(batch)
            batch, size = [], 0
        batch.append(row)
        size += len(row.line)
        if len(batch) == BATCH_ROWS:
            yield _sorted(batch)
            batch, size = [], 0
    if batch:
        yield _sorted(batch)


def _sorted(rows: list[StagedRow]) -> _Batch:
    # A stable sort keeps a repeated spec in input order, the order of its reserved ids,
    # which is the server's order for the buffered way (ORDER BY spec_hash, result_id).
    hashes = [row.spec_hash for row in rows]
    order = sorted(range(len(rows)), key=hashes.__getitem__)
    return _Batch(rows, order, repeats=len(set(hashes)) < len(hashes))


class _Writer:
    """Writes the batches of one call on its connection."""

    def __init__(self, conn: Conn, *, dedup: bool) -> None:
        self.conn = conn
        self.dedup = dedup
        self.straight = True
        """Whether a batch without repeats tries the straight way first."""

    def write(self, batch: _Batch) -> list[int]:
        """Insert one batch; the result ids of its rows, in input order."""
        reserved, now = self._reserve(len(batch.rows))
        if self.straight and not batch.repeats:
            if self._copy_straight(batch, reserved, now):
                return reserved
            self.straight = False  # an active duplicate: expect more of them
        return self._buffered(batch, reserved)

    def _reserve(self, n: int) -> tuple[list[int], dt.datetime]:
        """``n`` new result ids, ascending, and the transaction's ``now()``."""
        row = self.conn.execute(q("enqueue_reserve_ids"), {"n": n}).fetchone()
        assert row is not None and row["first"] is not None  # n > 0 ids were made
        if row["ids"] is None:
            return list(range(int(row["first"]), int(row["last"]) + 1)), row["now"]
        return [int(i) for i in row["ids"]], row["now"]

    def _copy_straight(self, batch: _Batch, ids: Sequence[int], now: dt.datetime) -> bool:
        """COPY the batch into ``task_runs``; False (nothing written) if a spec is active."""
        at = copy_field(now)
        # enqueued_at, created_at, updated_at, attempts, worker_ids, errors_json,
        # cancel_requested: as the buffered INSERT writes them.
        tail = f"\t{at}\t{at}\t{at}\t0\t[]\t[]\tf\n"
        rows = batch.rows
        data = "".join([f"{ids[i]}\t{rows[i].line}{tail}" for i in batch.order])
        try:
            with (
                self.conn.transaction(),
                self.conn.cursor() as cur,
                cur.copy(q("enqueue_copy_rows")) as copy,
            ):
                copy.write(data)
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def _buffered(self, batch: _Batch, reserved: list[int]) -> list[int]:
        rows = batch.rows
        result = list(reserved)
        pending = batch.order
        for _ in range(_ROUNDS):
            inserted = self._move(rows, reserved, pending)
            if inserted is None:
                return result  # every pending row went in
            # In input order: with dedup=False, the first duplicate of the input is named.
            missing = sorted(i for i in pending if reserved[i] not in inserted)
            active = {
                r["spec_hash"]: int(r["result_id"])
                for r in self.conn.execute(
                    q("enqueue_find_active"), {"hashes": [rows[i].spec_hash for i in missing]}
                )
            }
            retry: list[int] = []
            for i in missing:
                existing = active.get(rows[i].spec_hash)
                if existing is None:
                    retry.append(i)  # the duplicate finished in between: in again
                elif not self.dedup:
                    raise AlreadyQueued(rows[i].spec_hash, existing)
                else:
                    result[i] = existing
            if not retry:
                return result
            pending = sorted(retry, key=lambda i: (rows[i].spec_hash, i))  # the batch's order
        raise AlreadyQueued(rows[pending[0]].spec_hash, -1)

    def _move(
        self, rows: Sequence[StagedRow], ids: Sequence[int], positions: Sequence[int]
    ) -> set[int] | None:
        """COPY the rows at ``positions`` into the buffer and move them into ``task_runs``;
        the ids that went in, or None when all of them did."""
        conn = self.conn
        data = "".join([f"{ids[i]}\t{rows[i].line}\n" for i in positions])
        conn.execute(q("enqueue_drop_buffer"))
        conn.execute(q("enqueue_create_buffer"))
        with conn.cursor() as cur, cur.copy(q("enqueue_copy_buffer")) as copy:
            copy.write(data)
        moved = conn.execute(q("enqueue_from_buffer"), {"n": len(positions)}).fetchone()
        conn.execute(q("enqueue_drop_buffer"))
        assert moved is not None  # an aggregate answers one row
        return None if moved["ids"] is None else {int(i) for i in moved["ids"]}
