"""The metrics endpoint's access control, health answers and exposition (no database)."""

from __future__ import annotations

import ipaddress
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reproq.config import MetricsSettings
from reproq.errors import ReproqError
from reproq.runtime.health import ComponentState, HealthCheck, HealthReport
from reproq.runtime.httpserver import MetricsServer, client_allowed
from reproq.runtime.metrics import ProcessedStatus, RuntimeMetrics


def _fetch(
    url: str, token: str | None = None, accept: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _healthy() -> HealthReport:
    return HealthReport(ok=True, components={"pool:default": "running"})


@pytest.fixture
def serve() -> Iterator[Callable[..., MetricsServer]]:
    """Start a MetricsServer on a free loopback port; closed after the test."""
    servers: list[MetricsServer] = []

    def start(
        *,
        health: Callable[[], HealthReport] = _healthy,
        metrics: RuntimeMetrics | None = None,
        **settings: Any,
    ) -> MetricsServer:
        settings.setdefault("addr", "127.0.0.1:0")
        server = MetricsServer(
            MetricsSettings(enabled=True, **settings),
            registry=(metrics or RuntimeMetrics(process_metrics=False)).registry,
            health=health,
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_without_auth_settings_every_local_client_is_served(
    serve: Callable[..., MetricsServer],
) -> None:
    server = serve()
    status, headers, body = _fetch(f"{server.url}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert b"reproq_tasks_processed_total" in body


def test_a_token_is_required_when_configured(serve: Callable[..., MetricsServer]) -> None:
    server = serve(auth_token="s3cret-token")
    for path in ("/metrics", "/healthz"):
        status, headers, body = _fetch(f"{server.url}{path}")
        assert status == 401
        assert headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(body) == {"error": "missing or wrong bearer token"}
        assert _fetch(f"{server.url}{path}", token="wrong")[0] == 401
        assert _fetch(f"{server.url}{path}", token="s3cret-token")[0] == 200


def test_a_client_outside_the_allowed_networks_is_refused(
    serve: Callable[..., MetricsServer],
) -> None:
    server = serve(allowed_cidrs=("10.0.0.0/8", "192.168.0.0/16"))
    status, _, body = _fetch(f"{server.url}/metrics")
    assert status == 403
    assert json.loads(body) == {"error": "client address not allowed"}


def test_a_client_inside_the_allowed_networks_still_needs_the_token(
    serve: Callable[..., MetricsServer],
) -> None:
    server = serve(allowed_cidrs=("127.0.0.0/8",), auth_token="tok-123456")
    assert _fetch(f"{server.url}/metrics")[0] == 401
    assert _fetch(f"{server.url}/metrics", token="tok-123456")[0] == 200


def test_client_allowed_matches_networks_and_ipv4_mapped_addresses() -> None:
    nets = (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00::/8"))
    assert client_allowed("10.1.2.3", nets)
    assert client_allowed("::ffff:10.1.2.3", nets)
    assert client_allowed("fd00::1", nets)
    assert not client_allowed("10.2.0.1", nets)
    assert not client_allowed("not-an-ip", nets)
    assert client_allowed("203.0.113.9", ())


def test_healthz_answers_ok_as_reproq_worker_does(serve: Callable[..., MetricsServer]) -> None:
    server = serve()
    status, headers, body = _fetch(f"{server.url}/healthz")
    assert (status, body) == (200, b"ok")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_healthz_is_200_with_status_ok_in_json_when_asked(
    serve: Callable[..., MetricsServer],
) -> None:
    server = serve()
    status, headers, body = _fetch(f"{server.url}/healthz", accept="application/json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(_fetch(f"{server.url}/healthz?format=json")[2])["status"] == "ok"
    doc = json.loads(body)
    assert doc["status"] == "ok"
    assert doc["components"] == {"pool:default": "running"}


def test_healthz_is_503_with_the_reasons_when_unhealthy(
    serve: Callable[..., MetricsServer],
) -> None:
    check = HealthCheck(
        db_problem=lambda: "connection refused",
        components=lambda: {"beat": ComponentState.RESTARTING, "pool:a": ComponentState.RUNNING},
    )
    server = serve(health=check)
    assert _fetch(f"{server.url}/healthz")[::2] == (503, b"unhealthy")
    status, _, body = _fetch(f"{server.url}/healthz", accept="application/json")
    assert status == 503
    doc = json.loads(body)
    assert doc["status"] == "unavailable"
    assert doc["reasons"] == [
        "beat died and is being restarted",
        "database unreachable: connection refused",
    ]
    assert doc["components"] == {"beat": "restarting", "pool:a": "running"}


def test_unknown_paths_are_404(serve: Callable[..., MetricsServer]) -> None:
    server = serve()
    assert _fetch(f"{server.url}/nope")[0] == 404


def test_counters_fed_through_the_sink_appear_in_the_exposition(
    serve: Callable[..., MetricsServer],
) -> None:
    metrics = RuntimeMetrics(process_metrics=False, components=lambda: {"beat": True})
    metrics.task_claimed("emails", 3)
    metrics.task_finished("emails", ProcessedStatus.SUCCESS, 0.02)
    metrics.task_finished("emails", ProcessedStatus.FAILURE, None)
    server = serve(metrics=metrics)
    body = _fetch(f"{server.url}/metrics")[2].decode()
    assert 'reproq_tasks_claimed_total{queue="emails"} 3.0' in body
    assert 'reproq_tasks_processed_total{queue="emails",status="success"} 1.0' in body
    assert 'reproq_tasks_processed_total{queue="emails",status="failure"} 1.0' in body
    assert 'reproq_tasks_completed_total{queue="emails",status="success"} 1.0' in body
    assert 'reproq_task_outcomes_total{outcome="failure",queue="emails"} 1.0' in body
    assert 'reproq_exec_duration_seconds_count{queue="emails"} 1.0' in body
    assert 'reproq_component_up{component="beat"} 1.0' in body


def test_binding_beyond_loopback_without_auth_logs_a_warning(
    serve: Callable[..., MetricsServer], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="reproq.metrics"):
        serve(addr="0.0.0.0:0")
    assert any("without auth_token, allowed_cidrs" in r.getMessage() for r in caplog.records)


def test_binding_beyond_loopback_with_a_token_does_not_warn(
    serve: Callable[..., MetricsServer], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="reproq.metrics"):
        serve(addr="0.0.0.0:0", auth_token="tok-123456")
    assert not caplog.records


def test_a_port_in_use_is_a_clear_error(serve: Callable[..., MetricsServer]) -> None:
    first = serve()
    port = first.address[1]
    second = MetricsServer(
        MetricsSettings(enabled=True, addr=f"127.0.0.1:{port}"),
        registry=RuntimeMetrics(process_metrics=False).registry,
        health=_healthy,
    )
    with pytest.raises(ReproqError, match=f"cannot listen on 127.0.0.1:{port}"):
        second.bind()
