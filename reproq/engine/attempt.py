"""One attempt, before and after the executor: the checks that gate it and its record.

Before: a claimed row becomes a :class:`~reproq.executors.base.TaskCall` only if it may
run. A row whose ``expires_at`` passed (``expired``), whose cancel was requested before it
started (``cancelled``), whose spec is over ``max_payload_bytes`` (``infra_error``), is not
a valid spec (``invalid_spec``) or names a task path outside the allow-list
(``security_violation``) is refused with that error kind instead.

After: an :class:`~reproq.executors.base.Outcome` becomes a
:class:`~reproq.engine.completion.Completion`: the return value as JSON (a value JSON cannot
hold, or one larger than ``max_output_bytes``, fails the attempt clearly), or an
``errors_json`` entry ``{kind, message, exception_class, traceback, attempt, at,
worker_id}`` with the retry decision of :mod:`reproq.engine.retry`.

With a logs directory set, every recorded attempt gets ``<logs_dir>/task-<id>-attempt-<n>.log``
(mode 0600), named in ``logs_uri``, so ``manage.py reproq logs --id N`` always finds one:
what the task wrote, laid out as the Go worker writes it (``STDOUT:`` then ``STDERR:``),
even when it wrote nothing; or, for an attempt the worker ended itself (refused, timed
out in a thread, executor failure), a ``WORKER:`` section saying why.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from reproq.engine.claim import ClaimedRow
from reproq.engine.completion import Completion
from reproq.engine.lease import Held
from reproq.engine.retry import decide
from reproq.errors import InvalidSpec
from reproq.executors.base import Outcome, TaskCall
from reproq.models import ErrorKind, TaskStatus
from reproq.spec import is_checked_task_path, key_problem, parse_spec, private_part

__all__ = [
    "LAST_ERROR_MAX_BYTES",
    "AllowList",
    "AttemptPolicy",
    "Refusal",
    "cancelled_completion",
    "failure_completion",
    "outcome_completion",
    "prepare_call",
]

log = logging.getLogger("reproq.attempt")

LAST_ERROR_MAX_BYTES = 1024
"""``task_runs.last_error`` holds at most this many bytes of UTF-8."""

_DEFAULT_TIMEOUT = 900


class AllowList:
    """Task path prefixes that may run: ``myapp.tasks.`` (or ``myapp.tasks``) allows
    ``myapp.tasks.send`` but not ``myapp.tasksevil.x``; ``*`` allows everything.

    Whatever the entries, a path with a part starting with ``_`` never runs (private and
    dunder names are how a path reaches what its module only uses). That the callable a
    path resolves to is defined in the module the path names is checked where it is
    imported (:func:`reproq.executors.contract.resolve_task`).
    """

    __slots__ = ("_exact", "_prefixes", "allow_all", "entries")

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = tuple(e.strip() for e in entries if e.strip())
        self.allow_all = "*" in self.entries
        # A prefix without the trailing dot still stops at a module boundary.
        self._prefixes = tuple(e if e.endswith(".") else e + "." for e in self.entries)
        self._exact = frozenset(e for e in self.entries if not e.endswith("."))

    def allows(self, task_path: str) -> bool:
        """Whether ``task_path`` may be executed."""
        return self.refusal(task_path) is None

    def refusal(self, task_path: str) -> str | None:
        """Why ``task_path`` may not be executed, or None when it may."""
        private = private_part(task_path)
        if private is not None:
            return f"task path {task_path!r} names the private {private!r}: only public names run"
        if self.allow_all or task_path.startswith(self._prefixes) or task_path in self._exact:
            return None
        return (
            f"task path {task_path!r} is not in allowed_task_modules "
            f"({', '.join(self.entries) or 'empty'})"
        )

    def __repr__(self) -> str:
        return f"AllowList({list(self.entries)!r})"


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptPolicy:
    """The worker settings that shape every attempt."""

    worker_id: str
    allow: AllowList
    max_payload_bytes: int
    max_output_bytes: int
    logs_dir: str | None = None
    max_timeout_seconds: float | None = None  # the pool's cap on any task's timeout


@dataclass(frozen=True, kw_only=True, slots=True)
class Refusal:
    """Why a claimed row must not run; it fails (or retries) with this kind at once."""

    kind: ErrorKind
    message: str


def prepare_call(row: ClaimedRow, policy: AttemptPolicy) -> TaskCall | Refusal:
    """The call to hand to the executor, or why the row must not run."""
    if row.cancel_requested:
        return Refusal(kind=ErrorKind.CANCELLED, message="cancel requested before it started")
    if row.expired:
        return Refusal(kind=ErrorKind.EXPIRED, message="expires_at passed before it could run")
    size = _utf8_size_over(row.spec_text, policy.max_payload_bytes)
    if size is not None:
        return Refusal(
            kind=ErrorKind.INFRA_ERROR,
            message=f"payload is {size} bytes, over max_payload_bytes ({policy.max_payload_bytes})",
        )
    spec = _load_spec(row)
    if isinstance(spec, Refusal):
        return spec
    task_path: str = spec["task_path"]
    refused = policy.allow.refusal(task_path)
    if refused is not None:
        return Refusal(kind=ErrorKind.SECURITY_VIOLATION, message=refused)
    for name in ("lock_key", "concurrency_key"):
        # A key written by another client that reproq would refuse at enqueue.
        problem = key_problem(name, spec.get(name))
        if problem is not None:
            return Refusal(kind=ErrorKind.INVALID_SPEC, message=problem)
    own = row.timeout_seconds if row.timeout_seconds and row.timeout_seconds > 0 else None
    timeout = float(own or _DEFAULT_TIMEOUT)
    if policy.max_timeout_seconds:
        timeout = min(timeout, policy.max_timeout_seconds)
    return TaskCall(
        result_id=row.result_id,
        attempt=row.attempt,
        task_path=task_path,
        args=spec.get("args") or [],
        kwargs=spec.get("kwargs") or {},
        spec=spec,
        timeout_seconds=float(timeout),
        deadline=time.monotonic() + timeout,
        worker_id=policy.worker_id,
    )


def _load_spec(row: ClaimedRow) -> dict[str, Any] | Refusal:
    """The row's spec, validated like :func:`~reproq.spec.parse_spec` does.

    The common case (a task path already checked, plain args and kwargs) skips re-checking
    the path; anything unusual goes through ``parse_spec`` for its exact error message.
    """
    try:
        spec = json.loads(row.spec_text)
    except (ValueError, RecursionError):
        spec = None
    if (
        type(spec) is dict
        and type(path := spec.get("task_path")) is str
        and is_checked_task_path(path)
        and type(spec.get("args", [])) is list
        and type(spec.get("kwargs", {})) is dict
    ):
        return spec
    try:
        return parse_spec(row.spec_text if spec is None else spec, result_id=row.result_id)
    except InvalidSpec as exc:
        return Refusal(kind=ErrorKind.INVALID_SPEC, message=str(exc))


def outcome_completion(
    lease: Held, outcome: Outcome, policy: AttemptPolicy, *, at: str | Callable[[], str]
) -> Completion:
    """The record of an attempt that ran and ended with ``outcome``.

    ``at`` (the error entry's timestamp) may be a callable, only called on failure.
    """
    logs_uri = None
    if policy.logs_dir:
        logs_uri = write_log(policy.logs_dir, lease, outcome.stdout, outcome.stderr)
    if outcome.ok:
        value = outcome.return_value
        if value is None:
            text = "null"
        else:
            try:
                text = _to_json(value)
            except (TypeError, ValueError, RecursionError) as exc:
                return failure_completion(
                    lease,
                    ErrorKind.APP_ERROR,
                    f"return value of type {type(value).__name__} cannot be stored as JSON: {exc}",
                    policy,
                    at=at,
                    exception_class="TypeError",
                    logs_uri=logs_uri,
                )
            size = _utf8_size_over(text, policy.max_output_bytes)
            if size is not None:
                return failure_completion(
                    lease,
                    ErrorKind.APP_ERROR,
                    f"return value is {size} bytes as JSON, over max_output_bytes "
                    f"({policy.max_output_bytes})",
                    policy,
                    at=at,
                    logs_uri=logs_uri,
                )
        return Completion(
            result_id=lease.result_id,
            attempt=lease.attempt,
            status=TaskStatus.SUCCESSFUL,
            return_json=text,
            logs_uri=logs_uri,
            workflow_id=lease.workflow_id,
        )
    return failure_completion(
        lease,
        outcome.error_kind or ErrorKind.APP_ERROR,
        outcome.message,
        policy,
        at=at,
        exception_class=outcome.exception_class,
        traceback=outcome.traceback,
        logs_uri=logs_uri,
    )


def cancelled_completion(
    lease: Held, outcome: Outcome, policy: AttemptPolicy, *, at: str | Callable[[], str]
) -> Completion:
    """The record of an attempt stopped by a cancel request (what it wrote kept in its log)."""
    logs_uri = None
    if policy.logs_dir:
        logs_uri = write_log(policy.logs_dir, lease, outcome.stdout, outcome.stderr)
    return failure_completion(
        lease,
        ErrorKind.CANCELLED,
        outcome.message or "cancelled on request",
        policy,
        at=at,
        exception_class=outcome.exception_class,
        traceback=outcome.traceback,
        logs_uri=logs_uri,
    )


def failure_completion(
    lease: Held,
    kind: ErrorKind,
    message: str,
    policy: AttemptPolicy,
    *,
    at: str | Callable[[], str],
    exception_class: str | None = None,
    traceback: str | None = None,
    logs_uri: str | None = None,
) -> Completion:
    """The record of a failed attempt: a retry after the backoff, or FAILED for good.

    Without a ``logs_uri`` (the attempt's output was not written), the attempt's log file
    says why the worker ended it.
    """
    message = _clean(message)
    if logs_uri is None and policy.logs_dir:
        logs_uri = _write(policy.logs_dir, lease, f"WORKER:\n{kind}: {message}\n", append=True)
    entry = {
        "kind": str(kind),
        "message": message,
        "exception_class": _clean(exception_class) if exception_class else None,
        "traceback": _clean(traceback) if traceback else None,
        "attempt": lease.attempt,
        "at": at if isinstance(at, str) else at(),
        "worker_id": policy.worker_id,
    }
    decision = decide(kind, lease.attempt, lease.max_attempts)
    return Completion(
        result_id=lease.result_id,
        attempt=lease.attempt,
        status=TaskStatus.READY if decision.retry else TaskStatus.FAILED,
        error_json=json.dumps(entry, ensure_ascii=False),
        delay_seconds=decision.delay_seconds,
        last_error=truncate_utf8(message or str(kind), LAST_ERROR_MAX_BYTES),
        logs_uri=logs_uri,
        workflow_id=lease.workflow_id,
    )


def write_log(logs_dir: str, lease: Held, stdout: str, stderr: str) -> str | None:
    """Write an attempt's output to ``task-<id>-attempt-<n>.log`` (0600); its path, or None.

    The layout is the Go worker's: ``STDOUT:`` and ``STDERR:`` lines, each stream ending
    with a newline.
    """
    body = f"STDOUT:\n{stdout}{_newline(stdout)}STDERR:\n{stderr}{_newline(stderr)}"
    return _write(logs_dir, lease, body, append=False)


def _newline(text: str) -> str:
    return "" if text.endswith("\n") else "\n"


def _write(logs_dir: str, lease: Held, body: str, *, append: bool) -> str | None:
    """Write (or add to) the attempt's log file; its absolute path, or None if it failed.

    Adding keeps output already written for the attempt (a note after it).
    """
    path = os.path.abspath(
        os.path.join(logs_dir, f"task-{lease.result_id}-attempt-{lease.attempt}.log")
    )
    mode = os.O_APPEND if append else os.O_TRUNC
    try:
        os.makedirs(logs_dir, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when the file already existed with other modes
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace", closefd=False) as handle:
                handle.write(body)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("cannot write logs of task %s to %s: %s", lease.result_id, path, exc)
        return None
    return path


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    return data[:limit].decode("utf-8", errors="ignore")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8_size_over(text: str, limit: int) -> int | None:
    """The UTF-8 size of ``text`` if it exceeds ``limit``, else None (cheap when far under)."""
    if len(text) * 4 <= limit:
        return None
    size = len(text.encode("utf-8", errors="replace"))
    return size if size > limit else None


def _to_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if "\\u0000" in text and _has_nul(value):
        raise ValueError("it contains a NUL character, which PostgreSQL jsonb cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("it contains a lone surrogate, which is not valid UTF-8") from None
    return text


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _clean(text: str) -> str:
    """Text PostgreSQL can store: no NUL characters, valid UTF-8."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not _encodes(text):
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text
