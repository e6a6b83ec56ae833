"""A worker with several connections: lanes that share the slots, each on its own lease."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from reproq.db import Conn
from reproq.engine.worker import Worker
from reproq.errors import ConfigError
from reproq.executors.mock import MockExecutor
from tests.integration.worker_harness import (
    enqueue,
    options,
    registered,
    row,
    start_cli_worker,
    stop_process,
    wait_all,
    wait_status,
    wait_until,
)


def _started(worker: Worker) -> Worker:
    worker.start()
    wait_until(lambda: worker.ready.is_set() or worker.error is not None, 20)
    assert worker.error is None
    return worker


def test_lanes_share_the_work_and_each_task_succeeds_once(dsn: str, conn: Conn) -> None:
    ids = [enqueue(conn, "add", i, 1) for i in range(300)]
    worker = Worker(dsn, options(worker_id="grp", concurrency=6, connections=3))
    assert [lane.worker_id for lane in worker.lanes] == ["grp", "grp.2", "grp.3"]
    assert [lane.options.concurrency for lane in worker.lanes] == [2, 2, 2]
    _started(worker)
    try:
        wait_all(conn, ids, "SUCCESSFUL")
        for lane in ("grp", "grp.2", "grp.3"):
            assert registered(conn, lane)
    finally:
        worker.request_stop()
        assert worker.join(30)
    done = conn.execute(
        "SELECT worker_ids ->> -1 AS ran_on, count(*) AS n, max(attempts) AS attempts "
        "FROM task_runs WHERE result_id = ANY(%s) GROUP BY ran_on",
        (ids,),
    ).fetchall()
    assert sum(d["n"] for d in done) == 300
    assert {d["attempts"] for d in done} == {1}
    assert {d["ran_on"] for d in done} <= {"grp", "grp.2", "grp.3"}
    assert len(done) >= 2  # more than one lane claimed
    assert worker.stats().succeeded == 300
    assert worker.error is None


def test_stopping_a_worker_drains_every_lane_and_gives_back_the_rest(dsn: str, conn: Conn) -> None:
    long = [enqueue(conn, "cooperative_sleep", 30.0 + i) for i in range(2)]
    short = enqueue(conn, "sleep", 0.5)
    worker = _started(Worker(dsn, options(concurrency=4, connections=2, shutdown_timeout=2.0)))
    for rid in (*long, short):
        wait_status(conn, rid, "RUNNING")
    started = time.monotonic()
    worker.request_stop()
    assert worker.join(20)
    assert time.monotonic() - started < 10
    assert row(conn, short)["status"] == "SUCCESSFUL"
    for rid in long:
        back = row(conn, rid)
        assert back["status"] == "READY" and back["attempts"] == 0, back
    running = conn.execute("SELECT count(*) AS n FROM task_runs WHERE status = 'RUNNING'")
    assert running.fetchone() == {"n": 0}
    assert worker.stats().given_back == 2


def test_a_lane_that_cannot_start_stops_the_worker_with_its_error(conn: Conn) -> None:
    worker = Worker(
        "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2",
        options(concurrency=2, connections=2),
    )
    worker.start()
    assert worker.join(30)
    assert worker.error is not None
    assert not worker.ready.is_set()


def test_connections_must_fit_the_slots(dsn: str) -> None:
    with pytest.raises(ConfigError, match="connections"):
        Worker(dsn, options(concurrency=2, connections=3))
    assert len(Worker(dsn, options(concurrency=4, connections=2)).lanes) == 2
    assert len(Worker(dsn, options(connections=1)).lanes) == 1


def test_an_executor_object_serves_a_one_lane_worker_only(dsn: str) -> None:
    with pytest.raises(ConfigError, match="one lane") as info:
        Worker(dsn, options(concurrency=4, connections=2), executor=MockExecutor())
    assert info.value.key == "connections"


def test_the_cli_worker_runs_lanes_and_drains_them_on_sigterm(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    ids = [enqueue(conn, "add", i, 2) for i in range(50)]
    proc = start_cli_worker(dsn, "cli-lanes", "--connections", "2")
    try:
        wait_all(conn, ids, "SUCCESSFUL")
        wait_until(lambda: registered(conn, "cli-lanes") and registered(conn, "cli-lanes.2"), 20)
    finally:
        code, err = stop_process(proc, signal.SIGTERM)
    assert code == 0, err
