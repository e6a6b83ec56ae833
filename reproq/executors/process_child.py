"""The loop of one long-lived child of the ``process`` executor.

A child leads its own session and process group (so the worker can kill it together with
anything a task started), reports ready, then answers requests one at a time over its
pipe: each request is one task call as JSON, each reply the task's envelope as JSON (the
same envelope the executor contract prints). While a task runs, its stdout and stderr
(fd 1 and 2, so C-level output too) go to two files in a private directory that the
worker reads afterwards, also when the child was killed or died.

A second pipe is a lifeline: only the worker holds its other end, so when the worker dies
(even by SIGKILL) the child sees end-of-file and kills its whole process group instead of
living on as an orphan.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from reproq.context import TaskContext
from reproq.executors.contract import call_task

STDOUT_FILE = "stdout"
STDERR_FILE = "stderr"

_terminating = threading.Event()


def serve(conn: Connection, lifeline: Connection, settings: Mapping[str, Any]) -> None:
    """Set the child up, report ready, then run tasks until the worker closes the pipe."""
    try:
        os.setsid()
        os.environ.update(settings.get("env") or {})
        _watch_lifeline(lifeline, settings.get("capture_dir"))
        signal.signal(signal.SIGTERM, _exit_on_term)
        limit_mb = settings.get("memory_limit_mb")
        if limit_mb:
            _limit_memory(int(limit_mb))
        for module in settings.get("preload", ()):
            importlib.import_module(module)
        capture_dir = settings.get("capture_dir")
        capture = _Capture(capture_dir) if capture_dir else None
    except Exception as exc:  # report why start-up failed instead of dying silently
        detail = "".join(traceback.format_exception_only(exc)).strip()
        conn.send_bytes(json.dumps({"error": detail}).encode())
        return
    conn.send_bytes(json.dumps({"pid": os.getpid()}).encode())
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        request = json.loads(raw)
        if capture is not None:
            capture.begin()
        try:
            context = TaskContext(
                result_id=request["result_id"],
                attempt=request["attempt"],
                worker_id=request.get("worker_id", ""),
                task_path=request["task_path"],
            )
            reply = call_task(
                request["task_path"], request["args"], request["kwargs"], context=context
            )
        finally:
            if capture is not None:
                capture.end()
        if _terminating.is_set():
            return
        try:
            conn.send_bytes(reply.encode("ascii"))
        except OSError:
            return


def _exit_on_term(signum: int, frame: FrameType | None) -> None:
    # Turning SIGTERM into SystemExit lets the task's finally blocks and context
    # managers run during the grace period before SIGKILL.
    _terminating.set()
    raise SystemExit(128 + signum)


def _watch_lifeline(lifeline: Connection, capture_dir: str | None) -> None:
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                lifeline.recv_bytes()
        # The worker is gone: nobody will read the captured output or clean up after us.
        if capture_dir:
            shutil.rmtree(capture_dir, ignore_errors=True)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="reproq-lifeline", daemon=True).start()


def _limit_memory(megabytes: int) -> None:
    import resource

    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class _Capture:
    """Keeps fd 1/2 on two files in the capture directory, emptied before each task.

    The files stay open for the child's whole life (cheaper than reopening per task);
    ``sys.stdout``/``sys.stderr`` are restored after each task in case one replaced them.
    """

    def __init__(self, directory: str) -> None:
        self._saved_streams: tuple[Any, Any] = (sys.stdout, sys.stderr)
        _flush(*self._saved_streams)
        self._fds: list[int] = []
        for name, target in ((STDOUT_FILE, 1), (STDERR_FILE, 2)):
            fd = os.open(os.path.join(directory, name), os.O_RDWR | os.O_CREAT, 0o600)
            os.dup2(fd, target)
            os.close(fd)
            self._fds.append(target)
        for stream in self._saved_streams:
            # Line buffering keeps what a task printed before it was killed.
            with contextlib.suppress(AttributeError, ValueError):
                stream.reconfigure(line_buffering=True)

    def begin(self) -> None:
        """Empty both files for the next task."""
        for fd in self._fds:
            if os.fstat(fd).st_size:
                os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)

    def end(self) -> None:
        """Flush what the task wrote, so the worker finds it in the files."""
        _flush(sys.stdout, sys.stderr, *self._saved_streams)
        sys.stdout, sys.stderr = self._saved_streams


def _flush(*streams: Any) -> None:
    for stream in streams:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
