"""``/metrics`` and ``/healthz`` of a real ``reproq up`` process."""

from __future__ import annotations

import json
from pathlib import Path

from reproq.db import Conn
from reproq.producer.client import Client
from tests.integration.up_harness import (
    fetch,
    metric,
    parse_metrics,
    running_up,
    toml_string,
    wait_until,
)

TOKEN = "metrics-token-0123456789"


def _config(dsn: str, metrics: str) -> str:
    return f"""
[database]
dsn = {toml_string(dsn)}

[worker]
allowed_task_modules = ["reproq.demo."]
lease_seconds = "10s"
heartbeat_seconds = "1s"
shutdown_timeout = "2s"
poll_interval = "200ms"

[[pools]]
name = "default"
queues = ["default", "emails"]
concurrency = 3

[beat]
enabled = false

[queues.emails]
paused = true

[metrics]
enabled = true
addr = "127.0.0.1:0"
{metrics}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "up.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_metrics_count_processed_tasks_and_read_queue_gauges(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    config = _write(tmp_path, _config(dsn, ""))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        with Client(dsn) as client:
            done = [client.enqueue("reproq.demo.add", [i, 1]) for i in range(5)]
            failed = client.enqueue("reproq.demo.fail", max_attempts=1)
            held = [client.enqueue("reproq.demo.add", [i, 2], queue="emails") for i in range(3)]

        def finished() -> bool:
            row = conn.execute(
                "SELECT count(*) AS n FROM task_runs WHERE status IN ('SUCCESSFUL', 'FAILED')"
            ).fetchone()
            return row is not None and row["n"] == len(done) + 1

        wait_until(finished)

        def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            status, body = fetch(f"{up.metrics_url}/metrics")
            assert status == 200
            samples = parse_metrics(body.decode())
            # Gauges are cached for a couple of seconds: wait for a fresh read.
            depth = metric(samples, "reproq_queue_depth_by_queue", queue="emails", status="READY")
            return samples if depth == len(held) else None

        samples = wait_until(scraped, timeout=30, interval=0.5)
        health_status, health_body = fetch(f"{up.metrics_url}/healthz")
        health_json = fetch(f"{up.metrics_url}/healthz?format=json")[1]
        assert up.stop() == 0

    assert metric(samples, "reproq_tasks_claimed_total", queue="default") == 6
    assert metric(samples, "reproq_tasks_processed_total", status="success", queue="default") == 5
    assert metric(samples, "reproq_tasks_processed_total", status="failure", queue="default") == 1
    assert metric(samples, "reproq_exec_duration_seconds_count", queue="default") == 6
    assert metric(samples, "reproq_tasks_completed_total", status="failure", queue="default") == 1
    assert metric(samples, "reproq_queue_depth_by_queue", queue="default", status="READY") == 0
    assert metric(samples, "reproq_tasks_running_by_queue", queue="emails") == 0
    # Reproq Worker's unlabelled totals.
    assert metric(samples, "reproq_queue_depth") == len(held)
    assert metric(samples, "reproq_tasks_running") == 0
    assert metric(samples, "reproq_queues_paused") == 1
    assert metric(samples, "reproq_concurrency_blocked_tasks") == 0
    assert metric(samples, "reproq_queue_paused", queue="emails") == 1
    assert metric(samples, "reproq_queue_paused", queue="default") == 0
    assert metric(samples, "reproq_workers") == 1
    assert metric(samples, "reproq_concurrency_limit") == 3
    assert metric(samples, "reproq_concurrency_in_use") == 0
    assert metric(samples, "reproq_db_up") == 1
    assert metric(samples, "reproq_component_up", component="pool:default") == 1
    assert metric(samples, "reproq_component_up", component="metrics") == 1
    oldest = metric(samples, "reproq_queue_oldest_ready_age_seconds", queue="emails")
    assert oldest is not None and oldest >= 0
    assert failed not in done

    assert (health_status, health_body) == (200, b"ok")
    doc = json.loads(health_json)
    assert doc["status"] == "ok"
    assert doc["components"] == {"pool:default": "running", "metrics": "running"}


def test_a_configured_token_is_required_and_never_logged(dsn: str, tmp_path: Path) -> None:
    config = _write(tmp_path, _config(dsn, f"auth_token = {toml_string(TOKEN)}"))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        base = up.metrics_url
        assert fetch(f"{base}/metrics")[0] == 401
        assert fetch(f"{base}/healthz")[0] == 401
        assert fetch(f"{base}/metrics", token="not-the-token")[0] == 401
        status, body = fetch(f"{base}/metrics", token=TOKEN)
        assert status == 200 and b"reproq_tasks_processed_total" in body
        assert fetch(f"{base}/healthz", token=TOKEN)[0] == 200
        assert up.stop() == 0
        log = up.log()
    assert "bearer token required" in log
    assert TOKEN not in log


def test_a_client_outside_the_allowed_cidrs_gets_403(dsn: str, tmp_path: Path) -> None:
    config = _write(tmp_path, _config(dsn, 'allowed_cidrs = ["192.0.2.0/24"]'))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        status, body = fetch(f"{up.metrics_url}/metrics")
        assert status == 403
        assert json.loads(body) == {"error": "client address not allowed"}
        assert fetch(f"{up.metrics_url}/healthz")[0] == 403
        assert up.stop() == 0


def test_a_client_inside_the_allowed_cidrs_is_served(dsn: str, tmp_path: Path) -> None:
    config = _write(tmp_path, _config(dsn, 'allowed_cidrs = ["127.0.0.0/8", "::1/128"]'))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        assert fetch(f"{up.metrics_url}/metrics")[0] == 200
        assert up.stop() == 0
