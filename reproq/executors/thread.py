"""The ``thread`` executor: import the task and call it in the worker's slot thread.

The fastest way to run a task: no process boundary, imports stay warm (resolved callables
are cached by path), and the return value is handed over as is. Coroutine functions are
run to completion with :func:`asyncio.run`. A task declared with ``takes_context`` gets
the :class:`~reproq.context.TaskContext` as its first argument.

Timeouts and cancellation are soft: a thread cannot be killed. The task can poll
:func:`reproq.context.cancel_requested`; past its deadline the worker fails the attempt
itself (``infra_error`` timeout), discards the late result and gives the slot a fresh
thread, so a stuck task never costs capacity for good.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable
from typing import Any

from reproq import context
from reproq.errors import TaskCancelled, TaskNotAllowed
from reproq.executors.base import CancelCheck, Outcome, TaskCall
from reproq.executors.contract import exception_class_name, resolve_task
from reproq.models import ErrorKind

__all__ = ["ThreadExecutor"]


class ThreadExecutor:
    """Calls tasks in the calling (slot) thread."""

    name = "thread"

    deadline_grace_seconds = 0.0
    """The worker fails the attempt right at its deadline: this executor cannot stop a thread."""

    def __init__(self) -> None:
        self._resolved: dict[str, Callable[..., Any]] = {}

    def start(self) -> None:
        """Nothing to prepare."""

    def shutdown(self, *, wait: bool) -> None:
        """Nothing to release: the worker owns the threads."""

    def run(self, call: TaskCall, cancel: CancelCheck) -> Outcome:
        """Call the task; exceptions become failures, :class:`TaskCancelled` a cancellation."""
        if cancel.is_set():
            return Outcome.failure(ErrorKind.CANCELLED, "cancelled before it started")
        func = self._resolved.get(call.task_path)
        if func is None:
            try:
                func = resolve_task(call.task_path)
            except TaskNotAllowed as exc:
                return Outcome.failure(
                    ErrorKind.SECURITY_VIOLATION,
                    str(exc),
                    exception_class=exception_class_name(type(exc)),
                )
            except BaseException as exc:  # an import can fail in any way; it is the task's error
                return _failure(exc)
            self._resolved[call.task_path] = func
        task_context = context.TaskContext(
            result_id=call.result_id,
            attempt=call.attempt,
            worker_id=call.worker_id,
            task_path=call.task_path,
        )
        args = call.args
        if call.spec.get("takes_context"):
            args = [task_context, *args]
        saved = context.enter(task_context, cancel)
        try:
            value = func(*args, **call.kwargs)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        except TaskCancelled as exc:
            return Outcome.failure(
                ErrorKind.CANCELLED,
                str(exc) or "cancelled",
                exception_class=exception_class_name(type(exc)),
            )
        except BaseException as exc:  # SystemExit from a task must not end the worker thread
            return _failure(exc)
        finally:
            context.leave(saved)
        return Outcome.success(value)


def _failure(exc: BaseException) -> Outcome:
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not hide the failure itself
        message = repr(type(exc))
    return Outcome.failure(
        ErrorKind.APP_ERROR,
        message,
        exception_class=exception_class_name(type(exc)),
        traceback="".join(traceback.format_exception(exc)),
    )
