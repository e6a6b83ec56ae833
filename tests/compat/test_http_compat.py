"""The HTTP surface reproq-django's dashboard talks to, compared with Reproq Worker's.

The expected names below are taken from the Go worker's source (reproq-worker at commit
544aae0): metrics from ``internal/metrics/collector.go``, ``internal/runner/prometheus.go``
and ``internal/runner/runner.go``; events from ``internal/runner/runner.go`` (the
``publishEvent`` calls) and ``internal/events/broker.go`` (the JSON keys of ``Event``);
the ``/healthz`` bodies and the 401/403/429 rules from ``internal/web/server.go``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reproq.config import MetricsSettings
from reproq.db import Conn
from reproq.engine.worker import Worker
from reproq.runtime.endpoint import Endpoint
from reproq.runtime.metrics import RuntimeMetrics
from tests.integration.worker_harness import enqueue, options, wait_retry, wait_status, wait_until

# name -> (type, label names), as declared by the Go worker.
GO_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    # internal/metrics/collector.go
    "reproq_queue_depth": ("gauge", frozenset()),
    "reproq_tasks_running": ("gauge", frozenset()),
    "reproq_workers": ("gauge", frozenset()),
    "reproq_concurrency_in_use": ("gauge", frozenset()),
    "reproq_concurrency_limit": ("gauge", frozenset()),
    "reproq_queues_paused": ("gauge", frozenset()),
    "reproq_concurrency_blocked_tasks": ("gauge", frozenset()),
    # internal/runner/prometheus.go
    "reproq_tasks_claimed": ("counter", frozenset({"queue"})),
    "reproq_tasks_completed": ("counter", frozenset({"queue", "status"})),
    "reproq_claim_duration_seconds": ("histogram", frozenset({"queue"})),
    "reproq_exec_duration_seconds": ("histogram", frozenset({"queue"})),
    "reproq_queue_wait_duration_seconds": ("histogram", frozenset({"queue"})),
    "reproq_db_operation_duration_seconds": ("histogram", frozenset({"operation"})),
    "reproq_worker_cpu_usage_percent": ("gauge", frozenset()),
    "reproq_worker_mem_usage_bytes": ("gauge", frozenset()),
    "reproq_db_pool_connections_in_use": ("gauge", frozenset()),
    "reproq_db_pool_wait_count": ("counter", frozenset()),
    # internal/runner/runner.go
    "reproq_tasks_processed": ("counter", frozenset({"status", "queue"})),
}
"""Counters are listed under their family name (the exposition adds ``_total``)."""

GO_EVENT_TYPES = frozenset(
    {
        "task_started",
        "task_success",
        "task_failed",
        "task_retry",
        "task_cancelled",
        "task_rejected",
        "task_invalid",
        "task_infra_error",
    }
)
GO_EVENT_KEYS = frozenset(
    {"ts", "level", "type", "msg", "queue", "task_id", "worker_id", "metadata"}
)

TOKEN = "metrics-token-0123456789"


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def _served(dsn: str, **settings: Any) -> Iterator[Endpoint]:
    endpoint = Endpoint(
        MetricsSettings(enabled=True, addr="127.0.0.1:0", **settings),
        dsn=dsn,
        process_metrics=False,
    )
    endpoint.reader.cache_seconds = 0.0
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.close()


@contextmanager
def _worker_with_endpoint(dsn: str, **settings: Any) -> Iterator[Endpoint]:
    """A worker and its endpoint in this process, as ``reproq worker --metrics-port`` runs."""
    with _served(dsn, **settings) as endpoint:
        worker = Worker(dsn, options(allowed_task_modules=("reproq.demo.",)), metrics=endpoint.sink)
        endpoint.watch_worker(worker)
        worker.start()
        try:
            wait_until(worker.ready.is_set, 20)
            yield endpoint
        finally:
            worker.request_stop()
            worker.join(30)


class _EventReader:
    """Reads ``data:`` messages off an open ``/events`` response."""

    def __init__(self, url: str, token: str | None = None) -> None:
        host_port, _, path = url.removeprefix("http://").partition("/")
        self.connection = http.client.HTTPConnection(host_port, timeout=30)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.connection.request("GET", "/" + path, headers=headers)
        self.response = self.connection.getresponse()

    def events(self, count: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while len(found) < count:
            line = self.response.fp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                found.append(json.loads(line[len(b"data: ") :]))
        return found

    def close(self) -> None:
        self.connection.close()


def test_every_metric_of_the_go_worker_is_served_with_its_type_and_labels(
    dsn: str, conn: Conn
) -> None:
    with _worker_with_endpoint(dsn) as endpoint:
        done = enqueue(conn, "reproq.demo.add", 1, 2)
        failed = enqueue(conn, "reproq.demo.fail", max_attempts=1)
        wait_status(conn, done, "SUCCESSFUL")
        wait_status(conn, failed, "FAILED")

        def scraped() -> dict[str, Any] | None:
            families = {
                f.name: f
                for f in text_string_to_metric_families(_get(f"{endpoint.url}/metrics")[1].decode())
            }
            processed = families.get("reproq_tasks_processed")
            return families if processed is not None and len(processed.samples) >= 2 else None

        families = wait_until(scraped, 20, 0.2)
    for name, (kind, labels) in GO_METRICS.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            assert set(sample.labels) - {"le"} == labels, (name, sample)
        if name != "reproq_queue_wait_duration_seconds":
            assert family.samples, f"{name} has no value"
    # Declared with Go's label but never observed (a claim does not read enqueued_at).
    RuntimeMetrics(process_metrics=False).queue_wait.labels(queue="default")
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert (
        values[("reproq_tasks_processed_total", (("queue", "default"), ("status", "success")))] == 1
    )
    assert (
        values[("reproq_tasks_processed_total", (("queue", "default"), ("status", "failure")))] == 1
    )
    assert (
        values[("reproq_tasks_completed_total", (("queue", "default"), ("status", "failure")))] == 1
    )
    assert values[("reproq_tasks_claimed_total", (("queue", "default"),))] == 2
    assert values[("reproq_db_pool_wait_count_total", ())] == 0
    assert values[("reproq_db_pool_connections_in_use", ())] >= 2
    assert values[("reproq_worker_mem_usage_bytes", ())] > 0


def test_healthz_bodies_are_the_go_workers(dsn: str) -> None:
    with _served(dsn) as endpoint:
        assert _get(f"{endpoint.url}/healthz") == (200, b"ok")
    with _served("postgresql://nobody@127.0.0.1:1/none") as endpoint:
        assert _get(f"{endpoint.url}/healthz") == (503, b"unhealthy")


def test_the_event_stream_carries_the_go_workers_events(dsn: str, conn: Conn) -> None:
    with _worker_with_endpoint(dsn) as endpoint:
        reader = _EventReader(f"{endpoint.url}/events")
        try:
            assert reader.response.status == 200
            assert reader.response.getheader("Content-Type") == "text/event-stream"
            ok = enqueue(conn, "reproq.demo.add", 1, 2)
            retried = enqueue(conn, "reproq.demo.fail", max_attempts=2)
            failed = enqueue(conn, "reproq.demo.fail", max_attempts=1)
            rejected = enqueue(conn, "tests.tasks.sample.add", 1, 2)
            wait_status(conn, ok, "SUCCESSFUL")
            wait_retry(conn, retried, 1)
            wait_status(conn, failed, "FAILED")
            wait_status(conn, rejected, "FAILED")
            events = reader.events(7)
        finally:
            reader.close()
    by_task: dict[int, list[str]] = {}
    for event in events:
        assert {"ts", "level", "type", "msg"} <= set(event) <= GO_EVENT_KEYS
        assert event["type"] in GO_EVENT_TYPES
        assert event["queue"] == "default"
        assert event["worker_id"]
        assert event["metadata"]["role"] == "worker"
        assert event["ts"].endswith("Z")
        by_task.setdefault(event["task_id"], []).append(event["type"])
    assert by_task == {
        ok: ["task_started", "task_success"],
        retried: ["task_started", "task_retry"],
        failed: ["task_started", "task_failed"],
        rejected: ["task_rejected"],
    }
    retry = next(e for e in events if e["type"] == "task_retry")
    assert retry["level"] == "warn" and retry["msg"] == "task failed; retrying"
    assert retry["metadata"]["task_path"] == "reproq.demo.fail"
    assert retry["metadata"]["attempt"] == "1" and retry["metadata"]["max_attempts"] == "2"
    assert retry["metadata"]["next_run"] and retry["metadata"]["error_message"]
    refused = next(e for e in events if e["type"] == "task_rejected")
    assert refused["metadata"]["reason"] == "security_violation"
    assert refused["metadata"]["task_path"] == "tests.tasks.sample.add"


def test_events_are_filtered_by_query_and_a_new_listener_gets_the_recent_ones(
    dsn: str, conn: Conn
) -> None:
    with _worker_with_endpoint(dsn) as endpoint:
        first = enqueue(conn, "reproq.demo.add", 1, 2)
        second = enqueue(conn, "reproq.demo.add", 3, 4)
        wait_status(conn, first, "SUCCESSFUL")
        wait_status(conn, second, "SUCCESSFUL")
        reader = _EventReader(f"{endpoint.url}/events?task_id={second}&queue=default")
        try:
            events = reader.events(2)
        finally:
            reader.close()
        assert [(e["task_id"], e["type"]) for e in events] == [
            (second, "task_started"),
            (second, "task_success"),
        ]
        assert _get(f"{endpoint.url}/events?task_id=abc") == (400, b"invalid task_id")


def _jwt(secret: str, **claims: Any) -> str:
    def part(doc: dict[str, Any]) -> bytes:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(claims)
    signature = hmac.new(secret.encode(), signing, hashlib.sha256).digest()
    return (signing + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def test_events_need_the_token_or_a_dashboard_jwt_signed_with_it(dsn: str) -> None:
    good = _jwt(TOKEN, aud="reproq-tui", iss="reproq-django", superuser=True, exp=time.time() + 60)
    with _served(dsn, auth_token=TOKEN) as endpoint:
        for path in ("/events", "/metrics", "/healthz"):
            assert _get(f"{endpoint.url}{path}")[0] == 401
        assert _get(f"{endpoint.url}/healthz", token=good) == (200, b"ok")
        assert _get(f"{endpoint.url}/metrics", token=TOKEN)[0] == 200
        for token in (TOKEN, good):
            reader = _EventReader(f"{endpoint.url}/events", token=token)
            assert reader.response.status == 200
            reader.close()
        for bad in (
            _jwt(TOKEN, aud="reproq-tui", superuser=False),
            _jwt(TOKEN, aud="someone-else", superuser=True),
            _jwt(TOKEN, aud="reproq-worker", superuser=True, exp=time.time() - 5),
            _jwt(TOKEN, aud="reproq-tui", iss="elsewhere", superuser=True),
            _jwt("another-secret", aud="reproq-tui", superuser=True),
        ):
            assert _get(f"{endpoint.url}/healthz", token=bad)[0] == 401


def test_failed_auth_is_rate_limited_per_client_after_the_limit(dsn: str) -> None:
    with _served(dsn, auth_token=TOKEN, auth_limit=3, auth_window=60.0) as endpoint:
        statuses = [_get(f"{endpoint.url}/metrics", token="wrong")[0] for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        assert _get(f"{endpoint.url}/metrics", token="wrong")[1] == b'{"error": "rate limited"}\n'
        # Good credentials are never limited.
        assert _get(f"{endpoint.url}/metrics", token=TOKEN)[0] == 200


def test_the_rate_limit_window_ends(dsn: str) -> None:
    with _served(dsn, auth_token=TOKEN, auth_limit=1, auth_window=0.5) as endpoint:
        assert [_get(f"{endpoint.url}/healthz")[0] for _ in range(2)] == [401, 429]
        time.sleep(0.6)
        assert _get(f"{endpoint.url}/healthz")[0] == 401


def test_refused_addresses_count_as_failed_attempts_too(dsn: str) -> None:
    with _served(dsn, allowed_cidrs=("192.0.2.0/24",), auth_limit=2) as endpoint:
        statuses = [_get(f"{endpoint.url}/healthz")[0] for _ in range(4)]
    assert statuses == [403, 403, 429, 429]


@pytest.mark.parametrize("limit", [1, 10])
def test_rate_limit_settings_come_from_the_config(limit: int) -> None:
    from reproq.config import load_settings

    settings = load_settings(
        None,
        env={
            "REPROQ_METRICS_AUTH_LIMIT": str(limit),
            "REPROQ_METRICS_AUTH_WINDOW": "2m",
            "REPROQ_METRICS_AUTH_MAX_ENTRIES": "50",
        },
    )
    metrics = settings.metrics
    assert (metrics.auth_limit, metrics.auth_window, metrics.auth_max_entries) == (
        limit,
        120.0,
        50,
    )
