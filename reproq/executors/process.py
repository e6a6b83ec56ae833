"""The ``process`` executor: a pool of long-lived child processes fed over pipes.

Each child (:mod:`reproq.executors.process_child`) is a Python process started once
(``forkserver`` by default, or ``spawn``; never a ``fork`` of the threaded worker),
leading its own process group. A slot thread checks one idle child out, sends it the
call as JSON, waits for the envelope and checks the child back in, so imports stay warm
and no interpreter starts per task. The same child serves consecutive tasks until
``max_tasks_per_child`` recycles it.

Isolation and hard limits:

- on the deadline or a cancel the child's whole process group gets SIGTERM (the task
  sees ``SystemExit`` and can clean up), then SIGKILL after ``grace_seconds``; the child
  is discarded and the attempt ends ``infra_error`` "timeout after Ns" or ``cancelled``;
- a child that dies mid-task (segfault, ``os._exit``, the OOM killer) ends the attempt
  ``infra_error`` "worker process died (…)";
- ``memory_limit_mb`` sets ``RLIMIT_AS`` in each child (allocations beyond it fail with
  ``MemoryError``, an ``app_error``); ``max_memory_mb`` replaces a child whose resident
  memory exceeds it after a task (a leak is contained without failing anything);
- children are replaced on demand: a slot that finds no idle child starts one, up to
  ``processes`` at a time;
- the task's stdout/stderr go to per-child files (also after a kill) and come back in
  the outcome, cut at ``max_output_bytes`` each;
- if the worker dies, children notice through a lifeline pipe and kill their groups.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, cast

from reproq.errors import ConfigError, ReproqError
from reproq.executors._common import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
    describe_exit,
    outcome_from_envelope,
    parse_envelope,
    process_is_running,
    read_bounded,
    refusal_before_start,
    signal_group,
    timeout_outcome,
)
from reproq.executors.base import CancelCheck, Outcome, TaskCall
from reproq.executors.process_child import STDERR_FILE, STDOUT_FILE, serve
from reproq.models import ErrorKind

logger = logging.getLogger("reproq.executors.process")

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

START_METHODS = ("forkserver", "spawn")
"""Ways to start children; ``fork`` is refused because the worker is multi-threaded."""


class ChildStartError(ReproqError):
    """A child process of the process executor could not be started."""


class _Child:
    """One child process, its pipes and its capture directory."""

    def __init__(
        self,
        process: BaseProcess,
        conn: Connection,
        lifeline: Connection,
        capture_dir: str | None,
    ) -> None:
        self.process = process
        self.conn = conn
        self.lifeline = lifeline
        self.capture_dir = capture_dir
        self.pid: int = process.pid or 0
        self.tasks_done = 0
        self.exitcode: int | None = None
        self._lock = threading.Lock()
        self._reaped = False

    @property
    def sentinel(self) -> int:
        """Becomes readable when the child exits (without reaping it)."""
        return self.process.sentinel

    def has_exited(self) -> bool:
        """True once the child process has ended.

        The sentinel alone lags: under forkserver it fires only once the server has
        reaped the child, so a child killed a moment ago still looks alive. /proc shows
        the zombie at once.
        """
        if multiprocessing.connection.wait([self.sentinel], 0):
            return True
        return not process_is_running(self.pid)

    def signal(self, sig: int) -> None:
        """Signal the child's process group, unless it has already been reaped."""
        with self._lock:
            if not self._reaped:
                signal_group(self.pid, sig)

    def resident_bytes(self) -> int:
        """The child's resident memory (0 where ``/proc`` cannot tell)."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as handle:
                pages = int(handle.read().split()[1])
        except (OSError, ValueError, IndexError):
            return 0
        return pages * _PAGE_SIZE

    def output(self, limit: int) -> tuple[str, str]:
        """What the current (or last) task wrote to stdout and stderr, bounded."""
        if self.capture_dir is None:
            return "", ""
        return (
            read_bounded(os.path.join(self.capture_dir, STDOUT_FILE), limit),
            read_bounded(os.path.join(self.capture_dir, STDERR_FILE), limit),
        )

    def destroy(self, *, grace: float) -> None:
        """Stop the child (EOF, then SIGTERM/SIGKILL as needed) and release everything.

        Idempotent and safe from several threads. Whatever else is left in the child's
        process group is killed before the child is reaped, while its group id is still
        reserved by it.
        """
        with self._lock:
            if not self._reaped:
                # Closed under the lock: a second close could hit a reused fd number.
                with contextlib.suppress(OSError):
                    self.conn.close()
        if not self.has_exited() and grace > 0:
            multiprocessing.connection.wait([self.sentinel], grace)
        with self._lock:
            if self._reaped:
                return
            signal_group(self.pid, signal.SIGKILL)
            self.process.join()
            self.exitcode = self.process.exitcode
            self._reaped = True
            with contextlib.suppress(OSError):
                self.lifeline.close()
            with contextlib.suppress(ValueError):
                self.process.close()
            if self.capture_dir is not None:
                shutil.rmtree(self.capture_dir, ignore_errors=True)

    @property
    def exit_description(self) -> str:
        """How the child ended, once :meth:`destroy` has reaped it."""
        code = self.exitcode
        return describe_exit(code) if code is not None else "unknown exit status"


class ProcessExecutor:
    """A pool of up to ``processes`` long-lived children; :meth:`run` is thread-safe.

    ``processes`` should equal the worker's concurrency (default: the CPU count). For
    ``max_tasks_per_child``, ``memory_limit_mb`` and ``max_memory_mb``, 0 or None means
    no limit.
    ``preload`` names modules every child imports at start (before the first task), and
    with ``forkserver`` also the fork server, so replacements start warm. ``env`` is added
    to each child's environment (as the subprocess executor's ``env``).
    """

    name = "process"

    def __init__(
        self,
        *,
        processes: int | None = None,
        max_tasks_per_child: int | None = 1000,
        memory_limit_mb: int | None = None,
        max_memory_mb: int | None = None,
        start_method: str = "forkserver",
        grace_seconds: float = 1.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        capture_output: bool = True,
        preload: Sequence[str] = (),
        poll_interval: float = 0.1,
        startup_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if start_method not in START_METHODS:
            raise ConfigError(
                f"unknown start method {start_method!r}; use one of {', '.join(START_METHODS)} "
                "('fork' is unsafe in a multi-threaded worker)",
                key="start_method",
            )
        processes = processes if processes is not None else (os.cpu_count() or 1)
        _require(processes >= 1, "processes", f"must be at least 1, got {processes}")
        for key, value in (
            ("max_tasks_per_child", max_tasks_per_child),
            ("memory_limit_mb", memory_limit_mb),
            ("max_memory_mb", max_memory_mb),
        ):
            _require(value is None or value >= 0, key, f"must not be negative, got {value}")
        _require(grace_seconds >= 0, "grace_seconds", f"must not be negative: {grace_seconds}")
        _require(max_payload_bytes >= 1, "max_payload_bytes", "must be at least 1")
        _require(max_output_bytes >= 1, "max_output_bytes", "must be at least 1")
        _require(poll_interval > 0, "poll_interval", "must be positive")
        self.processes = processes
        # 0 and None both mean "no limit", matching the config file's convention.
        self.max_tasks_per_child = max_tasks_per_child or None
        self.memory_limit_mb = memory_limit_mb or None
        self.max_memory_mb = max_memory_mb or None
        self.start_method = start_method
        self.grace_seconds = grace_seconds
        self.max_payload_bytes = max_payload_bytes
        self.max_output_bytes = max_output_bytes
        self.capture_output = capture_output
        self.preload = tuple(preload)
        self.env = dict(env or {})
        self.poll_interval = poll_interval
        self.startup_timeout = startup_timeout
        self._context = cast(
            "ForkServerContext | SpawnContext", multiprocessing.get_context(start_method)
        )
        if start_method == "forkserver":
            # Only effective before the (process-wide) fork server first starts.
            self._context.set_forkserver_preload(["reproq.executors.process_child", *self.preload])
        self._cond = threading.Condition()
        self._spawn_lock = threading.Lock()
        self._idle: list[_Child] = []  # a stack: the most recently used child goes first
        self._children: set[_Child] = set()
        self._starting = 0
        self._closed = False
        _LIVE_EXECUTORS.add(self)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start all ``processes`` children now; raises :class:`ChildStartError` if one fails."""
        while True:
            with self._cond:
                if self._closed or len(self._children) + self._starting >= self.processes:
                    return
                self._starting += 1
            child = self._start_child_reserved()
            with self._cond:
                if not self._closed:
                    self._idle.append(child)
                    self._cond.notify_all()
                    continue
            self._discard(child, grace=0)
            return

    def shutdown(self, *, wait: bool) -> None:
        """Stop accepting calls and stop the children.

        ``wait=True`` lets running tasks finish first; ``wait=False`` kills every child's
        process group at once. Either way no child is left running when this returns.
        """
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = [child for child in self._children if child not in idle]
            self._children.difference_update(idle)
            self._cond.notify_all()
        for child in idle:
            child.destroy(grace=self.grace_seconds)
        if not wait:
            for child in busy:
                child.signal(signal.SIGKILL)
        with self._cond:
            # Busy children are destroyed by the slot threads running them, promptly once
            # killed (they poll every poll_interval).
            while self._children or self._starting:
                self._cond.wait(self.poll_interval)

    # -- running -----------------------------------------------------------------------

    def run(self, call: TaskCall, cancel: CancelCheck) -> Outcome:
        """Run one attempt on a pooled child; never raises for task or child failures."""
        request = json.dumps(
            {
                "result_id": call.result_id,
                "attempt": call.attempt,
                "task_path": call.task_path,
                "args": call.args,
                "kwargs": call.kwargs,
                "worker_id": call.worker_id,
            },
            separators=(",", ":"),
        ).encode()
        refusal = refusal_before_start(len(request), self.max_payload_bytes, call, cancel)
        if refusal is not None:
            return refusal
        # A child that died while idle cannot take the request; try once more with a
        # fresh one rather than charge the task an attempt for it.
        for _ in range(2):
            got = self._checkout(call, cancel)
            if isinstance(got, Outcome):
                return got
            try:
                got.conn.send_bytes(request)
            except OSError:
                self._discard(got, grace=0)
                continue
            return self._await_reply(got, call, cancel)
        return Outcome.failure(
            ErrorKind.INFRA_ERROR, "worker process died before the task could start"
        )

    def _await_reply(self, child: _Child, call: TaskCall, cancel: CancelCheck) -> Outcome:
        stop: Outcome | None = None
        reply: bytes | None = None
        while True:
            now = time.monotonic()
            if cancel.is_set():
                stop = Outcome.failure(
                    ErrorKind.CANCELLED, "cancelled while running; the worker process was killed"
                )
            elif now >= call.deadline:
                stop = timeout_outcome(call)
            if stop is not None:
                break
            timeout = max(0.0, min(self.poll_interval, call.deadline - now))
            ready = multiprocessing.connection.wait([child.conn, child.sentinel], timeout)
            if child.conn in ready:
                with contextlib.suppress(EOFError, OSError):
                    reply = child.conn.recv_bytes()
                break
            if ready:  # only the sentinel: the child is gone
                break
        extra = {"pid": child.pid}
        if stop is not None:
            child.signal(signal.SIGTERM)
            multiprocessing.connection.wait([child.sentinel], self.grace_seconds)
            child.signal(signal.SIGKILL)
            multiprocessing.connection.wait([child.sentinel], 5.0)
            stdout, stderr = child.output(self.max_output_bytes)
            self._discard(child, grace=0)
            return dataclasses.replace(stop, stdout=stdout, stderr=stderr, extra=extra)
        stdout, stderr = child.output(self.max_output_bytes)
        if reply is None:
            # Let the exit status settle so the message can say how the child ended.
            multiprocessing.connection.wait([child.sentinel], 1.0)
            self._discard(child, grace=0)
            how = child.exit_description
            message = (
                f"stopped by executor shutdown ({how})"
                if self._closed
                else f"worker process died ({how})"
            )
            failure = Outcome.failure(ErrorKind.INFRA_ERROR, message, stdout=stdout, stderr=stderr)
            return dataclasses.replace(failure, extra=extra)
        self._checkin(child)
        envelope = parse_envelope(reply)
        if envelope is None:
            outcome = Outcome.failure(
                ErrorKind.INFRA_ERROR,
                f"worker process sent an invalid reply: {reply[:200]!r}",
                stdout=stdout,
                stderr=stderr,
            )
        else:
            outcome = outcome_from_envelope(envelope, stdout=stdout, stderr=stderr)
        return dataclasses.replace(outcome, extra=extra)

    # -- the pool ----------------------------------------------------------------------

    def _checkout(self, call: TaskCall, cancel: CancelCheck) -> _Child | Outcome:
        """An idle child, a newly started one, or the outcome that ends the attempt."""
        while True:
            child: _Child | None = None
            with self._cond:
                while True:
                    if self._closed:
                        return Outcome.failure(
                            ErrorKind.INFRA_ERROR, "the process executor is shut down"
                        )
                    if self._idle:
                        child = self._idle.pop()
                        break
                    if len(self._children) + self._starting < self.processes:
                        self._starting += 1
                        break
                    if cancel.is_set():
                        return Outcome.failure(ErrorKind.CANCELLED, "cancelled before it started")
                    if time.monotonic() >= call.deadline:
                        return timeout_outcome(call, detail="waiting for a free worker process")
                    self._cond.wait(self.poll_interval)
            if child is None:
                try:
                    child = self._start_child_reserved()
                except ChildStartError as exc:
                    return Outcome.failure(ErrorKind.INFRA_ERROR, str(exc))
            elif child.has_exited():
                logger.warning("worker process %d died while idle; replacing it", child.pid)
                self._discard(child, grace=0)
                continue
            if self._closed:  # shut down while this child was being started
                self._discard(child, grace=0)
                return Outcome.failure(ErrorKind.INFRA_ERROR, "the process executor is shut down")
            return child

    def _checkin(self, child: _Child) -> None:
        child.tasks_done += 1
        retire = (
            self.max_tasks_per_child is not None and child.tasks_done >= self.max_tasks_per_child
        ) or (
            self.max_memory_mb is not None
            and child.resident_bytes() > self.max_memory_mb * 1024 * 1024
        )
        with self._cond:
            if not retire and not self._closed:
                self._idle.append(child)
                self._cond.notify_all()
                return
        self._discard(child, grace=self.grace_seconds)

    def _discard(self, child: _Child, *, grace: float) -> None:
        """Destroy a checked-out child and free its place in the pool."""
        try:
            child.destroy(grace=grace)
        finally:
            with self._cond:
                self._children.discard(child)
                self._cond.notify_all()

    def _start_child_reserved(self) -> _Child:
        """Start a child for a place already counted in ``_starting``; it is returned busy."""
        try:
            child = self._start_child()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting -= 1
            self._children.add(child)
            self._cond.notify_all()
        return child

    def _start_child(self) -> _Child:
        capture_dir = tempfile.mkdtemp(prefix="reproq-child-") if self.capture_output else None
        settings: dict[str, Any] = {
            "capture_dir": capture_dir,
            "memory_limit_mb": self.memory_limit_mb,
            "preload": list(self.preload),
            "env": self.env,
        }
        conn, child_conn = self._context.Pipe(duplex=True)
        lifeline_r, lifeline = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=serve,
            args=(child_conn, lifeline_r, settings),
            name="reproq-task-process",
            daemon=False,  # daemonic processes may not start children; tasks may want to
        )
        try:
            # multiprocessing's bookkeeping of started processes is not thread-safe.
            with self._spawn_lock:
                process.start()
        except (OSError, ValueError, RuntimeError) as exc:
            for end in (conn, child_conn, lifeline_r, lifeline):
                end.close()
            if capture_dir is not None:
                shutil.rmtree(capture_dir, ignore_errors=True)
            raise ChildStartError(f"could not start a worker process: {exc}") from exc
        child_conn.close()
        lifeline_r.close()
        child = _Child(process, conn, lifeline, capture_dir)
        problem = self._await_ready(child)
        if problem is not None:
            child.destroy(grace=0)
            if child.exitcode is not None:
                problem += f" (it ended with {child.exit_description})"
            raise ChildStartError(f"worker process failed to start: {problem}")
        return child

    def _await_ready(self, child: _Child) -> str | None:
        """None once the child reports ready, else what went wrong."""
        if not child.conn.poll(self.startup_timeout):
            return f"no ready signal within {self.startup_timeout:g}s"
        try:
            message = json.loads(child.conn.recv_bytes())
        except (EOFError, OSError):
            multiprocessing.connection.wait([child.sentinel], 1.0)
            return "it exited before reporting ready"
        if "error" in message:
            return str(message["error"])
        return None


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(message, key=key)


_LIVE_EXECUTORS: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


@atexit.register
def _kill_children_at_exit() -> None:
    # Registered after multiprocessing's own exit hook, so it runs first and that hook
    # never waits on a child that is still serving.
    for executor in list(_LIVE_EXECUTORS):
        executor.shutdown(wait=False)
