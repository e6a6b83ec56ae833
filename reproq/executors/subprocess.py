"""The ``subprocess`` executor: one ``python -m <module>`` per attempt, per the contract.

Each attempt runs ``<python> -m <module> --result-id N --attempt N`` plus a payload flag
(``reference/executor-contract.md``) in a process group of its own. The spec goes over
stdin, through a 0600 temporary file, or inline on the command line (refused in
production: it shows in the process list). stdout must hold exactly one JSON envelope;
stdout and stderr are read incrementally and kept up to ``max_output_bytes`` each.

On the deadline or a cancel the whole process group gets SIGTERM, then SIGKILL after
``grace_seconds``, so grandchildren the task started die with it. When the attempt ends
normally, whatever is still left in its process group is killed as well.

The group is led by a lifeline (:mod:`reproq.executors._lifeline`), a small process that
holds one end of a pipe from the worker: if the worker dies, even by SIGKILL, the lifeline
kills the group, so a task never runs on after its worker (and past its lease, next to
the attempt that replaces it). It also kills the group ``grace_seconds`` plus a margin
after the deadline, should the worker itself be frozen.

How attempts end:

- a ``{"ok": true}`` envelope → success; ``{"ok": false}`` → ``app_error`` with the
  task's exception class, message and traceback;
- the deadline → ``infra_error`` "timeout after Ns"; a cancel → ``cancelled``;
- a payload over ``max_payload_bytes`` → ``infra_error``, and no process is started;
- an interpreter that cannot be started, or an exit without an envelope (module missing,
  crash, bad arguments) → ``infra_error`` with the tail of stderr;
- an exit 0 without exactly one envelope on stdout → ``infra_error`` "Invalid JSON on
  stdout: …". It is an infrastructure error because the protocol between worker and
  executor module broke, not the task; like every ``infra_error`` it counts as an
  attempt and is retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal, get_args

from reproq.errors import ConfigError
from reproq.executors._common import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
    BoundedBuffer,
    describe_exit,
    invalid_stdout_message,
    outcome_from_envelope,
    parse_envelope,
    refusal_before_start,
    signal_group,
    tail,
    timeout_outcome,
)
from reproq.executors.base import CancelCheck, Outcome, TaskCall
from reproq.executors.contract import WORKER_ID_ENV, production_mode
from reproq.models import ErrorKind

PayloadMode = Literal["stdin", "file", "inline"]
"""How the spec reaches the executor module: ``--payload-stdin/-file/-json``."""

PAYLOAD_MODES: tuple[str, ...] = get_args(PayloadMode)

_READ_CHUNK = 64 * 1024
_DRAIN_SECONDS = 0.5  # after the child exits, how long leftover output may still trickle in

_LIFELINE = str(Path(__file__).with_name("_lifeline.py"))
_LIFELINE_MARGIN = 2.0
"""Seconds after the worker's own SIGKILL (deadline + grace) at which the lifeline kills."""


