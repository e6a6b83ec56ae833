"""Tasks for the executor tests: each exercises one way an attempt can end.

Run as ``python -m tests.tasks.executors`` this module pretends to be an executor module
that breaks the contract by printing something other than an envelope.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any


def add(a: int, b: int) -> int:
    """Return the sum."""
    return a + b


async def add_async(a: int, b: int) -> int:
    """Return the sum from a coroutine."""
    await asyncio.sleep(0)
    return a + b


def fail(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return what it was called with."""
    return {"args": list(args), "kwargs": kwargs}


def pid() -> int:
    """Return the pid of the process running the task."""
    return os.getpid()


def sleep(seconds: float) -> float:
    """Sleep, then return the seconds slept."""
    time.sleep(seconds)
    return seconds


def sleep_ignoring_term(seconds: float) -> float:
    """Sleep with SIGTERM ignored, so only SIGKILL stops it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)
    return seconds


def sleep_then_clean_up(seconds: float, marker: str) -> None:
    """Sleep; whatever ends the sleep, write "cleaned up" to ``marker`` on the way out."""
    try:
        time.sleep(seconds)
    finally:
        with open(marker, "w") as handle:
            handle.write("cleaned up")


def spawn_grandchild_and_sleep(pid_file: str, seconds: float) -> None:
    """Start a ``sleep`` child (same process group), write "<own pid> <its pid>", sleep."""
    child = subprocess.Popen(["sleep", str(max(seconds, 1) * 10)])
    with open(pid_file + ".tmp", "w") as handle:
        handle.write(f"{os.getpid()} {child.pid}")
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(seconds)


def payload_argv() -> dict[str, Any]:
    """The executor's command line, and the mode of the payload file if there is one."""
    argv = sys.argv[1:]
    mode = None
    if "--payload-file" in argv:
        mode = os.stat(argv[argv.index("--payload-file") + 1]).st_mode & 0o777
    return {"argv": argv, "file_mode": mode}


def noisy() -> str:
    """Print at Python level and at fd level on both streams, then return."""
    print("python-level stdout")
    print("python-level stderr", file=sys.stderr)
    sys.stdout.flush()
    os.write(1, b"fd-level stdout\n")
    os.write(2, b"fd-level stderr\n")
    return "quiet result"


def print_bytes(count: int, stream: str = "stdout") -> int:
    """Write ``count`` bytes of 'x' to stdout or stderr at fd level."""
    fd = 1 if stream == "stdout" else 2
    chunk = b"x" * 65536
    left = count
    while left > 0:
        left -= os.write(fd, chunk[: min(left, len(chunk))])
    return count


def print_text(count: int, stream: str = "stdout", tag: str = "x") -> int:
    """Write ``count`` characters of ``tag`` to ``sys.stdout`` or ``sys.stderr`` (Python level)."""
    target = sys.stdout if stream == "stdout" else sys.stderr
    chunk = tag * 65536
    left = count
    while left > 0:
        left -= target.write(chunk[: min(left, len(chunk))])
    target.flush()
    return count


def noisy_failure(message: str) -> None:
    """Print a line, then fail."""
    print("before failing")
    raise ValueError(message)


def unserialisable() -> object:
    """Return a value JSON cannot hold."""
    return {1, 2, 3}


def not_a_number() -> float:
    """Return NaN, which JSON (and jsonb) cannot hold."""
    return float("nan")


def exit_now(code: int) -> None:
    """Leave the process at once, without unwinding."""
    os._exit(code)


def segfault() -> None:
    """Die of SIGSEGV."""
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(5)


def allocate(megabytes: int) -> int:
    """Allocate and touch ``megabytes`` of memory; return the size."""
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


_HELD: list[bytes] = []


def hold(megabytes: int) -> int:
    """Keep ``megabytes`` of touched memory alive in the process; return the total held."""
    _HELD.append(b"h" * (megabytes * 1024 * 1024))
    return sum(len(block) for block in _HELD) // (1024 * 1024)


def read_env(name: str) -> str | None:
    """Return an environment variable of the process running the task."""
    return os.environ.get(name)


NOT_CALLABLE = 42


if __name__ == "__main__":
    print("this is not a JSON envelope")


def whoami() -> dict[str, object] | None:
    """The attempt the task sees itself running as (reproq.context)."""
    from reproq.context import current_task

    ctx = current_task()
    if ctx is None:
        return None
    return {"result_id": ctx.result_id, "attempt": ctx.attempt, "worker_id": ctx.worker_id}
