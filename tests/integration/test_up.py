"""``reproq up`` as a real process: start-up, sync, work, reload, shutdown, exit codes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reproq.config import load_settings
from reproq.db import Conn, connect
from reproq.pg.cluster import LocalPostgres, attach_dsn
from reproq.producer.client import Client
from reproq.runtime.health import ComponentState, HealthReport
from reproq.runtime.supervisor import Runtime
from tests.integration.up_harness import (
    ROOT,
    clean_env,
    fetch,
    run_up_once,
    running_up,
    toml_string,
    wait_until,
)

ADD = "reproq.demo.add"
SLEEP = "reproq.demo.sleep"


def _config(dsn: str | None, body: str = "", *, metrics: bool = True) -> str:
    """A fast test config: short leases and heartbeats, two pools, beat, metrics."""
    database = f"[database]\ndsn = {toml_string(dsn)}\n" if dsn is not None else ""
    metrics_table = '[metrics]\nenabled = true\naddr = "127.0.0.1:0"\n' if metrics else ""
    return f"""{database}
[worker]
allowed_task_modules = ["reproq.demo."]
lease_seconds = "10s"
heartbeat_seconds = "1s"
reclaim_interval_seconds = "2s"
shutdown_timeout = "2s"
poll_interval = "200ms"

[[pools]]
name = "default"
queues = ["default"]
concurrency = 4

[[pools]]
name = "slow"
queues = ["slow"]
concurrency = 2

[beat]
enabled = true
tick = "200ms"

{metrics_table}
{body}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _statuses(conn: Conn, ids: list[int]) -> dict[int, str]:
    rows = conn.execute(
        "SELECT result_id, status FROM task_runs WHERE result_id = ANY(%(ids)s)", {"ids": ids}
    ).fetchall()
    return {r["result_id"]: r["status"] for r in rows}


