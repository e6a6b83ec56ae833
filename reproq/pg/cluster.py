"""A PostgreSQL cluster in a data directory: start, stop, restart, crash it on purpose.

:class:`LocalPostgres` serves ``reproq up``'s embedded database (whose data persists
between runs), the throwaway servers of tests and benchmarks
(:mod:`reproq.pg.throwaway`), and the stress harness, which restarts, kills and freezes
the cluster's processes to inject faults. Which processes belong to a cluster is read
from ``postmaster.pid`` and ``/proc``; :func:`attach_dsn` reaches a cluster another
process runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from hashlib import sha256
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Literal, Self

from psycopg.conninfo import make_conninfo

from reproq.errors import LocalServerError, UsageError
from reproq.pg.processes import (
    is_server_process,
    live_pid_file,
    pid_alive,
    read_pid_file,
    server_pids,
)
from reproq.pg.tools import Account, account_for, find_bin_dir, give_to, run_tool, tail

__all__ = ["SUPERUSER", "LocalPostgres", "StopMode", "attach_dsn", "check_settings"]

log = logging.getLogger("reproq.pgserver")

StopMode = Literal["smart", "fast", "immediate"]
"""How ``pg_ctl stop`` shuts down: wait for clients, roll back and disconnect, or abort."""

SUPERUSER = "postgres"
"""The superuser every cluster made here is initialised with (trust authentication)."""

_CONF_INCLUDE = "reproq.conf"
_INCLUDE_LINE = f"include_if_exists = '{_CONF_INCLUDE}'"
# Settings reproq writes from the constructor's arguments, so callers may not pass them.
_MANAGED_SETTINGS = frozenset({"port", "listen_addresses", "unix_socket_directories"})
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
# postmaster.pid states that accept connections ("" before PostgreSQL 10 recorded states);
# "starting" and "stopping" refuse them.
_READY_STATES = ("", "ready", "standby")


def _wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def attach_dsn(data_dir: Path, *, dbname: str = "postgres") -> str | None:
    """The DSN of the server running in ``data_dir`` and accepting connections, else None.

    Reads ``postmaster.pid`` (pid, port, socket directory) and checks the pid is alive,
    so ``reproq status`` can reach the embedded database while ``reproq up`` runs it.
    """
    pid_file = live_pid_file(Path(data_dir).absolute())
    if pid_file is None or pid_file.port is None:
        return None
    if pid_file.status not in _READY_STATES:
        return None
    host = pid_file.socket_dir
    if not host:
        listen = pid_file.listen_address
        if not listen:
            return None
        host = "127.0.0.1" if listen == "*" else listen
    return make_conninfo(host=host, port=str(pid_file.port), user=SUPERUSER, dbname=dbname)


# --------------------------------------------------------------------------- clusters


def _conf_value(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise UsageError(f"PostgreSQL setting values cannot contain line breaks: {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def check_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """``postgresql.conf`` settings as strings, with a clear error for a bad name or value
    and for the settings reproq manages itself."""
    checked: dict[str, str] = {}
    for name, value in settings.items():
        if not _SETTING_NAME.match(name):
            raise UsageError(f"invalid PostgreSQL setting name {name!r}")
        if name in _MANAGED_SETTINGS:
            raise UsageError(
                f"PostgreSQL setting {name!r} is managed by reproq (use port= / listen_tcp=)"
            )
        _conf_value(str(value))
        checked[name] = str(value)
    return checked


class LocalPostgres:
    """A PostgreSQL cluster in a data directory, run with local binaries.

    The cluster listens on a unix socket (and on ``127.0.0.1:port`` when ``listen_tcp``),
    uses trust authentication and the superuser ``postgres``. Data persists in
    ``data_dir`` between starts. Use as a context manager to start and stop it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        listen_tcp: bool = False,
    ) -> None:
        """Describe a cluster; nothing runs until :meth:`init` or :meth:`start`.

        ``port=None`` picks a free port (kept across restarts of this object).
        ``settings`` are extra ``postgresql.conf`` settings applied at each start.
        """
        self.data_dir = Path(data_dir).absolute()
        self.listen_tcp = listen_tcp
        self.settings: Mapping[str, str] = MappingProxyType(check_settings(settings or {}))
        self._port_fixed = port is not None
        self._port = port if port is not None else _free_port()
        self._bin_dir = bin_dir

    def __repr__(self) -> str:
        return f"LocalPostgres({str(self.data_dir)!r}, port={self.port})"

    # ----------------------------------------------------------------- facts

    @property
    def port(self) -> int:
        """The server's port: the running server's, else the one the next start uses."""
        pid_file = live_pid_file(self.data_dir)
        if pid_file is not None and pid_file.port is not None:
            return pid_file.port
        return self._port

    @property
    def socket_dir(self) -> Path:
        """Directory holding the unix socket (the data directory unless its path is too long)."""
        pid_file = live_pid_file(self.data_dir)
        if pid_file is not None and pid_file.socket_dir:
            return Path(pid_file.socket_dir)
        return self._default_socket_dir()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while the server runs, else None."""
        pid_file = live_pid_file(self.data_dir)
        return pid_file.pid if pid_file is not None else None

    @property
    def log_path(self) -> Path:
        """The server log (``data_dir/log/server.log``)."""
        return self.data_dir / "log" / "server.log"

    @property
    def bin_dir(self) -> Path:
        """The binaries used: the given ones, else found to match the data directory."""
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir(self._account(), self._data_major())
        return self._bin_dir

    def is_initialized(self) -> bool:
        """Whether the data directory holds a cluster."""
        return (self.data_dir / "PG_VERSION").is_file()

    def is_running(self) -> bool:
        """Whether a live postmaster serves this data directory."""
        return live_pid_file(self.data_dir) is not None

    def owns_process(self, pid: int) -> bool:
        """Whether ``pid`` is a live process of this cluster (its postmaster or a backend)."""
        return is_server_process(pid, self.data_dir)

    def dsn(self, dbname: str = "postgres", *, tcp: bool = False) -> str:
        """Key/value DSN for ``dbname`` as the superuser, over the unix socket (or TCP)."""
        if tcp:
            if not self.listen_tcp:
                raise UsageError("this cluster does not listen on TCP (listen_tcp=False)")
            host = "127.0.0.1"
        else:
            host = str(self.socket_dir)
        return make_conninfo(host=host, port=str(self.port), user=SUPERUSER, dbname=dbname)

    # ----------------------------------------------------------------- lifecycle

    def init(self, timeout: float = 120.0) -> None:
        """Create the cluster with ``initdb`` unless the data directory already holds one."""
        if self.is_initialized():
            return
        account = self._account()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            give_to(self.data_dir, account)
            self.data_dir.chmod(0o700)
        except OSError as exc:
            raise LocalServerError(f"cannot prepare data directory {self.data_dir}: {exc}") from exc
        self._check_reachable(account)
        cmd = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if self.settings.get("fsync") == "off":
            cmd.append("--no-sync")  # the data is not meant to survive a power cut anyway
        code, output = run_tool(cmd, account=account, timeout=timeout, what="initdb")
        if code != 0:
            raise LocalServerError(
                f"initdb failed for {self.data_dir} (exit {code}):\n{tail(output)}"
            )
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as handle:
            handle.write(f"\n# Settings written by reproq at each start.\n{_INCLUDE_LINE}\n")

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (initialising it first if needed) and wait until it accepts
        connections. A server already running in the data directory is adopted as is."""
        if self._adopt_running(timeout):
            return
        self.init()
        account = self._account()
        self._clear_stale_lock_files()
        attempts = 1 if self._port_fixed else 3
        for attempt in range(1, attempts + 1):
            error = self._start_once(account, timeout)
            if error is None:
                return
            if self._adopt_running(timeout):
                return  # another process started it meanwhile: same outcome
            port_taken = "could not bind" in error or "already in use" in error
            if port_taken and attempt < attempts:
                log.info("port %d is taken, retrying with another", self._port)
                self._port = _free_port()
                continue
            raise LocalServerError(error)

    def stop(self, mode: StopMode = "fast", *, timeout: float = 30.0) -> None:
        """Stop the server and wait until it has exited (no-op when not running)."""
        running = live_pid_file(self.data_dir)
        if running is None:
            return
        if running.port is not None:
            self._port = running.port
        cmd = [
            str(self.bin_dir / "pg_ctl"),
            "stop",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(max(1, round(timeout))),
        ]
        code, output = run_tool(
            cmd, account=self._account(), timeout=timeout + 15, what="pg_ctl stop"
        )
        if code != 0 and self.is_running():
            raise LocalServerError(
                f"could not stop the server in {self.data_dir} ({mode}): {tail(output, 5)}"
            )

    def restart(self, mode: StopMode = "fast", *, timeout: float = 30.0) -> None:
        """Stop (if running) and start again on the same port and socket."""
        self.stop(mode, timeout=timeout)
        self.start(timeout=timeout)

    def kill(self, *, timeout: float = 10.0) -> None:
        """Crash the server: SIGKILL the postmaster and every server process it started.

        For fault injection. The data directory is left as a crash leaves it; the next
        :meth:`start` runs crash recovery.
        """
        running = live_pid_file(self.data_dir)
        if running is None:
            return
        self._port = running.port or self._port
        victims = {running.pid} | server_pids(running.pid, self.data_dir)
        # The postmaster goes first so that it cannot start replacements; a second sweep
        # catches a backend forked between the scan and the postmaster's death.
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.pid, signal.SIGKILL)
        for _ in range(2):
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            victims |= server_pids(running.pid, self.data_dir)
        gone = _wait_until(lambda: not any(pid_alive(pid) for pid in victims), timeout)
        if not gone:
            raise LocalServerError(f"server processes of {self.data_dir} survived SIGKILL")

    def __enter__(self) -> Self:
        """Start the server (see :meth:`start`)."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server; the data stays."""
        self.stop()

    # ----------------------------------------------------------------- internals

    def _account(self) -> Account | None:
        return account_for(self.data_dir)

    def _adopt_running(self, timeout: float) -> bool:
        """Whether a server already runs here; waits until it accepts connections."""
        if live_pid_file(self.data_dir) is None:
            return False

        def settled() -> bool:
            current = live_pid_file(self.data_dir)
            return current is None or current.status in _READY_STATES

        if not _wait_until(settled, timeout, interval=0.1):
            raise LocalServerError(
                f"the server running in {self.data_dir} did not become ready within "
                f"{timeout:g} s\n--- {self.log_path} (tail) ---\n{self._log_since(0)}"
            )
        running = live_pid_file(self.data_dir)
        if running is None:
            return False  # it died while starting up
        self._port = running.port or self._port
        return True

    def _data_major(self) -> int | None:
        try:
            text = (self.data_dir / "PG_VERSION").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _default_socket_dir(self) -> Path:
        if len(str(self.data_dir / ".s.PGSQL.65535")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        # Stable per data directory, so DSNs stay valid across restarts.
        digest = sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"reproq-sock-{digest}"

    def _check_reachable(self, account: Account | None) -> None:
        if account is None:
            return
        code, _ = run_tool(
            ["/bin/sh", "-c", 'test -w "$0" && test -x "$0"', str(self.data_dir)],
            account=account,
            timeout=15,
            what="checking the data directory",
        )
        if code != 0:
            raise LocalServerError(
                f"PostgreSQL refuses to run as root, so the cluster runs as {account.name!r}, "
                f"which cannot reach {self.data_dir}: make every parent directory searchable "
                "by that user (chmod o+x) or choose a data directory elsewhere"
            )

    def _prepare_socket_dir(self, account: Account | None) -> Path:
        socket_dir = self._default_socket_dir()
        if socket_dir == self.data_dir:
            return socket_dir
        try:
            socket_dir.mkdir(mode=0o700, exist_ok=True)
            if socket_dir.is_symlink() or not socket_dir.is_dir():
                raise LocalServerError(f"socket directory {socket_dir} is not a directory")
            give_to(socket_dir, account)
            socket_dir.chmod(0o700)
        except OSError as exc:
            raise LocalServerError(f"cannot prepare socket directory {socket_dir}: {exc}") from exc
        return socket_dir

    def _clear_stale_lock_files(self) -> None:
        """Remove lock files of a server that died without removing them.

        PostgreSQL treats a lock file as live while its pid exists, and a killed server
        whose parent never reaps it lingers as a zombie with that pid.
        """
        stale = read_pid_file(self.data_dir)
        if stale is None or is_server_process(stale.pid, self.data_dir):
            return
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        if stale.socket_dir and stale.port is not None:
            (Path(stale.socket_dir) / f".s.PGSQL.{stale.port}.lock").unlink(missing_ok=True)

    def _write_settings(self, account: Account | None, socket_dir: Path) -> None:
        lines = [
            "# Written by reproq before each start; edits here are overwritten.",
            f"port = {self._port}",
            f"listen_addresses = {_conf_value('127.0.0.1' if self.listen_tcp else '')}",
            f"unix_socket_directories = {_conf_value(str(socket_dir))}",
        ]
        lines += [f"{name} = {_conf_value(value)}" for name, value in self.settings.items()]
        path = self.data_dir / _CONF_INCLUDE
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        give_to(path, account)
        path.chmod(0o600)

    def _start_once(self, account: Account | None, timeout: float) -> str | None:
        """One ``pg_ctl start``; None on success, else the error message."""
        socket_dir = self._prepare_socket_dir(account)
        self._write_settings(account, socket_dir)
        log_dir = self.log_path.parent
        log_dir.mkdir(mode=0o700, exist_ok=True)
        give_to(log_dir, account)
        try:
            log_offset = self.log_path.stat().st_size
        except OSError:
            log_offset = 0
        cmd = [
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(max(1, round(timeout))),
            "-s",
        ]
        try:
            code, output = run_tool(cmd, account=account, timeout=timeout + 15, what="pg_ctl start")
        except LocalServerError as exc:
            code, output = -1, str(exc)
        if code == 0:
            return None
        return (
            f"PostgreSQL in {self.data_dir} did not start (port {self._port}): "
            f"{tail(output, 3)}\n--- {self.log_path} (tail) ---\n{self._log_since(log_offset)}"
        )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return tail(text) or "(empty)"
