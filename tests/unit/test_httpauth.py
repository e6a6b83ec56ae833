"""Failed-auth rate limiting and client networks of the metrics endpoint (no sockets)."""

from __future__ import annotations

from reproq.runtime.httpauth import AuthLimiter, client_allowed, credential_valid, networks


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_limited_after_the_limit_until_the_window_ends() -> None:
    clock = _Clock()
    limiter = AuthLimiter(limit=2, window=60.0, clock=clock)
    assert [limiter.failed("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert limiter.failed("10.0.0.2")  # another client has its own count
    clock.now += 59.0
    assert not limiter.failed("10.0.0.1")
    clock.now += 1.0
    assert limiter.failed("10.0.0.1")


def test_at_most_max_entries_clients_are_tracked() -> None:
    clock = _Clock()
    limiter = AuthLimiter(limit=1, window=60.0, max_entries=100, clock=clock)
    for i in range(10_000):
        limiter.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        clock.now += 0.001
    assert limiter.tracked <= 100
    # The most recent client is still tracked (and limited).
    assert not limiter.failed("10.0.39.15")


def test_idle_clients_are_forgotten_after_two_windows() -> None:
    clock = _Clock()
    limiter = AuthLimiter(limit=5, window=10.0, clock=clock)
    limiter.failed("10.0.0.1")
    clock.now += 25.0
    limiter.failed("10.0.0.2")
    assert limiter.tracked == 1


def test_localhost_in_allowed_cidrs_means_both_loopbacks() -> None:
    allowed = networks(("localhost", "10.0.0.0/8"))
    assert client_allowed("127.0.0.1", allowed)
    assert client_allowed("::1", allowed)
    assert client_allowed("10.9.8.7", allowed)
    assert not client_allowed("192.0.2.1", allowed)


def test_the_token_itself_is_a_valid_credential_and_other_schemes_are_not() -> None:
    assert credential_valid("Bearer tok-123456", b"tok-123456")
    assert credential_valid("bearer   tok-123456", b"tok-123456")
    assert not credential_valid("Basic tok-123456", b"tok-123456")
    assert not credential_valid("Bearer tok-1234567", b"tok-123456")
    assert not credential_valid("Bearer a.b.c", b"tok-123456")
    assert not credential_valid("", b"tok-123456")
