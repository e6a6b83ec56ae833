"""Demo tasks, for trying reproq out (``configs/dev.toml``) and for benchmarks and tests.

Allow them with ``--allowed-task-modules reproq.demo.``::

    reproq enqueue reproq.demo.add --args '[2, 3]'
    reproq enqueue reproq.demo.fan_out --kwargs '{"n": 10}'
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from reproq.context import current_task, raise_if_cancelled
from reproq.producer.task import task

__all__ = ["add", "fail", "fan_out", "flaky", "noop", "sleep"]

_SLICE = 0.05  # seconds between cancellation checks while sleeping

log = logging.getLogger("reproq.demo")


def _which() -> str:
    ctx = current_task()
    return f"task {ctx.result_id} attempt {ctx.attempt}" if ctx else "direct call"


@task
def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing with any arguments: what benchmarks measure is the queue itself.

    Arguments only make each run's spec unique (identical active specs are deduplicated).
    """


@task
def add(a: float, b: float) -> float:
    """Return ``a + b``."""
    log.info("add(%s, %s) = %s (%s)", a, b, a + b, _which())
    return a + b


@task
def sleep(seconds: float = 1.0) -> float:
    """Sleep ``seconds`` (stopping early if cancelled); returns the seconds slept."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return seconds
        raise_if_cancelled()
        time.sleep(min(left, _SLICE))


@task
def flaky(fail_rate: float = 0.3) -> str:
    """Fail with probability ``fail_rate`` (retried with backoff), else return ``"ok"``."""
    if random.random() < fail_rate:
        log.info("flaky: failing on purpose (%s); it will be retried", _which())
        raise RuntimeError(f"flaky task failed on purpose (fail_rate={fail_rate})")
    log.info("flaky: ok (%s)", _which())
    return "ok"


@task
def fail(message: str = "failed on purpose") -> None:
    """Always raise ``RuntimeError(message)``."""
    raise RuntimeError(message)


@task
def fan_out(n: int = 5) -> list[int]:
    """Enqueue ``n`` :func:`add` tasks with the default client; returns their ids."""
    ids = [add.enqueue(i, i) for i in range(n)]
    log.info("fan_out: enqueued %d add tasks %s (%s)", n, ids, _which())
    return ids
