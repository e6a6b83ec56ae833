"""The metrics endpoint under abuse, over real sockets: refused addresses, slow clients,
bursts of clients, clients that vanish mid-request."""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reproq.config import MetricsSettings
from reproq.runtime.health import HealthReport
from reproq.runtime.httphandler import Limits
from reproq.runtime.httpserver import BACKLOG, MetricsServer
from reproq.runtime.metrics import RuntimeMetrics

# 127.0.0.0/8 is all loopback on Linux: a client bound to .2 is "another host" to a
# server that only allows 127.0.0.1.
ALLOWED = "127.0.0.1"
REFUSED = "127.0.0.2"


def _healthy() -> HealthReport:
    return HealthReport(ok=True)


@pytest.fixture
def serve() -> Iterator[Callable[..., MetricsServer]]:
    servers: list[MetricsServer] = []

    def start(
        *, health: Callable[[], HealthReport] = _healthy, limits: Limits | None = None, **kw: Any
    ) -> MetricsServer:
        kw.setdefault("addr", "127.0.0.1:0")
        server = MetricsServer(
            MetricsSettings(enabled=True, **kw),
            registry=RuntimeMetrics(process_metrics=False).registry,
            health=health,
            limits=limits,
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _connect(server: MetricsServer, source: str = ALLOWED) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(server.address)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_listen_backlog_leaves_room_for_bursts() -> None:
    assert BACKLOG >= 128


def test_silent_clients_from_a_refused_address_hold_no_thread(
    serve: Callable[..., MetricsServer],
) -> None:
    server = serve(allowed_cidrs=(f"{ALLOWED}/32",))
    assert _get(f"{server.url}/healthz")[0] == 200
    threads_before = threading.active_count()
    silent = [_connect(server, REFUSED) for _ in range(300)]
    try:
        # Each is answered 403 without the server waiting for its request.
        for sock in silent[:20]:
            reply = _read_all(sock)
            assert reply.startswith(b"HTTP/1.0 403 ")
            assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {
                "error": "client address not allowed"
            }
        assert threading.active_count() <= threads_before + 2
        status, body = _get(f"{server.url}/metrics")
        assert status == 200 and b"reproq_tasks_claimed_total" in body
    finally:
        for sock in silent:
            sock.close()


def test_a_slow_client_from_an_allowed_address_is_cut_off(
    serve: Callable[..., MetricsServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(limits=Limits(header_timeout=1.0))
    sock = _connect(server)
    caplog.set_level(logging.INFO, logger="reproq.metrics")
    closed = False
    try:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                sock.settimeout(0.3)
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    finally:
        sock.close()
    assert closed
    assert any("did not send its request within 1s" in r.getMessage() for r in caplog.records)
    # The endpoint still answers.
    assert _get(f"{server.url}/healthz")[0] == 200


def test_many_slow_clients_do_not_hold_handler_threads(
    serve: Callable[..., MetricsServer],
) -> None:
    server = serve()
    assert _get(f"{server.url}/healthz")[0] == 200
    threads_before = threading.active_count()
    slow = [_connect(server) for _ in range(200)]
    try:
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        assert _get(f"{server.url}/metrics")[0] == 200
        assert threading.active_count() <= threads_before + 2
    finally:
        for sock in slow:
            sock.close()


def test_connections_beyond_the_pending_bound_are_answered_503_at_once(
    serve: Callable[..., MetricsServer],
) -> None:
    server = serve(limits=Limits(max_pending=10))
    held = [_connect(server) for _ in range(10)]
    try:
        time.sleep(0.2)  # let the intake take them
        extra = _connect(server)
        assert _read_all(extra).startswith(b"HTTP/1.0 503 ")
        extra.close()
    finally:
        for sock in held:
            sock.close()


def test_hundreds_of_concurrent_valid_requests_all_succeed(
    serve: Callable[..., MetricsServer],
) -> None:
    server = serve()
    clients = 400
    start = threading.Barrier(clients)
    results: list[int | str] = []
    lock = threading.Lock()

    def client() -> None:
        start.wait()
        try:
            outcome: int | str = _get(f"{server.url}/metrics", timeout=60)[0]
        except OSError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [200] * clients


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset instead of an orderly shutdown."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_aborted_connections_cost_one_log_line_and_no_traceback(
    serve: Callable[..., MetricsServer],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    answering = threading.Event()

    def slow_health() -> HealthReport:
        answering.set()
        time.sleep(0.5)
        return HealthReport(ok=True, reasons=(), components={"x": "running" * 20000})

    server = serve(health=slow_health)
    caplog.set_level(logging.INFO, logger="reproq.metrics")
    # Reset while the server is still reading, and while it is writing a large answer.
    early = _connect(server)
    early.sendall(b"GET /healthz HTTP/1.1\r\n")
    _reset(early)
    late = _connect(server)
    late.sendall(b"GET /healthz?format=json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answering.wait(10)
    _reset(late)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline and sum("aborted" in r.getMessage() for r in caplog.records) < 2
    ):
        time.sleep(0.05)
    assert _get(f"{server.url}/metrics")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err
    aborted = [r for r in caplog.records if "aborted" in r.getMessage()]
    assert len(aborted) == 2
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in aborted)
