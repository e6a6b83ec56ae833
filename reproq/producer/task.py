"""Task signatures (what to run, with which options) and the ``@task`` decorator."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from reproq.errors import InvalidSpec
from reproq.producer.enqueue import NewTask
from reproq.spec import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_SECONDS, build_spec

if TYPE_CHECKING:
    from reproq.producer.client import Client

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True, slots=True)
class Signature:
    """One task invocation with its enqueue options, ready to become a row."""

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
            run_after=_absolute(self.run_after, now),
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            extra=self.extra_spec,
        )
        expires = _absolute(self.expires_in, now)
        return NewTask.from_spec(spec, expires_at=expires, metadata=self.metadata, **row)


def _absolute(
    value: dt.datetime | dt.timedelta | float | None, now: dt.datetime
) -> dt.datetime | None:
    """An instant from an absolute time, an offset, or seconds from now."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidSpec(f"{value.isoformat()} has no timezone; pass an aware datetime")
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.timedelta):
        return now + value
    return now + dt.timedelta(seconds=float(value))


class Task(Generic[P, R]):
    """A function registered as a task: call it directly, or ``.enqueue(...)`` it."""

    def __init__(self, func: Callable[P, R], defaults: Signature) -> None:
        self.func = func
        self.defaults = defaults
        functools.update_wrapper(self, func)

    @property
    def path(self) -> str:
        """The dotted path workers import to run this task."""
        return self.defaults.task_path

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def sig(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature for workflows (chain / group / chord)."""
        return replace(self.defaults, args=args, kwargs=kwargs)

    def options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with other default enqueue options."""
        return Task(self.func, self.defaults.with_options(**options))

    def enqueue(self, *args: Any, client: Client | None = None, **kwargs: Any) -> int:
        """Enqueue one run with these arguments; returns its result_id."""
        from reproq.producer.client import default_client

        return (client or default_client()).enqueue_signature(self.sig(*args, **kwargs))


def task(
    func: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    **options: Any,
) -> Any:
    """Register a function as a task; ``@task`` or ``@task(queue="emails", priority=5)``."""

    def wrap(fn: Callable[P, R]) -> Task[P, R]:
        if name is None and "<locals>" in fn.__qualname__:
            raise InvalidSpec(
                f"{fn.__qualname__} is defined inside a function, so workers cannot import it; "
                "define tasks at module level or pass @task(name='module.function')"
            )
        path = name or f"{fn.__module__}.{fn.__qualname__}"
        return Task(fn, Signature(task_path=path, **options))

    return wrap(func) if func is not None else wrap
