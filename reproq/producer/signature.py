"""Signatures: one task invocation with its enqueue options, ready to become a row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reproq.errors import InvalidSpec
from reproq.producer.enqueue import NewTask
from reproq.spec import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_SECONDS, build_spec, check_keys

__all__ = ["Signature"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Signature:
    """One task invocation with its enqueue options, ready to become a row.

    Keys are checked when the signature is made (so ``@task(lock_key=...)`` fails where it
    is written); everything else when it becomes a row (:meth:`to_new_task`).
    """

    task_path: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    run_after: dt.datetime | dt.timedelta | float | None = None
    lock_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    expires_in: dt.timedelta | float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    extra_spec: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_keys(self.lock_key, self.concurrency_key)

    def with_options(self, **options: Any) -> Signature:
        """A copy with some options changed (``queue=``, ``priority=``, …)."""
        return replace(self, **options)

    def to_new_task(self, *, now: dt.datetime | None = None, **row: Any) -> NewTask:
        """The row to insert; ``row`` passes workflow columns (parent_id, status, …)."""
        now = now or dt.datetime.now(dt.UTC)
        if self.concurrency_limit < 0:
            raise InvalidSpec(f"concurrency_limit must be >= 0, got {self.concurrency_limit}")
        if self.concurrency_limit and not self.concurrency_key:
            raise InvalidSpec("concurrency_limit needs a concurrency_key")
        spec = build_spec(
            self.task_path,
            self.args,
            self.kwargs,
            queue_name=self.queue,
            priority=self.priority,
            lock_key=self.lock_key,
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
            run_after=_absolute("run_after", self.run_after, now),
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            extra=self.extra_spec,
        )
        expires = _absolute("expires_in", self.expires_in, now)
        return NewTask.from_spec(spec, expires_at=expires, metadata=self.metadata, **row)


def _absolute(
    name: str, value: dt.datetime | dt.timedelta | float | None, now: dt.datetime
) -> dt.datetime | None:
    """An instant from an absolute time, an offset, or seconds from now."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidSpec(f"{value.isoformat()} has no timezone; pass an aware datetime")
        return value.astimezone(dt.UTC)
    try:
        offset = value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=float(value))
        return now + offset
    except (OverflowError, ValueError):
        raise InvalidSpec(f"{name} {value!r} is out of range (past the year 9999)") from None
