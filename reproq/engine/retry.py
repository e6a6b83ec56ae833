"""Whether a failed attempt is retried, and after how long.

A failed attempt ``n`` (1-based) of a retryable kind (``app_error``, ``infra_error``,
``lease_expiry``) goes back to READY with ``run_after = now + min(30 * 2**(n-1), 3600)``
seconds while ``n < max_attempts``; otherwise the run is FAILED for good. Cancellation,
invalid specs, allow-list rejections, expiry and workflow failures never retry.
"""

from __future__ import annotations

from dataclasses import dataclass

from reproq.models import ErrorKind

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "RetryDecision",
    "backoff_seconds",
    "decide",
]

BACKOFF_BASE_SECONDS = 30.0
"""Delay after the first failed attempt."""

BACKOFF_CAP_SECONDS = 3600.0
"""The delay never grows beyond an hour."""

_MAX_EXPONENT = 32  # 30 * 2**32 s is far past the cap; avoids huge integers


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryDecision:
    """What happens to a run after one failed attempt."""

    retry: bool
    delay_seconds: float = 0.0  # until the retry becomes due; 0 when not retrying


def backoff_seconds(attempt: int) -> float:
    """Delay before retrying after failed attempt ``attempt`` (1-based)."""
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    return min(BACKOFF_BASE_SECONDS * 2.0**exponent, BACKOFF_CAP_SECONDS)


def decide(kind: ErrorKind, attempt: int, max_attempts: int) -> RetryDecision:
    """Retry (with its delay) or fail for good, for attempt ``attempt`` of ``max_attempts``."""
    if kind.retryable and attempt < max_attempts:
        return RetryDecision(retry=True, delay_seconds=backoff_seconds(attempt))
    return RetryDecision(retry=False)