def test_up_runs_enqueued_tasks_and_sigterm_leaves_nothing_running(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    config = _write(tmp_path / "up.toml", _config(dsn))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        with Client(dsn) as client:
            ids = [client.enqueue(ADD, [i, i]) for i in range(20)]
            long_id = client.enqueue(SLEEP, [120], queue="slow")
        wait_until(lambda: set(_statuses(conn, ids).values()) == {"SUCCESSFUL"})
        wait_until(lambda: _statuses(conn, [long_id])[long_id] == "RUNNING")
        returns = conn.execute(
            "SELECT return_json FROM task_runs WHERE result_id = ANY(%(ids)s)", {"ids": ids}
        ).fetchall()
        assert sorted(r["return_json"] for r in returns) == sorted(2 * i for i in range(20))
        up.send(signal.SIGTERM)
        assert up.wait() == 0
        log = up.log()
    running = conn.execute("SELECT count(*) AS n FROM task_runs WHERE status = 'RUNNING'")
    assert running.fetchone() == {"n": 0}
    # The long task did not finish within shutdown_timeout: its lease went back.
    row = conn.execute(
        "SELECT status, leased_by FROM task_runs WHERE result_id = %(id)s", {"id": long_id}
    ).fetchone()
    assert row == {"status": "READY", "leased_by": None}
    assert "SIGTERM: shutting down gracefully" in log
    assert "reproq stopped" in log


def test_a_second_sigterm_gives_leases_back_without_waiting_for_shutdown_timeout(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    config = _write(tmp_path / "up.toml", _config(dsn))
    with running_up(config, tmp_path / "up.log", args=["--shutdown-timeout", "10m"]) as up:
        up.wait_ready()
        with Client(dsn) as client:
            long_id = client.enqueue(SLEEP, [600], queue="slow")
        wait_until(lambda: _statuses(conn, [long_id])[long_id] == "RUNNING")
        up.send(signal.SIGTERM)
        up.wait_for_log("waiting up to 600s")
        # Draining: the endpoint still answers, and tells load balancers to go away.
        status, body = fetch(f"{up.metrics_url}/healthz?format=json")
        assert status == 503
        assert "shutting down" in json.loads(body)["reasons"]
        up.send(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        assert "SIGTERM again: forcing shutdown" in up.log()
    row = conn.execute(
        "SELECT status, leased_by FROM task_runs WHERE result_id = %(id)s", {"id": long_id}
    ).fetchone()
    assert row == {"status": "READY", "leased_by": None}


def test_up_logs_one_line_per_component_with_its_settings(dsn: str, tmp_path: Path) -> None:
    config = _write(tmp_path / "up.toml", _config(dsn))
    with running_up(config, tmp_path / "up.log", args=["--worker-id", "host-a"]) as up:
        up.wait_ready()
        log = up.log()
        assert up.stop() == 0
    assert "pool default: worker_id=host-a-default queues=default concurrency=4" in log
    assert "pool slow: worker_id=host-a-slow queues=slow concurrency=2" in log
    assert "reclaimer: expired leases back to READY every 2s" in log
    assert "beat: tick 0.2s" in log
    assert "metrics: http://127.0.0.1:" in log
    assert "database: " in log and "schema version" in log


def test_a_pool_with_two_connections_runs_two_lanes(dsn: str, conn: Conn, tmp_path: Path) -> None:
    body = _config(dsn).replace("concurrency = 4\n", "concurrency = 4\nconnections = 2\n", 1)
    config = _write(tmp_path / "up.toml", body)
    with running_up(config, tmp_path / "up.log", args=["--worker-id", "host-b"]) as up:
        up.wait_ready()
        with Client(dsn) as client:
            ids = [client.enqueue(ADD, [i, 1]) for i in range(40)]
        wait_until(lambda: set(_statuses(conn, ids).values()) == {"SUCCESSFUL"})
        lanes = conn.execute(
            "SELECT worker_id, concurrency FROM reproq_workers WHERE worker_id LIKE %s "
            "ORDER BY worker_id",
            ("host-b-default%",),
        ).fetchall()
        log = up.log()
        assert up.stop() == 0
    assert lanes == [
        {"worker_id": "host-b-default", "concurrency": 2},
        {"worker_id": "host-b-default.2", "concurrency": 2},
    ]
    assert (
        "pool default: worker_id=host-b-default queues=default concurrency=4 connections=2" in log
    )
    running = conn.execute("SELECT count(*) AS n FROM task_runs WHERE status = 'RUNNING'")
    assert running.fetchone() == {"n": 0}


def test_up_syncs_queue_pause_and_rate_limits_from_the_file(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    body = """
[queues.slow]
paused = true
reason = "maintenance window"
rate = 5
burst = 7

[limits]
"task:reproq.demo.add" = { rate = 50, burst = 10 }
"""
    config = _write(tmp_path / "up.toml", _config(dsn, body))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        controls = conn.execute(
            "SELECT queue_name, paused, reason FROM reproq_queue_controls"
        ).fetchall()
        limits = {
            r["key"]: (r["tokens_per_second"], r["burst_size"])
            for r in conn.execute("SELECT key, tokens_per_second, burst_size FROM rate_limits")
        }
        assert up.stop() == 0
    assert controls == [{"queue_name": "slow", "paused": True, "reason": "maintenance window"}]
    assert limits["queue:slow"] == (5.0, 7)
    assert limits["task:reproq.demo.add"] == (50.0, 10)


def test_a_queue_the_file_does_not_pause_keeps_an_operator_pause(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    from reproq.ops.admin import pause_queue

    pause_queue(conn, "default", "operator")
    config = _write(tmp_path / "up.toml", _config(dsn, "[queues.default]\nrate = 100\n"))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        assert up.stop() == 0
    row = conn.execute(
        "SELECT paused, reason FROM reproq_queue_controls WHERE queue_name = 'default'"
    ).fetchone()
    assert row == {"paused": True, "reason": "operator"}


def _schedules(conn: Conn) -> dict[str, bool]:
    return {
        r["name"]: r["enabled"]
        for r in conn.execute("SELECT name, enabled FROM periodic_tasks").fetchall()
    }


YEARLY_A = """
[[schedules]]
name = "yearly-a"
cron = "0 0 1 1 *"
task = "reproq.demo.add"
args = [1, 2]
"""

YEARLY_B = """
[[schedules]]
name = "yearly-b"
cron = "0 0 1 1 *"
timezone = "Europe/Paris"
task = "reproq.demo.add"
args = [3, 4]
"""


def test_sighup_reloads_schedules_queues_and_limits_without_a_restart(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    first = YEARLY_A + '\n[queues.slow]\npaused = true\n\n[limits]\n"global" = { rate = 100 }\n'
    config = _write(tmp_path / "up.toml", _config(dsn, first))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        assert _schedules(conn) == {"yearly-a": True}
        pid_before = up.proc.pid
        second = YEARLY_B + '\n[queues.slow]\npaused = false\n\n[limits]\n"queue:default" = 9\n'
        _write(config, _config(dsn, second))
        up.send(signal.SIGHUP)
        up.wait_for_log("rate limit global: removed")
        up.wait_for_log("reload: done")
        assert _schedules(conn) == {"yearly-a": False, "yearly-b": True}
        paused = conn.execute(
            "SELECT paused FROM reproq_queue_controls WHERE queue_name = 'slow'"
        ).fetchone()
        limits = {
            r["key"]: r["tokens_per_second"]
            for r in conn.execute("SELECT key, tokens_per_second FROM rate_limits")
        }
        # Still the same process, still serving.
        with Client(dsn) as client:
            task_id = client.enqueue(ADD, [20, 22])
        wait_until(lambda: _statuses(conn, [task_id])[task_id] == "SUCCESSFUL")
        assert up.proc.pid == pid_before and up.proc.poll() is None
        assert up.stop() == 0
        log = up.log()
    assert paused == {"paused": False}
    assert limits["queue:default"] == 9.0
    assert limits["global"] == 0.0  # the global row stays, reset to "no limit"
    assert "schedules created: yearly-b" in log
    assert "schedules disabled (no longer in the config): yearly-a" in log
    assert "queue slow: resumed by the config" in log


def test_sighup_with_an_invalid_file_keeps_the_running_config(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    config = _write(tmp_path / "up.toml", _config(dsn, YEARLY_A))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        _write(config, _config(dsn, YEARLY_A.replace('cron = "0 0 1 1 *"', 'cron = "61 * * * *"')))
        up.send(signal.SIGHUP)
        log = up.wait_for_log("reload: the config is invalid, keeping the running one")
        status, body = fetch(f"{up.metrics_url}/healthz")
        assert (status, body) == (200, b"ok")
        assert up.proc.poll() is None
        assert up.stop() == 0
    error_line = next(line for line in log.splitlines() if "config is invalid" in line)
    assert f"{config}:" in error_line and "cron" in error_line
    assert _schedules(conn) == {"yearly-a": True}


def test_a_config_error_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "bad.toml",
        '[database]\ndsn = "postgresql://x@127.0.0.1:1/x"\n\n[worker]\nconcurency = 3\n',
    )
    result = run_up_once(config)
    assert result.returncode == 2
    assert f"{config}:5: worker.concurency: unknown key" in result.stderr
    assert "did you mean" in result.stderr


def test_an_unreachable_database_exits_1_with_the_dsn_redacted(tmp_path: Path) -> None:
    dsn = "postgresql://reproq:pw-very-secret@127.0.0.1:1/nothing"
    config = _write(tmp_path / "up.toml", _config(dsn, metrics=False))
    result = run_up_once(config)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("reproq: error:")]
    assert len(errors) == 1
    assert "cannot connect to postgresql://reproq:***@127.0.0.1:1/nothing" in errors[0]
    assert "pw-very-secret" not in result.stderr + result.stdout


def test_no_migrate_refuses_a_database_without_the_schema(empty_dsn: str, tmp_path: Path) -> None:
    config = _write(tmp_path / "up.toml", _config(empty_dsn, metrics=False))
    result = run_up_once(config, args=["--no-migrate"])
    assert result.returncode == 1
    assert "reproq migrate" in result.stderr


def test_up_migrates_an_empty_database(empty_dsn: str, tmp_path: Path) -> None:
    config = _write(tmp_path / "up.toml", _config(empty_dsn, metrics=False))
    with running_up(config, tmp_path / "up.log") as up:
        up.wait_ready()
        assert up.stop() == 0
    with connect(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) AS n FROM task_runs").fetchone() == {"n": 0}


# --------------------------------------------------------------------------- embedded


@pytest.fixture
def data_root() -> Iterator[Path]:
    """A directory the cluster account can traverse (pytest's tmp_path is private to
    root); any cluster left running in it is stopped afterwards."""
    root = Path(tempfile.mkdtemp(prefix="reproq-up-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        for pid_file in root.rglob("postmaster.pid"):
            LocalPostgres(pid_file.parent).stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_without_a_dsn_up_runs_an_embedded_postgres_that_keeps_its_data(
    data_root: Path, tmp_path: Path
) -> None:
    data_dir = data_root / "pg"
    body = f"[database]\nembedded_data_dir = {toml_string(str(data_dir))}\n"
    config = _write(tmp_path / "dev.toml", _config(None, metrics=False) + "\n" + body)

    with running_up(config, tmp_path / "first.log") as up:
        up.wait_ready(timeout=180)
        embedded_dsn = attach_dsn(data_dir)
        assert embedded_dsn is not None
        with Client(embedded_dsn) as client:
            task_id = client.enqueue(ADD, [40, 2])
            fan_id = client.enqueue("reproq.demo.fan_out", kwargs={"n": 3})
        with connect(embedded_dsn) as conn:
            wait_until(lambda: _statuses(conn, [task_id]).get(task_id) == "SUCCESSFUL")
            # A task enqueueing more work reaches the embedded database too.
            wait_until(lambda: _statuses(conn, [fan_id]).get(fan_id) == "SUCCESSFUL")
            row = conn.execute(
                "SELECT return_json FROM task_runs WHERE result_id = %(id)s", {"id": fan_id}
            ).fetchone()
            assert row is not None
            children = row["return_json"]
            assert len(children) == 3
            wait_until(lambda: set(_statuses(conn, children).values()) == {"SUCCESSFUL"})
        # Another command given the same config reaches the same database.
        status = run_status(config)
        assert status.returncode == 0, status.stderr
        assert "default" in status.stdout
        assert up.stop() == 0
        assert "embedded PostgreSQL: " in up.log()
    assert attach_dsn(data_dir) is None
    assert not LocalPostgres(data_dir).is_running()

    with running_up(config, tmp_path / "second.log") as up:
        up.wait_ready(timeout=120)
        embedded_dsn = attach_dsn(data_dir)
        assert embedded_dsn is not None
        with connect(embedded_dsn) as conn:
            row = conn.execute(
                "SELECT status, return_json FROM task_runs WHERE result_id = %(id)s",
                {"id": task_id},
            ).fetchone()
        assert up.stop() == 0
    assert row == {"status": "SUCCESSFUL", "return_json": 42}
    assert not LocalPostgres(data_dir).is_running()


def run_status(config: Path) -> subprocess.CompletedProcess[str]:
    """``reproq status --config FILE`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "reproq", "status", "--config", str(config)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------- supervision


class _FlakyService:
    """Dies on its first run; runs normally (until stopped) afterwards."""

    runs = 0

    def run(self, stop: threading.Event) -> None:
        type(self).runs += 1
        if type(self).runs == 1:
            raise RuntimeError("flaky component crashed on purpose")
        stop.wait()


def test_a_component_that_dies_is_reported_unhealthy_then_restarted(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runtime exports REPROQ_DSN for its tasks; undo that after the test.
    monkeypatch.setenv("REPROQ_DSN", dsn)
    config = _write(tmp_path / "up.toml", _config(dsn))
    settings = load_settings(config)
    runtime = Runtime(settings)
    _FlakyService.runs = 0
    runtime.add_component("flaky", _FlakyService)
    runtime.start()
    runner = threading.Thread(target=runtime.run, daemon=True)
    runner.start()
    try:

        def unhealthy() -> HealthReport | None:
            report = runtime.health()
            return None if report.ok else report

        report = wait_until(unhealthy, timeout=10, interval=0.02)
        assert report.http_status == 503
        assert "flaky died and is being restarted" in report.reasons
        wait_until(
            lambda: (
                runtime.component_states()["flaky"] is ComponentState.RUNNING
                and _FlakyService.runs == 2
            )
        )
        assert runtime.health().ok
    finally:
        runtime.request_stop()
        runner.join(60)
    assert not runner.is_alive()
    assert runtime.component_states()["flaky"] is ComponentState.STOPPED


def test_an_embedded_postgres_left_by_a_killed_up_is_adopted_and_stopped_next_time(
    data_root: Path, tmp_path: Path
) -> None:
    data_dir = data_root / "pg"
    body = f"[database]\nembedded_data_dir = {toml_string(str(data_dir))}\n"
    config = _write(tmp_path / "dev.toml", _config(None, metrics=False) + "\n" + body)
    with running_up(config, tmp_path / "killed.log") as up:
        up.wait_ready(timeout=180)
        up.send(signal.SIGKILL)
        up.wait()
    assert LocalPostgres(data_dir).is_running()

    with running_up(config, tmp_path / "adopting.log") as up:
        up.wait_ready()
        assert "adopted" in up.log()
        assert up.stop() == 0
    assert not LocalPostgres(data_dir).is_running()
