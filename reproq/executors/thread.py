"""The ``thread`` executor: import the task and call it in the worker's slot thread.

The fastest way to run a task: no process boundary, imports stay warm (resolved callables
are cached by path), and the return value is handed over as is. Coroutine functions are
run to completion with :func:`asyncio.run`. A task declared with ``takes_context`` gets
the :class:`~reproq.context.TaskContext` as its first argument.

What a task writes to ``sys.stdout`` and ``sys.stderr`` is captured per task, up to
``max_output_bytes`` each (later text is dropped and marked), as the process executors
capture theirs: stand-ins for the two streams send a slot thread's writes to the task it
is running and every other thread's to the real stream. Output written below Python
(``os.write(1, ...)``, C extensions) and log records still reach the worker's streams.

Timeouts and cancellation are soft: a thread cannot be killed. The task can poll
:func:`reproq.context.cancel_requested`; past its deadline the worker fails the attempt
itself (``infra_error`` timeout), discards the late result and gives the slot a fresh
thread, so a stuck task never costs capacity for good.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TextIO, cast

from reproq import context
from reproq.errors import ConfigError, TaskCancelled, TaskNotAllowed
from reproq.executors._common import DEFAULT_MAX_OUTPUT_BYTES, BoundedBuffer
from reproq.executors.base import CancelCheck, Outcome, TaskCall
from reproq.executors.contract import exception_class_name, resolve_task
from reproq.models import ErrorKind

__all__ = ["ThreadExecutor"]


class ThreadExecutor:
    """Calls tasks in the calling (slot) thread."""

    name = "thread"

    deadline_grace_seconds = 0.0
    """The worker fails the attempt right at its deadline: this executor cannot stop a thread."""

    def __init__(self, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        if max_output_bytes < 1:
            raise ConfigError("must be at least 1", key="max_output_bytes")
        self.max_output_bytes = max_output_bytes
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
                return _failure(exc, None)
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
        output = _TaskOutput(self.max_output_bytes)
        saved = context.enter(task_context, cancel)
        outer = _capture(output)
        try:
            value = func(*args, **call.kwargs)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        except TaskCancelled as exc:
            return Outcome.failure(
                ErrorKind.CANCELLED,
                str(exc) or "cancelled",
                exception_class=exception_class_name(type(exc)),
                stdout=output.text(0),
                stderr=output.text(1),
            )
        except BaseException as exc:  # SystemExit from a task must not end the worker thread
            return _failure(exc, output)
        finally:
            _capture(outer)
            context.leave(saved)
        return Outcome.success(value, stdout=output.text(0), stderr=output.text(1))


def _failure(exc: BaseException, output: _TaskOutput | None) -> Outcome:
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not hide the failure itself
        message = repr(type(exc))
    return Outcome.failure(
        ErrorKind.APP_ERROR,
        message,
        exception_class=exception_class_name(type(exc)),
        traceback="".join(traceback.format_exception(exc)),
        stdout=output.text(0) if output else "",
        stderr=output.text(1) if output else "",
    )


class _TaskOutput:
    """One attempt's stdout (0) and stderr (1), each kept up to the limit."""

    __slots__ = ("_buffers", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffers: list[BoundedBuffer | None] = [None, None]  # made on the first write

    def add(self, index: int, text: str) -> None:
        buffer = self._buffers[index]
        if buffer is None:
            buffer = self._buffers[index] = BoundedBuffer(self._limit)
        if buffer.truncated:
            buffer.dropped += len(text)  # full: not worth encoding what is dropped
        else:
            buffer.add(text.encode("utf-8", errors="replace"))

    def text(self, index: int) -> str:
        buffer = self._buffers[index]
        return "" if buffer is None else buffer.text()


_current = threading.local()
"""``output``: the :class:`_TaskOutput` of the task this thread is running, if any."""


def _capture(output: _TaskOutput | None) -> _TaskOutput | None:
    """Send this thread's writes to ``output`` (None: to the real streams); the previous."""
    if not (isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router)):
        _route_streams()
    previous: _TaskOutput | None = getattr(_current, "output", None)
    _current.output = output
    return previous


_route_lock = threading.Lock()


def _route_streams() -> None:
    """Put a :class:`_Router` in front of ``sys.stdout`` and ``sys.stderr`` (once each)."""
    with _route_lock:
        if sys.stdout is not None and not isinstance(sys.stdout, _Router):
            sys.stdout = cast(TextIO, _Router(sys.stdout, 0))
        if sys.stderr is not None and not isinstance(sys.stderr, _Router):
            sys.stderr = cast(TextIO, _Router(sys.stderr, 1))


class _Router:
    """Stands in for ``sys.stdout`` (0) or ``sys.stderr`` (1): a thread running a task
    writes into that task's output, any other thread into the stream this replaced."""

    def __init__(self, stream: TextIO, index: int) -> None:
        self._stream = stream
        self._index = index

    def write(self, text: str) -> int:
        output: _TaskOutput | None = getattr(_current, "output", None)
        if output is None:
            return self._stream.write(text)
        output.add(self._index, text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if getattr(_current, "output", None) is None:
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
