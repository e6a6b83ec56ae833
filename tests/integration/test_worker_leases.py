"""Leases, fencing, heartbeats and reclaim: correct when workers crash or lose the database."""

from __future__ import annotations

import signal
from pathlib import Path

from reproq.db import Conn
from reproq.engine.claim import Claimer
from reproq.engine.completion import Completion, flush
from reproq.engine.lease import Lease, give_back
from reproq.engine.reclaim import reclaim_expired
from reproq.models import TaskStatus
from tests.integration.worker_harness import (
    enqueue,
    errors,
    registered,
    row,
    running,
    start_cli_worker,
    stop_process,
    wait_status,
    wait_until,
)


def _expire(conn: Conn, result_id: int) -> None:
    conn.execute(
        "UPDATE task_runs SET leased_until = now() - interval '1 second' WHERE result_id = %s",
        (result_id,),
    )


def test_heartbeats_keep_extending_the_lease_of_a_long_task(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "sleep", 3.0)
    with running(dsn, lease_seconds=1.0, heartbeat_seconds=0.25):
        first = wait_status(conn, rid, "RUNNING")["leased_until"]
        wait_until(lambda: row(conn, rid)["leased_until"] > first, 5)
        done = wait_status(conn, rid, "SUCCESSFUL", timeout=10)
    # Three seconds of work on a one-second lease: only renewals kept it alive.
    assert done["attempts"] == 1 and done["errors_json"] == []


def test_a_heartbeat_that_fails_once_does_not_kill_the_task(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "sleep", 2.5)
    with running(dsn, lease_seconds=2.0, heartbeat_seconds=0.3) as worker:
        wait_status(conn, rid, "RUNNING")
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
            "WHERE application_name = %s",
            (f"reproq-worker {worker.worker_id}",),
        ).fetchone()
        assert killed is not None and killed["ok"]
        done = wait_status(conn, rid, "SUCCESSFUL", timeout=10)
    assert done["attempts"] == 1 and done["errors_json"] == []
    assert worker.stats().lease_lost == 0


