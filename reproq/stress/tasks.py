"""Task bodies of the torture workload, run by real workers as ``reproq.stress.tasks.*``.

Every body except :func:`noop` records itself in the execution ledger
(:mod:`reproq.stress.ledger`) before doing anything and again just before returning,
and returns ``{"token": …}`` naming its ledger entry. The checker compares that stored
token with the ledger to prove which execution's result the database kept.

Keyword arguments shared by all bodies: ``kind`` (the workload kind, which the checker
reads back from the spec), ``ms`` (how long the body works), ``seq`` and ``run`` (make
each spec unique so no two enqueues are deduplicated).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from reproq import context
from reproq.errors import TaskCancelled

__all__ = [
    "IdentityUnavailable",
    "cancellable",
    "fail",
    "flaky",
    "hang",
    "noop",
    "sleep",
]

_SLICE = 0.05
"""Seconds between cancellation checks while a body sleeps."""


class IdentityUnavailable(RuntimeError):
    """The body cannot tell which task run and attempt it is executing."""


def _identity() -> tuple[int, int, str]:
    """(result_id, attempt, worker_id) of the attempt this body is running for."""
    call = context.current_task()
    if call is None:
        raise IdentityUnavailable(
            "torture tasks must run inside a reproq worker whose executor provides "
            "reproq.context (thread, or process)"
        )
    return call.result_id, call.attempt, call.worker_id or f"pid-{os.getpid()}"


class _Execution:
    """Ledger bookkeeping around one body execution."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.token = uuid.uuid4().hex
        self.result_id, self.attempt, self.worker_id = _identity()

    def __enter__(self) -> _Execution:
        # Imported here: the ledger needs the database driver, and noop (which the bench
        # runs in a fresh interpreter per task) should not pay for loading it.
        from reproq.stress import ledger

        ledger.record_start(
            token=self.token,
            result_id=self.result_id,
            attempt=self.attempt,
            worker_id=self.worker_id,
            kind=self.kind,
        )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            outcome = "ok"
        elif issubclass(exc_type, TaskCancelled):
            outcome = "cancelled"
        else:
            outcome = "error"
        from reproq.stress import ledger

        ledger.record_finish(token=self.token, outcome=outcome)

    def result(self) -> dict[str, Any]:
        return {"token": self.token, "attempt": self.attempt, "worker": self.worker_id}


def _pause(ms: float, *, cooperative: bool) -> None:
    deadline = time.monotonic() + ms / 1000.0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if cooperative:
            # A cancel request, a lost lease, a timeout or a shutdown: stop cleanly.
            context.raise_if_cancelled()
        time.sleep(min(left, _SLICE))


def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing (benchmarks measure the queue, not the task)."""


def sleep(*, kind: str = "fast", ms: float = 0, seq: int = 0, run: str = "") -> dict[str, Any]:
    """Work for ``ms`` milliseconds, then succeed."""
    with _Execution(kind) as execution:
        _pause(ms, cooperative=False)
    return execution.result()


def flaky(
    *, kind: str = "flaky", ms: float = 0, fail_attempts: int = 1, seq: int = 0, run: str = ""
) -> dict[str, Any]:
    """Fail the first ``fail_attempts`` attempts, then succeed."""
    with _Execution(kind) as execution:
        _pause(ms, cooperative=False)
        if execution.attempt <= fail_attempts:
            raise RuntimeError(f"flaky task fails attempt {execution.attempt} on purpose")
    return execution.result()


def fail(*, kind: str = "always_fail", ms: float = 0, seq: int = 0, run: str = "") -> None:
    """Always raise."""
    with _Execution(kind) as execution:
        _pause(ms, cooperative=False)
        raise RuntimeError(f"always-failing task, attempt {execution.attempt}")


def hang(*, kind: str = "timeout", ms: float = 0, seq: int = 0, run: str = "") -> dict[str, Any]:
    """Work longer than the task's ``timeout_seconds``; stops early when told to."""
    with _Execution(kind) as execution:
        _pause(ms, cooperative=True)
    return execution.result()


def cancellable(
    *, kind: str = "cancellable", ms: float = 0, seq: int = 0, run: str = ""
) -> dict[str, Any]:
    """Work for ``ms`` milliseconds, checking for a cancel request every 50 ms."""
    with _Execution(kind) as execution:
        _pause(ms, cooperative=True)
    return execution.result()
