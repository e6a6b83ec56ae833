"""Change notifications: a LISTEN connection on the ``reproq_tasks`` channel.

The ``task_runs`` triggers notify the channel (payload: the queue name) whenever rows
become READY, whoever wrote them. Readers that want to stay current (the TUI) open a
:class:`ChangeFeed` and re-query after :meth:`ChangeFeed.wait` reports a change.

A LISTEN needs a session connection of its own: through a PgBouncer in transaction mode
notifications never arrive, so callers keep a polling fallback.
"""

from __future__ import annotations

import psycopg

from reproq.db import Conn, connect, first_line, translate_errors
from reproq.errors import DatabaseError
from reproq.queries import q

__all__ = ["CHANNEL", "ChangeFeed"]

CHANNEL = "reproq_tasks"
"""The notification channel the ``task_runs`` triggers send to."""


class ChangeFeed:
    """A dedicated connection listening on :data:`CHANNEL`.

    Not thread-safe: one thread waits on it. Raises :class:`DatabaseError` when the
    connection cannot be opened or is lost; open a new feed to recover.
    """

    def __init__(self, dsn: str, *, application_name: str = "reproq-listen") -> None:
        self._conn: Conn = connect(dsn, application_name=application_name)
        try:
            with translate_errors():
                self._conn.execute(q("changes_listen"))
        except DatabaseError:
            self._conn.close()
            raise

    def wait(self, timeout: float) -> list[str]:
        """Block up to ``timeout`` seconds; the queue names notified meanwhile (maybe none).

        Returns as soon as one notification arrives, together with any others already
        delivered, so a burst of inserts wakes the caller once.
        """
        try:
            payloads = [n.payload for n in self._conn.notifies(timeout=timeout, stop_after=1)]
            if payloads:
                payloads += [n.payload for n in self._conn.notifies(timeout=0)]
        except psycopg.Error as exc:
            raise DatabaseError(f"change notifications lost: {first_line(str(exc))}") from exc
        if self._conn.broken or self._conn.closed:
            raise DatabaseError("change notifications lost: the connection closed")
        return payloads

    def close(self) -> None:
        """Stop listening and close the connection (safe to call twice)."""
        if not self._conn.closed:
            self._conn.close()

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
