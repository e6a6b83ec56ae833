"""Retry decisions: which failures retry, after which backoff, and when a run fails for good."""

from __future__ import annotations

import pytest

from reproq.engine.retry import BACKOFF_CAP_SECONDS, backoff_seconds, decide
from reproq.models import ErrorKind


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(1, 30), (2, 60), (3, 120), (4, 240), (5, 480), (7, 1920), (8, 3600), (9, 3600)],
)
def test_backoff_doubles_from_thirty_seconds_up_to_an_hour(attempt: int, seconds: float) -> None:
    assert backoff_seconds(attempt) == seconds


def test_backoff_stays_capped_for_absurd_attempt_numbers() -> None:
    assert backoff_seconds(10_000) == BACKOFF_CAP_SECONDS
    assert backoff_seconds(0) == 30  # a bogus attempt number still gets the first delay


@pytest.mark.parametrize(
    "kind", [ErrorKind.APP_ERROR, ErrorKind.INFRA_ERROR, ErrorKind.LEASE_EXPIRY]
)
def test_retryable_failures_retry_with_backoff_while_attempts_remain(kind: ErrorKind) -> None:
    first = decide(kind, attempt=1, max_attempts=3)
    second = decide(kind, attempt=2, max_attempts=3)
    assert first.retry and first.delay_seconds == 30
    assert second.retry and second.delay_seconds == 60


@pytest.mark.parametrize(
    "kind", [ErrorKind.APP_ERROR, ErrorKind.INFRA_ERROR, ErrorKind.LEASE_EXPIRY]
)
def test_the_last_attempt_fails_for_good(kind: ErrorKind) -> None:
    assert not decide(kind, attempt=3, max_attempts=3).retry
    assert not decide(kind, attempt=1, max_attempts=1).retry


@pytest.mark.parametrize(
    "kind",
    [
        ErrorKind.CANCELLED,
        ErrorKind.INVALID_SPEC,
        ErrorKind.SECURITY_VIOLATION,
        ErrorKind.EXPIRED,
        ErrorKind.WORKFLOW_FAILED,
    ],
)
def test_cancellation_bad_specs_forbidden_paths_expiry_never_retry(kind: ErrorKind) -> None:
    decision = decide(kind, attempt=1, max_attempts=10)
    assert not decision.retry
    assert decision.delay_seconds == 0
