"""The endpoint against a real database: health after a lost monitoring connection,
and the same endpoint served from a worker process."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from reproq.config import MetricsSettings
from reproq.db import Conn
from reproq.runtime.endpoint import Endpoint


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def endpoint(dsn: str) -> Iterator[Endpoint]:
    served = Endpoint(
        MetricsSettings(enabled=True, addr="127.0.0.1:0"), dsn=dsn, process_metrics=False
    )
    served.reader.cache_seconds = 0.0  # every request reads the database
    served.start()
    yield served
    served.close()


def _terminate_monitoring_connection(conn: Conn) -> None:
    row = conn.execute(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
        "WHERE application_name = 'reproq-metrics' AND datname = current_database()"
    ).fetchone()
    assert row is not None and row["n"] == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE application_name = 'reproq-metrics' AND datname = current_database()"
        ).fetchone()
        if left is not None and left["n"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the monitoring connection did not go away")


def test_healthz_stays_ok_after_its_monitoring_connection_is_terminated(
    endpoint: Endpoint, conn: Conn
) -> None:
    assert _get(f"{endpoint.url}/healthz") == (200, b"ok")
    for _ in range(3):
        _terminate_monitoring_connection(conn)
        assert _get(f"{endpoint.url}/healthz") == (200, b"ok")


def test_scrapes_stay_up_after_the_monitoring_connection_is_terminated(
    endpoint: Endpoint, conn: Conn
) -> None:
    assert b"reproq_db_up 1.0" in _get(f"{endpoint.url}/metrics")[1]
    for _ in range(3):
        _terminate_monitoring_connection(conn)
        status, body = _get(f"{endpoint.url}/metrics")
        assert status == 200
        assert b"reproq_db_up 1.0" in body


def test_a_worker_process_serves_metrics_health_and_events_of_its_worker(
    dsn: str, conn: Conn
) -> None:
    from reproq.engine.worker import Worker
    from tests.integration.worker_harness import enqueue, options, wait_status, wait_until

    endpoint = Endpoint(
        MetricsSettings(enabled=True, addr="127.0.0.1:0"), dsn=dsn, process_metrics=False
    )
    worker = Worker(
        dsn,
        options(allowed_task_modules=("reproq.demo.",), shutdown_timeout=30.0, connections=2),
        metrics=endpoint.sink,
    )
    endpoint.watch_worker(worker)
    endpoint.start()
    try:
        status, body = _get(f"{endpoint.url}/healthz?format=json")
        assert status == 503 and json.loads(body)["reasons"] == ["worker is starting"]
        worker.start()
        wait_until(lambda: _get(f"{endpoint.url}/healthz") == (200, b"ok"), 20)
        done = enqueue(conn, "reproq.demo.add", 1, 2)
        wait_status(conn, done, "SUCCESSFUL")
        body = _get(f"{endpoint.url}/metrics")[1].decode()
        assert 'reproq_tasks_processed_total{queue="default",status="success"} 1.0' in body
        slow = enqueue(conn, "reproq.demo.sleep", 3)
        wait_status(conn, slow, "RUNNING")
        worker.request_stop()
        status, body = _get(f"{endpoint.url}/healthz?format=json")
        assert status == 503 and "shutting down" in json.loads(body)["reasons"]
        assert worker.join(30)
    finally:
        worker.request_stop(force=True)
        worker.join(10)
        endpoint.close()
    assert conn.execute(
        "SELECT status FROM task_runs WHERE result_id = %s", (slow,)
    ).fetchone() == {"status": "SUCCESSFUL"}
