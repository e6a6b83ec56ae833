"""The ``@task`` decorator: a function that can be called directly or enqueued.

Typed end to end: ``@task`` keeps the function's parameters (a ``ParamSpec``), so
``send_email.enqueue(42, welcome=True)`` and ``send_email.sig(...)`` are checked against
``send_email``'s own signature, and every argument, including one named ``client``,
belongs to the task. The client to enqueue with is chosen apart from the arguments:
``send_email.using(client).enqueue(42)`` (default: :func:`reproq.configure`'s client).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypedDict, TypeVar, Unpack, overload

from reproq.errors import InvalidSpec
from reproq.producer.signature import Signature

if TYPE_CHECKING:
    from reproq.producer.client import Client

__all__ = ["EnqueueOptions", "Task", "task"]

P = ParamSpec("P")
R = TypeVar("R")


class EnqueueOptions(TypedDict, total=False):
    """Enqueue options a task can default: the keyword fields of :class:`Signature`."""

    queue: str
    priority: int
    run_after: dt.datetime | dt.timedelta | float | None
    lock_key: str | None
    concurrency_key: str | None
    concurrency_limit: int
    max_attempts: int
    timeout_seconds: int
    expires_in: dt.timedelta | float | None
    metadata: Mapping[str, Any]
    extra_spec: Mapping[str, Any]


class Task(Generic[P, R]):
    """A function registered as a task: call it directly, or ``.enqueue(...)`` it."""

    def __init__(self, func: Callable[P, R], defaults: Signature, client: Client | None = None):
        self.func = func
        self.defaults = defaults
        self.client = client
        functools.update_wrapper(self, func)

    @property
    def path(self) -> str:
        """The dotted path workers import to run this task."""
        return self.defaults.task_path

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def sig(self, *args: P.args, **kwargs: P.kwargs) -> Signature:
        """A signature for workflows (chain / group / chord) and ``enqueue_many``."""
        return replace(self.defaults, args=args, kwargs=kwargs)

    def options(self, **options: Unpack[EnqueueOptions]) -> Task[P, R]:
        """A copy of this task with other default enqueue options."""
        return Task(self.func, self.defaults.with_options(**options), self.client)

    def using(self, client: Client) -> Task[P, R]:
        """A copy of this task that enqueues through ``client``."""
        return Task(self.func, self.defaults, client)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Enqueue one run with these arguments; returns its result_id.

        Goes through the client of :meth:`using`, else the process-wide default client.
        """
        client = self.client
        if client is None:
            # Imported on first enqueue: a worker importing a task module never needs the
            # producer's connection pool.
            from reproq.producer.client import default_client

            client = default_client()
        return client.enqueue_signature(self.sig(*args, **kwargs))


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *, name: str | None = None, **options: Unpack[EnqueueOptions]
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    **options: Unpack[EnqueueOptions],
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
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
