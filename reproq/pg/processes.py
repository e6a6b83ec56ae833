"""Which processes are a cluster's: ``postmaster.pid`` and ``/proc``.

A pid in a pid file may belong to a server that died long ago (and to another process
now), or to a zombie nobody reaped; these helpers tell a live server process of a given
data directory from all of those.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PidFile",
    "is_server_process",
    "live_pid_file",
    "pid_alive",
    "process_start_time",
    "read_pid_file",
    "server_pids",
]


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None when unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; it ends at the last ')'.
    return text[text.rfind(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
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


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of the process (field 22), to tell reused pids apart."""
    fields = _proc_stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def is_server_process(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live PostgreSQL process of the cluster in ``data_dir``."""
    if not pid_alive(pid):
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


def server_pids(postmaster: int, data_dir: Path) -> set[int]:
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


@dataclass(frozen=True, kw_only=True, slots=True)
class PidFile:
    """The parts of ``postmaster.pid`` reproq uses."""

    pid: int
    port: int | None
    socket_dir: str
    listen_address: str
    status: str


def read_pid_file(data_dir: Path) -> PidFile | None:
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
    return PidFile(
        pid=pid,
        port=int(port_text) if port_text.isdigit() else None,
        socket_dir=lines[4].strip(),
        listen_address=lines[5].strip(),
        status=lines[7].strip(),
    )


def live_pid_file(data_dir: Path) -> PidFile | None:
    pid_file = read_pid_file(data_dir)
    if pid_file is None or not is_server_process(pid_file.pid, data_dir):
        return None
    return pid_file
