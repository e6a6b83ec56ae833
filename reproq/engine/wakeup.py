"""Wake-ups: a thread that LISTENs on ``reproq_tasks`` and reports the queues named.

A trigger on ``task_runs`` sends the queue name whenever rows become READY (inserted by
reproq, reproq-django or hand-written SQL, retried, released, given back), so an idle
worker starts a task within milliseconds instead of at its next poll. The listener owns
a dedicated connection; when it drops, the thread reconnects with backoff and asks for
one poll (notifications sent while it was away are lost), and the worker keeps polling
in the meantime. Nothing here can stop the worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg

from reproq.db import connect, redact_dsn
from reproq.errors import DatabaseError
from reproq.queries import q

__all__ = ["Listener"]

log = logging.getLogger("reproq.listener")

_WAIT_SLICE = 0.5  # seconds per notifies() call, so a stop is noticed promptly
_BACKOFF_MIN = 0.2
_BACKOFF_MAX = 5.0


class Listener:
    """Calls ``on_wake()`` for each notification about one of ``queues``.

    ``on_wake`` is also called after every (re)connect, since notifications sent while
    disconnected are lost. :attr:`connected` tells whether wake-ups are flowing now.
    """

    def __init__(
        self,
        dsn: str,
        queues: Iterable[str],
        on_wake: Callable[[], None],
        *,
        application_name: str = "reproq-listener",
    ) -> None:
        self.dsn = dsn
        self.queues = frozenset(queues)
        self.on_wake = on_wake
        self.application_name = application_name
        self.connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening in a daemon thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"{self.application_name}-listen", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = _BACKOFF_MIN
        while not self._stop.is_set():
            try:
                conn = connect(self.dsn, application_name=self.application_name)
            except DatabaseError as exc:
                log.warning("listener cannot connect (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            try:
                conn.execute(q("worker_listen"))
                self.connected = True
                backoff = _BACKOFF_MIN
                self.on_wake()
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=_WAIT_SLICE):
                        if note.payload in self.queues:
                            self.on_wake()
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning(
                        "listener connection to %s lost (%s); reconnecting",
                        redact_dsn(self.dsn),
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc),
                    )
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                self.connected = False
                conn.close()