def test_a_task_whose_lease_is_taken_away_is_stopped_and_its_result_discarded(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    rid = enqueue(conn, "cooperative_sleep", 10.0, str(marker))
    with running(dsn, heartbeat_seconds=0.2) as worker:
        wait_until(marker.exists)
        # Someone else now holds the run (as after a reclaim and a new claim elsewhere).
        conn.execute("UPDATE task_runs SET leased_by = 'someone-else' WHERE result_id = %s", (rid,))
        wait_until(lambda: worker.stats().lease_lost == 1, 5)
        assert worker.stats().running == 0
    after = row(conn, rid)
    assert after["status"] == "RUNNING" and after["leased_by"] == "someone-else"
    assert after["errors_json"] == []  # the old holder wrote nothing


def test_a_restarted_worker_with_the_same_id_cannot_finish_the_old_attempt(conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1)
    old = Claimer(worker_id="w", queues=["default"], lease_seconds=60, priority_aging_factor=0)
    (first,) = old.claim(conn, 1).rows
    _expire(conn, rid)
    reclaim_expired(conn, worker_id="reaper")
    new = Claimer(worker_id="w", queues=["default"], lease_seconds=60, priority_aging_factor=0)
    (second,) = new.claim(conn, 1).rows
    assert (first.attempt, second.attempt) == (1, 2)

    stale = Completion(
        result_id=rid, attempt=1, status=TaskStatus.SUCCESSFUL, return_json='"stale"'
    )
    assert flush(conn, "w", [stale]) == set()
    assert give_back(conn, "w", [Lease(result_id=rid, attempt=1, max_attempts=3)]) == set()
    assert row(conn, rid)["status"] == "RUNNING" and row(conn, rid)["attempts"] == 2

    fresh = Completion(result_id=rid, attempt=2, status=TaskStatus.SUCCESSFUL, return_json='"ok"')
    assert flush(conn, "w", [fresh]) == {rid}
    assert row(conn, rid)["return_json"] == "ok"


def test_a_running_worker_that_reuses_an_id_does_not_record_the_old_attempt(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    rid = enqueue(conn, "ignore_cancel", 1.5, str(marker))
    with running(dsn, worker_id="same-id", heartbeat_seconds=5.0, lease_seconds=10.0) as old:
        wait_until(marker.exists)
        # A restarted process with the same id took the run over as attempt 2 (what its
        # claim writes after a reclaim) while attempt 1 still runs in the old one.
        conn.execute(
            "UPDATE task_runs SET attempts = attempts + 1, "
            "leased_until = now() + interval '60 seconds' WHERE result_id = %s",
            (rid,),
        )
        wait_until(lambda: old.stats().lease_lost == 1, 10)
    after = row(conn, rid)
    assert after["status"] == "RUNNING" and after["attempts"] == 2
    assert after["return_json"] is None


def test_an_expired_lease_goes_back_to_ready_with_the_attempt_counted(conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1, max_attempts=3)
    Claimer(worker_id="dead", queues=["default"], lease_seconds=60, priority_aging_factor=0).claim(
        conn, 1
    )
    _expire(conn, rid)
    result = reclaim_expired(conn, worker_id="reaper")
    assert result.requeued == (rid,)
    after = row(conn, rid)
    assert after["status"] == "READY" and after["attempts"] == 1
    assert after["leased_by"] is None and after["leased_until"] is None
    (entry,) = errors(conn, rid)
    assert entry["kind"] == "lease_expiry" and entry["worker_id"] == "dead"
    assert entry["attempt"] == 1 and "dead" in entry["message"]


def test_an_expired_lease_on_the_last_attempt_fails_the_run(conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1, max_attempts=1)
    Claimer(worker_id="dead", queues=["default"], lease_seconds=60, priority_aging_factor=0).claim(
        conn, 1
    )
    _expire(conn, rid)
    assert reclaim_expired(conn, worker_id="reaper").failed == (rid,)
    after = row(conn, rid)
    assert after["status"] == "FAILED" and after["failed_at"] is not None
    assert "expired" in after["last_error"]


def test_a_cancel_requested_run_whose_worker_died_fails_instead_of_running_again(
    conn: Conn,
) -> None:
    rid = enqueue(conn, "add", 1, 1, max_attempts=3)
    Claimer(worker_id="dead", queues=["default"], lease_seconds=60, priority_aging_factor=0).claim(
        conn, 1
    )
    conn.execute("UPDATE task_runs SET cancel_requested = true WHERE result_id = %s", (rid,))
    _expire(conn, rid)
    assert reclaim_expired(conn, worker_id="reaper").failed == (rid,)
    after = row(conn, rid)
    assert after["status"] == "FAILED" and after["attempts"] == 1
    (entry,) = errors(conn, rid)
    assert entry["kind"] == "cancelled"


def test_live_leases_are_not_reclaimed(conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1)
    Claimer(worker_id="alive", queues=["default"], lease_seconds=60, priority_aging_factor=0).claim(
        conn, 1
    )
    assert reclaim_expired(conn, worker_id="reaper").count == 0
    assert row(conn, rid)["status"] == "RUNNING"


def test_a_killed_worker_s_task_is_finished_by_another_worker_exactly_once(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    rid = enqueue(conn, "marked_sleep", str(marker), 1.0)
    victim = start_cli_worker(dsn, "victim")
    try:
        wait_until(marker.exists, 30)
        victim_pid = marker.read_text()
        assert row(conn, rid)["leased_by"] == "victim"
    finally:
        stop_process(victim, signal.SIGKILL)
    assert row(conn, rid)["status"] == "RUNNING"  # nobody gave the lease back
    marker.unlink()
    with running(dsn, worker_id="rescuer"):
        done = wait_status(conn, rid, "SUCCESSFUL", timeout=20)
    assert marker.read_text() != victim_pid  # executed again, in this process
    assert done["leased_by"] is None and done["attempts"] == 2
    assert [e["kind"] for e in done["errors_json"]] == ["lease_expiry"]
    assert done["worker_ids"] == ["victim", "rescuer"]
    count = conn.execute(
        "SELECT count(*) AS n FROM task_runs WHERE status = 'SUCCESSFUL'"
    ).fetchone()
    assert count is not None and count["n"] == 1
    assert registered(conn, "victim")


def test_a_cli_worker_with_no_migrate_refuses_an_unmigrated_database(empty_dsn: str) -> None:
    # Without --no-migrate it migrates first (tests/compat/test_django_first_start.py).
    proc = start_cli_worker(empty_dsn, "early", "--no-migrate")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "reproq migrate" in err.decode()


def test_a_worker_never_reclaims_the_attempts_it_is_still_running(conn: Conn) -> None:
    mine = enqueue(conn, "add", 1, 1)
    theirs = enqueue(conn, "add", 2, 2)
    Claimer(worker_id="w", queues=["default"], lease_seconds=60, priority_aging_factor=0).claim(
        conn, 2
    )
    _expire(conn, mine)
    _expire(conn, theirs)
    result = reclaim_expired(conn, worker_id="w", held=[mine])
    assert result.requeued == (theirs,)
    assert row(conn, mine)["status"] == "RUNNING"


def test_a_worker_cut_off_longer_than_its_lease_keeps_the_task_if_nobody_took_it(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    rid = enqueue(conn, "marked_sleep", str(marker), 2.0)
    with running(dsn, lease_seconds=1.0, heartbeat_seconds=0.5) as worker:
        wait_until(marker.exists)
        _expire(conn, rid)  # as if every heartbeat of the last lease period had failed
        done = wait_status(conn, rid, "SUCCESSFUL", timeout=10)
    assert done["attempts"] == 1 and done["errors_json"] == []
    assert worker.stats().lease_lost == 0


def test_a_dropped_listener_connection_does_not_stop_the_worker(dsn: str, conn: Conn) -> None:
    with running(dsn, poll_interval=0.2, max_poll_interval=5.0) as worker:
        first = enqueue(conn, "add", 1, 1)
        wait_status(conn, first, "SUCCESSFUL")
        killed = conn.execute(
            "SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s) AS k",
            (f"reproq-listen {worker.worker_id}",),
        ).fetchone()
        assert killed is not None and killed["n"] == 1
        second = enqueue(conn, "add", 2, 2)  # may arrive while nobody listens: polling finds it
        wait_status(conn, second, "SUCCESSFUL", timeout=10)

        def listening_again() -> bool:
            found = conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s",
                (f"reproq-listen {worker.worker_id}",),
            ).fetchone()
            return bool(found and found["n"] == 1)

        wait_until(listening_again, 10)
        third = enqueue(conn, "add", 3, 3)
        wait_status(conn, third, "SUCCESSFUL", timeout=10)
