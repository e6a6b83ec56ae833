"""What a running task can know about itself: which attempt it is, and whether to stop.

Executors that run a task in the calling thread (``thread``, ``mock``) activate a
:class:`TaskContext` around the call; the task reads it with :func:`current_task` and
polls :func:`cancel_requested` (or calls :func:`raise_if_cancelled`) in long loops, so a
cancel request, a lost lease, a timeout or a worker shutdown can stop it cleanly::

    from reproq.context import raise_if_cancelled

    def export(rows):
        for row in rows:
            raise_if_cancelled()
            write(row)

The state is thread-local: each slot thread sees only its own task.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from reproq.errors import TaskCancelled

__all__ = [
    "CancelCheck",
    "TaskContext",
    "activate",
    "cancel_requested",
    "current",
    "current_task",
    "enter",
    "leave",
    "raise_if_cancelled",
]


class CancelCheck(Protocol):
    """Answers whether the running attempt should stop (cancel requested or lease lost)."""

    def is_set(self) -> bool:
        """True once the attempt must stop."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskContext:
    """The attempt a task is running as."""

    result_id: int
    attempt: int
    worker_id: str
    task_path: str = ""


class _State(threading.local):
    context: TaskContext | None = None
    cancel: CancelCheck | None = None


_state = _State()


def current_task() -> TaskContext | None:
    """The attempt running in this thread, or None outside a task."""
    return _state.context


current = current_task
"""Alias of :func:`current_task`."""


def cancel_requested() -> bool:
    """True once the worker wants this attempt to stop (False outside a task)."""
    cancel = _state.cancel
    return cancel is not None and cancel.is_set()


def raise_if_cancelled() -> None:
    """Raise :class:`~reproq.errors.TaskCancelled` if the worker wants this attempt to stop."""
    if cancel_requested():
        context = _state.context
        which = f"task {context.result_id} attempt {context.attempt}" if context else "task"
        raise TaskCancelled(f"{which} was asked to stop")


_Saved = tuple[TaskContext | None, CancelCheck | None]


def enter(context: TaskContext, cancel: CancelCheck) -> _Saved:
    """Make ``context`` current in this thread; pass the result to :func:`leave` afterwards.

    For executors on their hot path; :func:`activate` is the same as a context manager.
    """
    saved = (_state.context, _state.cancel)
    _state.context = context
    _state.cancel = cancel
    return saved


def leave(saved: _Saved) -> None:
    """Restore what :func:`enter` replaced."""
    _state.context, _state.cancel = saved


@contextmanager
def activate(context: TaskContext, cancel: CancelCheck) -> Iterator[TaskContext]:
    """Make ``context`` the current task of this thread for the duration of the block."""
    saved = enter(context, cancel)
    try:
        yield context
    finally:
        leave(saved)
