"""A worker with several connections: lanes that share the slots, each on its own lease."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from reproq.db import Conn
from reproq.engine.worker import Worker
from reproq.engine.worker_group import WorkerGroup, make_worker
from reproq.errors import ConfigError
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


def _started(group: WorkerGroup) -> WorkerGroup:
    group.start()
    wait_until(lambda: group.ready.is_set() or group.error is not None, 20)
    assert group.error is None
    return group


def test_lanes_share_the_work_and_each_task_succeeds_once(dsn: str, conn: Conn) -> None:
    ids = [enqueue(conn, "add", i, 1) for i in range(300)]
    group = make_worker(dsn, options(worker_id="grp", concurrency=6, connections=3))
    assert isinstance(group, WorkerGroup)
    assert [lane.worker_id for lane in group.lanes] == ["grp", "grp.2", "grp.3"]
    assert [lane.options.concurrency for lane in group.lanes] == [2, 2, 2]
    _started(group)
    try:
        wait_all(conn, ids, "SUCCESSFUL")
        for lane in ("grp", "grp.2", "grp.3"):
            assert registered(conn, lane)
    finally:
        group.request_stop()
        assert group.join(30)
    done = conn.execute(
        "SELECT worker_ids ->> -1 AS ran_on, count(*) AS n, max(attempts) AS attempts "
        "FROM task_runs WHERE result_id = ANY(%s) GROUP BY ran_on",
        (ids,),
    ).fetchall()
    assert sum(d["n"] for d in done) == 300
    assert {d["attempts"] for d in done} == {1}
    assert {d["ran_on"] for d in done} <= {"grp", "grp.2", "grp.3"}
    assert len(done) >= 2  # more than one lane claimed
    assert group.stats().succeeded == 300
    assert group.error is None


def test_stopping_a_group_drains_every_lane_and_gives_back_the_rest(dsn: str, conn: Conn) -> None:
    long = [enqueue(conn, "cooperative_sleep", 30.0 + i) for i in range(2)]
    short = enqueue(conn, "sleep", 0.5)
    group = _started(WorkerGroup(dsn, options(concurrency=4, connections=2, shutdown_timeout=2.0)))
    for rid in (*long, short):
        wait_status(conn, rid, "RUNNING")
    started = time.monotonic()
    group.request_stop()
    assert group.join(20)
    assert time.monotonic() - started < 10
    assert row(conn, short)["status"] == "SUCCESSFUL"
    for rid in long:
        back = row(conn, rid)
        assert back["status"] == "READY" and back["attempts"] == 0, back
    running = conn.execute("SELECT count(*) AS n FROM task_runs WHERE status = 'RUNNING'")
    assert running.fetchone() == {"n": 0}
    assert group.stats().given_back == 2


def test_a_lane_that_cannot_start_stops_the_group_with_its_error(conn: Conn) -> None:
    group = WorkerGroup(
        "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2",
        options(concurrency=2, connections=2),
    )
    group.start()
    assert group.join(30)
    assert group.error is not None
    assert not group.ready.is_set()


def test_connections_must_fit_the_slots(dsn: str) -> None:
    with pytest.raises(ConfigError, match="connections"):
        make_worker(dsn, options(concurrency=2, connections=3))
    with pytest.raises(ConfigError, match="connections"):
        Worker(dsn, options(concurrency=4, connections=2))  # a Worker is one lane
    assert isinstance(make_worker(dsn, options(connections=1)), Worker)


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
