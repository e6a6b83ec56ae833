"""The seam between the worker engine and the ways a task can be executed.

The worker claims a task, turns it into a :class:`TaskCall` and hands it to an
:class:`Executor` from one of its slot threads. ``Executor.run`` blocks that thread until
the task ends and returns an :class:`Outcome`; it never raises for task failures. It must
honour ``call.deadline`` (hard executors kill the child) and poll ``cancel`` so a cancel
request stops the task within about a heartbeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# CancelCheck lives with the task's context (below the executors), and is part of this seam.
from reproq.context import CancelCheck
from reproq.models import ErrorKind

__all__ = ["CancelCheck", "Executor", "Outcome", "TaskCall"]


@dataclass(kw_only=True, slots=True)  # not frozen: one is built per attempt, and frozen costs
class TaskCall:
    """One attempt of one task run, as an executor sees it (read-only by convention)."""

    result_id: int
    attempt: int  # 1-based; also the fencing token the worker holds
    task_path: str
    args: list[Any]
    kwargs: dict[str, Any]
    spec: Mapping[str, Any]  # the full spec_json, for executors speaking the contract
    timeout_seconds: float
    deadline: float  # time.monotonic() instant after which the attempt has failed
    worker_id: str = ""


@dataclass(kw_only=True, slots=True)  # not frozen: one is built per attempt, and frozen costs
class Outcome:
    """How an attempt ended. ``ok`` with a JSON return value, or an error of some kind.

    Read-only by convention.
    """

    ok: bool
    return_value: Any = None
    error_kind: ErrorKind | None = None
    exception_class: str | None = None
    message: str = ""
    traceback: str | None = None
    stdout: str = ""  # captured output, written to logs_dir when configured
    stderr: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def success(cls, value: Any, *, stdout: str = "", stderr: str = "") -> Outcome:
        """A successful attempt returning ``value``."""
        return cls(ok=True, return_value=value, stdout=stdout, stderr=stderr)

    @classmethod
    def failure(
        cls,
        kind: ErrorKind,
        message: str,
        *,
        exception_class: str | None = None,
        traceback: str | None = None,
        stdout: str = "",
        stderr: str = "",
    ) -> Outcome:
        """A failed attempt of the given kind."""
        return cls(
            ok=False,
            error_kind=kind,
            message=message,
            exception_class=exception_class,
            traceback=traceback,
            stdout=stdout,
            stderr=stderr,
        )


class Executor(Protocol):
    """Runs task attempts. One instance serves all slots of a worker pool."""

    name: str

    def start(self) -> None:
        """Prepare resources (child processes, …) before the first call."""
        ...

    def run(self, call: TaskCall, cancel: CancelCheck) -> Outcome:
        """Run one attempt to its end, the deadline or a cancel; never raises for task errors."""
        ...

    def shutdown(self, *, wait: bool) -> None:
        """Release resources; with ``wait=False`` kill whatever still runs."""
        ...
