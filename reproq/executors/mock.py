"""The ``mock`` executor: simulated work for benchmarks and torture runs.

Every attempt "works" for ``duration`` seconds (a number, or a ``(low, high)`` range drawn
uniformly) without importing or calling anything, then fails with probability
``failure_rate`` (an ``app_error``) or succeeds with ``{"mock": true, "seconds": …}``.
It honours the deadline (``infra_error`` timeout) and cancellation (``cancelled``) while
it works, like a well-behaved task. ``seed`` makes the draws repeatable.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from reproq.errors import ConfigError
from reproq.executors.base import CancelCheck, Outcome, TaskCall
from reproq.models import ErrorKind

__all__ = ["MockExecutor", "parse_mock_duration"]

_SLICE = 0.05  # seconds between cancel/deadline checks while working


def parse_mock_duration(value: Any) -> tuple[float, float]:
    """``0.5`` → (0.5, 0.5); ``(0.1, 0.3)``, ``"0.1-0.3"`` or ``"0.1..0.3"`` → a range."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            low = high = float(value)
        elif isinstance(value, str):
            text = value.strip()
            sep = ".." if ".." in text else ("-" if "-" in text.lstrip("-") else None)
            if sep is None:
                low = high = float(text)
            else:
                first, second = text.split(sep, 1)
                low, high = float(first), float(second)
        else:
            first, second = value
            low, high = float(first), float(second)
    except (TypeError, ValueError):
        raise ConfigError(
            f"mock duration {value!r} must be seconds or a range like 0.1-0.5",
            key="duration",
        ) from None
    if low < 0 or high < low:
        raise ConfigError(
            f"mock duration {value!r} must be non-negative with low <= high", key="duration"
        )
    return low, high


class MockExecutor:
    """Pretends to run tasks: configurable duration and failure rate, no task code."""

    name = "mock"

    deadline_grace_seconds = 0.5
    """It reports its own timeouts; the worker steps in only if it does not."""

    def __init__(
        self,
        *,
        duration: Any = 0.0,
        failure_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.low, self.high = parse_mock_duration(duration)
        if not 0.0 <= float(failure_rate) <= 1.0:
            raise ConfigError(
                f"failure_rate must be between 0 and 1, got {failure_rate}", key="failure_rate"
            )
        self.failure_rate = float(failure_rate)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def start(self) -> None:
        """Nothing to prepare."""

    def shutdown(self, *, wait: bool) -> None:
        """Nothing to release."""

    def run(self, call: TaskCall, cancel: CancelCheck) -> Outcome:
        """Work for the drawn duration unless cancelled or past the deadline."""
        with self._rng_lock:
            seconds = self.low if self.high == self.low else self._rng.uniform(self.low, self.high)
            fails = self.failure_rate > 0 and self._rng.random() < self.failure_rate
        if cancel.is_set():
            return Outcome.failure(ErrorKind.CANCELLED, "cancelled before it started")
        if seconds > 0:
            stopped = _work(seconds, call.deadline, cancel)
            if stopped is not None:
                return stopped
        if fails:
            return Outcome.failure(
                ErrorKind.APP_ERROR,
                f"mock failure (failure_rate={self.failure_rate:g})",
                exception_class="MockFailure",
            )
        return Outcome.success({"mock": True, "seconds": seconds})


def _work(seconds: float, deadline: float, cancel: CancelCheck) -> Outcome | None:
    """Wait ``seconds``; an Outcome if cancelled or timed out first, else None."""
    wait = getattr(cancel, "wait", None)  # a threading.Event wakes us at once when set
    end = time.monotonic() + seconds
    while True:
        now = time.monotonic()
        if cancel.is_set():
            return Outcome.failure(ErrorKind.CANCELLED, "cancelled while running")
        if now >= deadline:
            return Outcome.failure(
                ErrorKind.INFRA_ERROR, "timeout: the attempt passed its deadline"
            )
        if now >= end:
            return None
        step = min(end, deadline) - now
        if callable(wait):
            wait(step)
        else:
            time.sleep(min(step, _SLICE))
