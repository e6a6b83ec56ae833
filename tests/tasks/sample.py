"""Tasks the worker tests enqueue and execute in process (thread executor) and in
``reproq worker`` subprocesses (the repository root is on their ``PYTHONPATH``).

Tasks that need to report back write to files whose paths the test passes in: a
*ledger* gets one line per execution, appended atomically, so tests can check which
executions overlapped even across processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from reproq.context import cancel_requested, current_task, raise_if_cancelled

_SLICE = 0.02


def add(a: int, b: int) -> int:
    """Return the sum."""
    return a + b


def noop() -> None:
    """Do nothing."""


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return what it was called with."""
    return {"args": list(args), "kwargs": kwargs}


def fail(message: str = "boom") -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


def fail_until(attempt: int) -> int:
    """Fail while the current attempt is below ``attempt``; then return the attempt."""
    ctx = current_task()
    assert ctx is not None
    if ctx.attempt < attempt:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


def whoami() -> dict[str, Any]:
    """Return the task context the worker gave this attempt."""
    ctx = current_task()
    assert ctx is not None
    return {"result_id": ctx.result_id, "attempt": ctx.attempt, "worker_id": ctx.worker_id}


def with_context(context: Any, x: int) -> dict[str, Any]:
    """A task declared with ``takes_context``: receives the context first."""
    return {"result_id": context.result_id, "x": x}


def unserialisable() -> object:
    """Return a value JSON cannot hold."""
    return {1, 2, 3}


def big_result(size: int) -> str:
    """Return a string of ``size`` characters."""
    return "x" * size


def nul_result() -> str:
    """Return a string PostgreSQL jsonb cannot store."""
    return "a\x00b"


def sleep(seconds: float) -> float:
    """Sleep without looking at cancellation."""
    time.sleep(seconds)
    return seconds


def cooperative_sleep(seconds: float, marker: str | None = None) -> float:
    """Sleep in small steps, stopping when cancelled; touches ``marker`` once started."""
    if marker:
        _touch(marker)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        raise_if_cancelled()
        time.sleep(_SLICE)
    return seconds


def ignore_cancel(seconds: float, marker: str | None = None) -> str:
    """Sleep ``seconds`` and report whether a cancel was requested meanwhile."""
    if marker:
        _touch(marker)
    time.sleep(seconds)
    return "cancel seen" if cancel_requested() else "no cancel"


def ledger(path: str, key: str, seconds: float, seq: int = 0) -> float:
    """Append ``key start end pid`` to the ledger file around ``seconds`` of work.

    ``seq`` only makes otherwise identical runs distinct specs.
    """
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    line = f"{key} {start:.6f} {end:.6f} {os.getpid()}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return end - start


def marked_sleep(marker: str, seconds: float) -> str:
    """Touch ``marker`` (with the pid) when started, then sleep; returns the pid."""
    _touch(marker, str(os.getpid()))
    time.sleep(seconds)
    return str(os.getpid())


def _touch(path: str, text: str = "") -> None:
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)