class SubprocessExecutor:
    """Runs each attempt in a fresh ``python -m <module>`` process group.

    ``env`` is added to (and overrides) the worker's environment; ``production`` defaults
    to ``$REPROQ_PRODUCTION`` and, when true, is passed on to the child and forbids the
    inline payload mode. Safe to call :meth:`run` from many threads at once.
    """

    name = "subprocess"

    def __init__(
        self,
        *,
        python: str = sys.executable,
        module: str = "reproq.executor",
        payload_mode: str = "stdin",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        grace_seconds: float = 5.0,
        production: bool | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        if payload_mode not in PAYLOAD_MODES:
            raise ConfigError(
                f"unknown payload mode {payload_mode!r}; use one of {', '.join(PAYLOAD_MODES)}",
                key="payload_mode",
            )
        self.production = production_mode() if production is None else production
        if payload_mode == "inline" and self.production:
            raise ConfigError(
                "payload mode 'inline' is refused in production: the spec would be visible "
                "in the process list; use 'stdin' or 'file'",
                key="payload_mode",
            )
        for key, value in (
            ("max_payload_bytes", max_payload_bytes),
            ("max_output_bytes", max_output_bytes),
        ):
            if value < 1:
                raise ConfigError(f"must be at least 1, got {value}", key=key)
        if grace_seconds < 0:
            raise ConfigError(f"must not be negative, got {grace_seconds}", key="grace_seconds")
        if poll_interval <= 0:
            raise ConfigError(f"must be positive, got {poll_interval}", key="poll_interval")
        self.python = python
        self.module = module
        self.payload_mode: PayloadMode = payload_mode  # type: ignore[assignment]
        self.max_payload_bytes = max_payload_bytes
        self.max_output_bytes = max_output_bytes
        self.cwd = cwd
        self.grace_seconds = grace_seconds
        self.poll_interval = poll_interval
        child_env = dict(os.environ)
        child_env.update(env or {})
        if self.production:
            child_env["REPROQ_PRODUCTION"] = "1"
        self._env = child_env
        self._lock = threading.Condition()
        self._running: dict[int, int] = {}  # child pid -> its process group
        self._closed = False

    def start(self) -> None:
        """Nothing to prepare: every attempt starts its own process."""

    def shutdown(self, *, wait: bool) -> None:
        """Refuse new attempts; wait for running ones, or (``wait=False``) kill their groups."""
        with self._lock:
            self._closed = True
            if not wait:
                # Under the lock: an attempt reaps its group's leader only after it has
                # left ``_running``, so these group ids cannot have been reused.
                for group in self._running.values():
                    signal_group(group, signal.SIGKILL)
        with self._lock:
            while self._running:
                self._lock.wait(0.1)

    def run(self, call: TaskCall, cancel: CancelCheck) -> Outcome:
        """Run one attempt in a new process group; see the module docstring for outcomes."""
        try:
            payload = self._payload(call)
        except (TypeError, ValueError) as exc:
            return Outcome.failure(ErrorKind.INVALID_SPEC, f"spec cannot be sent as JSON: {exc}")
        refusal = refusal_before_start(len(payload), self.max_payload_bytes, call, cancel)
        if refusal is not None:
            return refusal
        argv = [
            self.python,
            "-m",
            self.module,
            "--result-id",
            str(call.result_id),
            "--attempt",
            str(call.attempt),
        ]
        payload_path: str | None = None
        try:
            if self.payload_mode == "stdin":
                argv.append("--payload-stdin")
            elif self.payload_mode == "file":
                payload_path = _write_private_file(payload, prefix=f"reproq-{call.result_id}-")
                argv += ["--payload-file", payload_path]
            else:
                argv += ["--payload-json", payload.decode("utf-8")]
            return self._spawn_and_supervise(argv, payload, call, cancel)
        finally:
            if payload_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(payload_path)

    def _payload(self, call: TaskCall) -> bytes:
        # The call's own task_path/args/kwargs win: they are what the worker vetted
        # against the allow-list, and the spec is otherwise passed through untouched.
        spec: dict[str, Any] = dict(call.spec)
        spec.update(task_path=call.task_path, args=call.args, kwargs=call.kwargs)
        return json.dumps(spec, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def _spawn_and_supervise(
        self, argv: list[str], payload: bytes, call: TaskCall, cancel: CancelCheck
    ) -> Outcome:
        with self._lock:
            if self._closed:
                return Outcome.failure(
                    ErrorKind.INFRA_ERROR, "the subprocess executor is shut down"
                )
            try:
                lifeline = self._start_lifeline(call)
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                return Outcome.failure(
                    ErrorKind.INFRA_ERROR, f"could not start the attempt's lifeline: {exc}"
                )
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE if self.payload_mode == "stdin" else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={**self._env, WORKER_ID_ENV: call.worker_id},
                    cwd=self.cwd,
                    process_group=lifeline.pid,
                    close_fds=True,
                )
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                _end_lifeline(lifeline)
                return Outcome.failure(
                    ErrorKind.INFRA_ERROR,
                    f"could not start the executor ({self.python} -m {self.module}): {exc}",
                )
            self._running[proc.pid] = lifeline.pid
        try:
            stdin_data = payload if self.payload_mode == "stdin" else b""
            return self._supervise(proc, lifeline.pid, stdin_data, call, cancel)
        finally:
            with self._lock:
                self._running.pop(proc.pid, None)
                self._lock.notify_all()
            _end_lifeline(lifeline)

    def _start_lifeline(self, call: TaskCall) -> subprocess.Popen[bytes]:
        """Start the leader of the attempt's process group (see the module docstring)."""
        kill_after = call.deadline + self.grace_seconds + _LIFELINE_MARGIN - time.monotonic()
        seconds = f"{max(kill_after, 0.001):.3f}" if math.isfinite(kill_after) else "0"
        return subprocess.Popen(
            [sys.executable, "-I", "-S", _LIFELINE, seconds],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
            close_fds=True,
        )

    def _supervise(
        self,
        proc: subprocess.Popen[bytes],
        group: int,
        stdin_data: bytes,
        call: TaskCall,
        cancel: CancelCheck,
    ) -> Outcome:
        out = BoundedBuffer(self.max_output_bytes)
        err = BoundedBuffer(self.max_output_bytes)
        pump = _Pump(proc, stdin_data, out, err)
        stop: ErrorKind | None = None
        kill_at = float("inf")
        try:
            while not _has_exited(proc.pid):
                now = time.monotonic()
                if stop is None:
                    if cancel.is_set():
                        stop = ErrorKind.CANCELLED
                    elif now >= call.deadline:
                        stop = ErrorKind.INFRA_ERROR
                    if stop is not None:
                        signal_group(group, signal.SIGTERM)
                        kill_at = now + self.grace_seconds
                if now >= kill_at:
                    signal_group(group, signal.SIGKILL)
                    kill_at = float("inf")
                wake = call.deadline if stop is None else kill_at
                pump.step(max(0.0, min(self.poll_interval, wake - now)))
            pump.drain(time.monotonic() + _DRAIN_SECONDS)
        finally:
            # The lifeline leading the group is not reaped yet, so the group id cannot have
            # been reused: killing the group only reaches what this attempt started.
            signal_group(group, signal.SIGKILL)
            proc.wait()
            pump.close()
        returncode = proc.returncode
        extra = {"exit_code": returncode, "pid": proc.pid}
        stdout, stderr = out.text(), err.text()
        if stop is ErrorKind.CANCELLED:
            outcome = Outcome.failure(
                ErrorKind.CANCELLED,
                "cancelled while running; the process group was terminated",
                stdout=stdout,
                stderr=stderr,
            )
        elif stop is not None:
            outcome = dataclasses.replace(timeout_outcome(call), stdout=stdout, stderr=stderr)
        elif self._closed and returncode == -signal.SIGKILL:
            outcome = Outcome.failure(
                ErrorKind.INFRA_ERROR,
                "stopped by executor shutdown",
                stdout=stdout,
                stderr=stderr,
            )
        else:
            outcome = self._outcome_from_output(out, stdout, stderr, returncode)
        return dataclasses.replace(outcome, extra=extra)

    def _outcome_from_output(
        self, out: BoundedBuffer, stdout: str, stderr: str, returncode: int
    ) -> Outcome:
        envelope = None if out.truncated else parse_envelope(out.data)
        if envelope is not None:
            # A valid envelope is the task's answer even if the interpreter then exited
            # non-zero (an atexit hook, a crash at teardown).
            return outcome_from_envelope(envelope, stderr=stderr)
        if returncode != 0:
            detail = tail(stderr) or "no output on stderr"
            return Outcome.failure(
                ErrorKind.INFRA_ERROR,
                f"executor ({self.python} -m {self.module}) ended with "
                f"{describe_exit(returncode)} and no result: {detail}",
                stdout=stdout,
                stderr=stderr,
            )
        return Outcome.failure(
            ErrorKind.INFRA_ERROR,
            invalid_stdout_message(stdout, truncated=out.truncated, limit=out.limit),
            stdout=stdout,
            stderr=stderr,
        )


class _Pump:
    """Moves bytes between the worker and one child: the payload in, stdout/stderr out."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdin_data: bytes,
        out: BoundedBuffer,
        err: BoundedBuffer,
    ) -> None:
        self._selector = selectors.DefaultSelector()
        self._pending = memoryview(stdin_data)
        self._stdin: IO[bytes] | None = proc.stdin
        self._files: list[IO[bytes]] = []
        for stream, buffer in ((proc.stdout, out), (proc.stderr, err)):
            if stream is not None:
                os.set_blocking(stream.fileno(), False)
                self._selector.register(stream, selectors.EVENT_READ, buffer)
                self._files.append(stream)
        if self._stdin is not None:
            if self._pending:
                os.set_blocking(self._stdin.fileno(), False)
                self._selector.register(self._stdin, selectors.EVENT_WRITE, None)
            else:
                self._close_stdin()
        # A pidfd turns "the child exited" into a readable event, so the loop wakes at
        # once instead of on the next poll tick.
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(proc.pid)
            self._selector.register(self._pidfd, selectors.EVENT_READ, None)

    def step(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for I/O and handle it; False when no pipe was ready."""
        moved = False
        for key, _mask in self._selector.select(timeout):
            if key.fileobj is self._pidfd:
                continue
            moved = True
            if key.fileobj is self._stdin:
                self._write_some()
            else:
                self._read_some(key)
        return moved

    def drain(self, until: float) -> None:
        """Collect output already written, without waiting for EOF.

        Grandchildren that inherited the pipes may keep them open, so EOF may never come.
        """
        while time.monotonic() < until and self._files and self.step(0):
            pass

    def _read_some(self, key: selectors.SelectorKey) -> None:
        stream: IO[bytes] = key.fileobj  # type: ignore[assignment]
        buffer: BoundedBuffer = key.data
        try:
            chunk = os.read(stream.fileno(), _READ_CHUNK)
        except BlockingIOError:
            return
        if chunk:
            buffer.add(chunk)
        else:
            self._selector.unregister(stream)
            self._files.remove(stream)
            stream.close()

    def _write_some(self) -> None:
        assert self._stdin is not None
        try:
            written = os.write(self._stdin.fileno(), self._pending[: 64 * 1024])
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            written = len(self._pending)  # the child stopped reading; it will say why
        self._pending = self._pending[written:]
        if not self._pending:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self._stdin is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._stdin)
        with contextlib.suppress(OSError):
            self._stdin.close()
        self._stdin = None

    def close(self) -> None:
        """Close every pipe and the pidfd."""
        self._close_stdin()
        for stream in self._files:
            stream.close()
        self._files.clear()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._selector.close()


def _has_exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its pid keeps the group id taken)."""
    try:
        state = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return state is not None


def _end_lifeline(lifeline: subprocess.Popen[bytes]) -> None:
    """Kill and reap an attempt's lifeline (and whatever is left in its group)."""
    signal_group(lifeline.pid, signal.SIGKILL)
    if lifeline.stdin is not None:
        with contextlib.suppress(OSError):
            lifeline.stdin.close()
    lifeline.wait()


def _write_private_file(data: bytes, *, prefix: str) -> str:
    """Write ``data`` to a new temporary file only the owner can read (mode 0600)."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return path
