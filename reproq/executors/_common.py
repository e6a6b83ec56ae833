"""Pieces shared by the executors that run tasks in child processes.

The checks made before an attempt is handed to a child, bounded output capture, the
envelope → :class:`Outcome` mapping of the executor contract, and killing a child's whole
process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import Any

from reproq.executors.base import CancelCheck, Outcome, TaskCall
from reproq.models import ErrorKind

MIB = 1024 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = MIB
"""Specs larger than this are refused before a child sees them (contract default)."""
DEFAULT_MAX_OUTPUT_BYTES = MIB
"""Each of stdout and stderr is kept up to this many bytes (contract default)."""
TRUNCATION_MARKER = "[TRUNCATED due to size limit]"
"""Appended (on its own line) to output that was cut at the byte limit."""

_SNIPPET_CHARS = 200
_TAIL_CHARS = 1000


def refusal_before_start(
    payload_bytes: int, max_payload_bytes: int, call: TaskCall, cancel: CancelCheck
) -> Outcome | None:
    """The outcome that ends an attempt before a child sees it, or None to go ahead.

    An oversized payload is refused first (an ``infra_error`` that counts as an attempt),
    then a cancel that came before the start, then a deadline already passed.
    """
    if payload_bytes > max_payload_bytes:
        return Outcome.failure(
            ErrorKind.INFRA_ERROR,
            f"payload of {payload_bytes} bytes exceeds max_payload_bytes "
            f"({max_payload_bytes}); the task was not started",
        )
    if cancel.is_set():
        return Outcome.failure(ErrorKind.CANCELLED, "cancelled before it started")
    if time.monotonic() >= call.deadline:
        return timeout_outcome(call)
    return None


def timeout_outcome(call: TaskCall, *, detail: str = "") -> Outcome:
    """The ``infra_error`` "timeout after Ns" of an attempt that reached its deadline."""
    suffix = f" {detail}" if detail else ""
    return Outcome.failure(
        ErrorKind.INFRA_ERROR, f"timeout after {call.timeout_seconds:g}s{suffix}"
    )


class BoundedBuffer:
    """Bytes kept up to ``limit``; later bytes are counted and dropped, never stored."""

    __slots__ = ("_data", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        """Keep as much of ``chunk`` as still fits."""
        room = self.limit - len(self._data)
        if room >= len(chunk):
            self._data += chunk
        else:
            if room > 0:
                self._data += chunk[:room]
            self.dropped += len(chunk) - max(room, 0)

    @property
    def truncated(self) -> bool:
        """True once anything was dropped."""
        return self.dropped > 0

    @property
    def data(self) -> bytes:
        """The bytes kept so far."""
        return bytes(self._data)

    def text(self) -> str:
        """The kept bytes as text, with the truncation marker when bytes were dropped."""
        return render_output(bytes(self._data), truncated=self.truncated)


def render_output(data: bytes, *, truncated: bool) -> str:
    """Decode captured output (invalid UTF-8 replaced) and mark it if it was cut."""
    text = data.decode("utf-8", errors="replace")
    if truncated:
        if text and not text.endswith("\n"):
            text += "\n"
        text += TRUNCATION_MARKER + "\n"
    return text


def read_bounded(path: str, limit: int) -> str:
    """The first ``limit`` bytes of a file as text (marked when longer); "" if missing."""
    try:
        with open(path, "rb", buffering=0) as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        return ""
    if not data:
        return ""
    return render_output(data[:limit], truncated=len(data) > limit)


def tail(text: str, chars: int = _TAIL_CHARS) -> str:
    """The last ``chars`` characters of ``text``, stripped (for one-line error messages)."""
    text = text.replace(TRUNCATION_MARKER, "").strip()
    return text if len(text) <= chars else "…" + text[-chars:]


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``signal SIGSEGV`` for a child's return code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"signal {name}"
    return f"exit code {returncode}"


def process_is_running(pid: int) -> bool:
    """False once ``pid`` is gone or a zombie (dead, waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc to ask: trust the caller's other signals
    # The state letter follows the command name, which is in parentheses.
    state = stat.rsplit(b")", 1)[-1].split()[:1]
    return state not in ([b"Z"], [b"X"])


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def parse_envelope(raw: bytes | str) -> dict[str, Any] | None:
    """The envelope object if ``raw`` is exactly one valid envelope, else None."""
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
        return None
    return envelope


def outcome_from_envelope(
    envelope: dict[str, Any], *, stdout: str = "", stderr: str = ""
) -> Outcome:
    """Success, or an ``app_error`` carrying the task's exception class, message and traceback.

    A ``"kind": "security_violation"`` envelope (the child refused the task path) keeps
    that kind; no other kind is taken from a child.
    """
    if envelope["ok"]:
        return Outcome.success(envelope.get("return"), stdout=stdout, stderr=stderr)
    exception_class = envelope.get("exception_class")
    traceback = envelope.get("traceback")
    message = envelope.get("message")
    refused = envelope.get("kind") == ErrorKind.SECURITY_VIOLATION
    return Outcome.failure(
        ErrorKind.SECURITY_VIOLATION if refused else ErrorKind.APP_ERROR,
        "" if message is None else str(message),
        exception_class=None if exception_class is None else str(exception_class),
        traceback=None if traceback is None else str(traceback),
        stdout=stdout,
        stderr=stderr,
    )


def invalid_stdout_message(stdout: str, *, truncated: bool, limit: int) -> str:
    """The contract's ``Invalid JSON on stdout: …`` message."""
    if truncated:
        return (
            f"Invalid JSON on stdout: output exceeded max_output_bytes ({limit} bytes) "
            "and was truncated"
        )
    shown = stdout.strip()
    if not shown:
        return "Invalid JSON on stdout: (empty)"
    if len(shown) > _SNIPPET_CHARS:
        shown = shown[:_SNIPPET_CHARS] + "…"
    return f"Invalid JSON on stdout: {shown!r}"
