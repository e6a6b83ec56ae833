"""Running a blocking service in a thread of its own: :class:`InBackground`."""

from __future__ import annotations

import abc
import logging
import threading

__all__ = ["InBackground"]

log = logging.getLogger("reproq.worker")


class InBackground(abc.ABC):
    """:meth:`start` and :meth:`join` for a service whose ``run()`` blocks until it is done.

    ``run()`` then works in a daemon thread named ``_thread_name``, and whatever it raised
    is kept in ``error`` (and handed to :meth:`_on_error`).
    """

    error: BaseException | None = None
    _thread: threading.Thread | None = None
    _thread_name = "reproq-service"

    @abc.abstractmethod
    def run(self) -> None:
        """Work in the calling thread until done."""

    def start(self) -> None:
        """Run in a background thread; see :meth:`join` and :attr:`error`."""
        thread = threading.Thread(target=self._run_captured, name=self._thread_name, daemon=True)
        self._thread = thread
        thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for what :meth:`start` began; True once it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run_captured(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # surfaced through .error for start()/join() users
            self.error = exc
            self._on_error(exc)

    def _on_error(self, exc: BaseException) -> None:
        """Called in the background thread with what ``run()`` raised."""
        log.debug("%s ended on an error: %s", self._thread_name, exc)
