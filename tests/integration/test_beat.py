"""Beat against a real PostgreSQL: enqueueing, misfire policies, racing beats, leadership."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reproq.cli import main
from reproq.clock import FakeClock
from reproq.db import Conn, connect
from reproq.errors import ConfigError, DatabaseError
from reproq.schedule.beat import Beat, current_leader
from reproq.schedule.sync import SyncReport, sync_schedules

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def add_schedule(
    conn: Conn,
    name: str,
    *,
    cron: str = "*/5 * * * *",
    next_run_at: datetime = T0,
    payload: Any = None,
    task_path: str = "myapp.tasks.report",
    misfire_policy: str = "latest",
    misfire_limit: int = 100,
    enabled: bool = True,
) -> None:
    """Insert a periodic_tasks row the way reproq-django writes one."""
    conn.execute(
        "INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name,"
        " priority, max_attempts, concurrency_key, concurrency_limit, last_run_at, next_run_at,"
        " enabled, misfire_policy, misfire_limit, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s::jsonb, 'default', 0, 3, NULL, 0, NULL, %s, %s, %s, %s,"
        " now(), now())",
        (
            name,
            cron,
            task_path,
            json.dumps({} if payload is None else payload),
            next_run_at,
            enabled,
            misfire_policy,
            misfire_limit,
        ),
    )


def runs_of(conn: Conn, name: str) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT result_id, status, spec_json, spec_hash FROM task_runs"
        " WHERE spec_json->>'periodic_name' = %s ORDER BY spec_json->>'scheduled_at'",
        (name,),
    ).fetchall()


def scheduled(conn: Conn, name: str) -> list[str]:
    return [r["spec_json"]["scheduled_at"] for r in runs_of(conn, name)]


def schedule_row(conn: Conn, name: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM periodic_tasks WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return row


def iso(dt: datetime) -> str:
    return dt.isoformat()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + timedelta(seconds=5))


@pytest.fixture
def beat(dsn: str, clock: FakeClock) -> Iterator[Beat]:
    with Beat(dsn, clock=clock, name="test-beat") as b:
        yield b


# -- enqueueing ------------------------------------------------------------------------


def test_due_schedule_is_enqueued_with_periodic_name_and_scheduled_at(
    beat: Beat, conn: Conn, clock: FakeClock
) -> None:
    add_schedule(conn, "report", payload={"args": [1, "x"], "kwargs": {"full": True}})
    assert beat.run_once() == 1
    (run,) = runs_of(conn, "report")
    spec = run["spec_json"]
    assert run["status"] == "READY"
    assert spec["task_path"] == "myapp.tasks.report"
    assert spec["args"] == [1, "x"]
    assert spec["kwargs"] == {"full": True}
    assert spec["periodic_name"] == "report"
    assert spec["scheduled_at"] == "2026-01-01T10:00:00+00:00"
    row = schedule_row(conn, "report")
    assert row["next_run_at"] == T0 + timedelta(minutes=5)
    assert row["last_run_at"] == T0  # the fire time enqueued, not when beat ran
    # Nothing more is due until 10:05.
    assert beat.run_once() == 0
    clock.set(T0 + timedelta(minutes=5))
    assert beat.run_once() == 1
    assert scheduled(conn, "report") == [iso(T0), iso(T0 + timedelta(minutes=5))]


def test_each_fire_time_has_its_own_spec_hash(beat: Beat, conn: Conn, clock: FakeClock) -> None:
    add_schedule(conn, "tick", cron="* * * * *")
    for minute in range(3):
        clock.set(T0 + timedelta(minutes=minute, seconds=1))
        assert beat.run_once() == 1
    hashes = {r["spec_hash"] for r in runs_of(conn, "tick")}
    assert len(hashes) == 3


def test_payload_forms_map_to_args_and_kwargs(beat: Beat, conn: Conn) -> None:
    add_schedule(conn, "bare-array", payload=[1, 2])
    add_schedule(conn, "plain-object", payload={"user": 7})
    add_schedule(conn, "envelope-args-only", payload={"args": ["a"]})
    add_schedule(conn, "empty", payload={})
    assert beat.run_once() == 4
    got = {
        name: (
            runs_of(conn, name)[0]["spec_json"]["args"],
            runs_of(conn, name)[0]["spec_json"]["kwargs"],
        )
        for name in ("bare-array", "plain-object", "envelope-args-only", "empty")
    }
    assert got == {
        "bare-array": ([1, 2], {}),
        "plain-object": ([], {"user": 7}),
        "envelope-args-only": (["a"], {}),
        "empty": ([], {}),
    }


def test_disabled_and_future_schedules_are_not_enqueued(beat: Beat, conn: Conn) -> None:
    add_schedule(conn, "off", enabled=False)
    add_schedule(conn, "later", next_run_at=T0 + timedelta(hours=1))
    assert beat.run_once() == 0
    assert runs_of(conn, "off") == [] and runs_of(conn, "later") == []


def test_cron_tz_schedule_fires_at_local_wall_time(
    beat: Beat, conn: Conn, clock: FakeClock
) -> None:
    # 09:00 in New York is 14:00 UTC in January.
    add_schedule(conn, "ny", cron="CRON_TZ=America/New_York 0 9 * * *", next_run_at=T0)
    assert beat.run_once() == 1
    assert schedule_row(conn, "ny")["next_run_at"] == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)


def test_broken_row_does_not_block_other_schedules(
    beat: Beat, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    add_schedule(conn, "a-broken-cron", cron="not a cron")
    add_schedule(conn, "b-bad-task-path", task_path="no_dots")
    add_schedule(conn, "c-good")
    with caplog.at_level("ERROR", logger="reproq.beat"):
        assert beat.run_once() == 1
    assert len(runs_of(conn, "c-good")) == 1
    assert "a-broken-cron is not enqueued" in caplog.text
    assert "b-bad-task-path skipped 1 run(s)" in caplog.text
    # The bad cron stays due (so a fix takes effect at once); the bad task path moved on.
    assert schedule_row(conn, "a-broken-cron")["next_run_at"] == T0
    assert schedule_row(conn, "b-bad-task-path")["next_run_at"] == T0 + timedelta(minutes=5)


def test_each_enqueued_fire_is_logged(
    beat: Beat, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    add_schedule(conn, "logged")
    with caplog.at_level("INFO", logger="reproq.beat"):
        beat.run_once()
    (run,) = runs_of(conn, "logged")
    assert (
        f"enqueued logged scheduled_at=2026-01-01T10:00:00+00:00 result_id={run['result_id']}"
        in caplog.text
    )


def test_more_due_schedules_than_one_batch_are_all_enqueued(beat: Beat, conn: Conn) -> None:
    for i in range(250):
        add_schedule(conn, f"bulk-{i:03d}")
    assert beat.run_once() == 250
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count is not None and count["n"] == 250


def test_beat_reconnects_after_its_work_connection_is_killed(
    beat: Beat, conn: Conn, clock: FakeClock
) -> None:
    add_schedule(conn, "resilient", cron="* * * * *")
    assert beat.run_once() == 1
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'reproq-beat test-beat'"
    )
    clock.advance(60)
    with pytest.raises(DatabaseError):
        beat.run_once()
    # The failed tick changed nothing; the next one reconnects and catches up.
    assert beat.run_once() == 1
    assert scheduled(conn, "resilient") == [iso(T0), iso(T0 + timedelta(minutes=1))]


# -- misfire policies after downtime ---------------------------------------------------


def test_misfire_policies_after_downtime(beat: Beat, conn: Conn, clock: FakeClock) -> None:
    # Every 10 minutes from 10:00; beat was down until 11:05, so 10:00..11:00 (7) are due.
    for policy, limit in (("latest", 100), ("all", 100), ("skip", 100)):
        add_schedule(conn, policy, cron="*/10 * * * *", misfire_policy=policy, misfire_limit=limit)
    add_schedule(conn, "all-limited", cron="*/10 * * * *", misfire_policy="all", misfire_limit=3)
    clock.set(T0 + timedelta(hours=1, minutes=5))
    assert beat.run_once() == 1 + 7 + 0 + 3

    def at(minutes: int) -> str:
        return iso(T0 + timedelta(minutes=minutes))

    assert scheduled(conn, "latest") == [at(60)]
    assert scheduled(conn, "all") == [at(m) for m in range(0, 61, 10)]
    assert scheduled(conn, "skip") == []
    assert scheduled(conn, "all-limited") == [at(40), at(50), at(60)]
    for name in ("latest", "all", "skip", "all-limited"):
        assert schedule_row(conn, name)["next_run_at"] == T0 + timedelta(minutes=70)
    assert schedule_row(conn, "skip")["last_run_at"] is None
    # After catching up, every policy runs the next fire time normally.
    clock.set(T0 + timedelta(minutes=70, seconds=3))
    assert beat.run_once() == 4


def test_skip_policy_still_runs_a_fire_time_seen_on_time(
    beat: Beat, conn: Conn, clock: FakeClock
) -> None:
    add_schedule(conn, "skip", cron="*/10 * * * *", misfire_policy="skip")
    clock.set(T0 + timedelta(seconds=20))
    assert beat.run_once() == 1
    assert scheduled(conn, "skip") == [iso(T0)]


# -- racing beats ----------------------------------------------------------------------


def test_racing_beats_enqueue_each_fire_time_exactly_once(dsn: str, conn: Conn) -> None:
    clock = FakeClock(T0 - timedelta(seconds=30))
    names = [f"race-{i}" for i in range(6)]
    for i, name in enumerate(names):
        policy = ("all", "latest", "skip")[i % 3]
        add_schedule(conn, name, cron="* * * * *", misfire_policy=policy)
    beats = [Beat(dsn, clock=clock, name=f"racer-{i}") for i in range(2)]
    iterations = 40
    barrier = threading.Barrier(len(beats) + 1)
    totals = [0] * len(beats)
    errors: list[BaseException] = []

    def racer(index: int) -> None:
        try:
            for _ in range(iterations):
                barrier.wait()  # start of an iteration: both tick at the same "now"
                totals[index] += beats[index].run_once()
                barrier.wait()  # end of the iteration
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(len(beats))]
    for thread in threads:
        thread.start()
    try:
        for _ in range(iterations):
            barrier.wait()
            barrier.wait()
            # Finish the runs so the spec_hash dedup cannot hide a duplicate insert.
            conn.execute("UPDATE task_runs SET status = 'SUCCESSFUL' WHERE status = 'READY'")
            clock.advance(30)
    finally:
        for thread in threads:
            thread.join(timeout=60)
        for b in beats:
            b.close()
    assert not errors
    rows = conn.execute(
        "SELECT spec_json->>'periodic_name' AS name, spec_json->>'scheduled_at' AS at"
        " FROM task_runs"
    ).fetchall()
    counts = Counter((r["name"], r["at"]) for r in rows)
    assert counts and max(counts.values()) == 1
    assert sum(totals) == len(rows)
    # The clock moved 30 s per iteration from 09:59:30: fire times 10:00 .. 10:19.
    expected = [iso(T0 + timedelta(minutes=m)) for m in range(20)]
    for name in names:
        assert sorted(at for (n, at) in counts if n == name) == expected


# -- leadership ------------------------------------------------------------------------


@dataclass
class RunningBeat:
    beat: Beat
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> RunningBeat:
        self.thread = threading.Thread(target=self.beat.run, args=(self.stop,), daemon=True)
        self.thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)


@pytest.fixture
def running_beats(dsn: str) -> Iterator[Callable[[str], RunningBeat]]:
    started: list[RunningBeat] = []

    def start(name: str) -> RunningBeat:
        rb = RunningBeat(Beat(dsn, tick=0.2, name=name)).start()
        started.append(rb)
        return rb

    yield start
    for rb in started:
        rb.halt()


def leaders(*beats: RunningBeat) -> list[RunningBeat]:
    return [b for b in beats if b.beat.is_leader]


def test_exactly_one_of_several_beats_leads(
    running_beats: Callable[[str], RunningBeat], conn: Conn
) -> None:
    beats = [running_beats(f"b{i}") for i in range(3)]
    assert wait_for(lambda: len(leaders(*beats)) == 1)
    time.sleep(1.0)
    assert len(leaders(*beats)) == 1
    info = current_leader(conn)
    assert info is not None
    assert info.application_name == f"reproq-beat-lock {leaders(*beats)[0].beat.name}"


def test_follower_takes_over_when_leader_connection_is_killed(
    running_beats: Callable[[str], RunningBeat], conn: Conn
) -> None:
    first, second = running_beats("first"), running_beats("second")
    assert wait_for(lambda: len(leaders(first, second)) == 1)
    (old,) = leaders(first, second)
    new = second if old is first else first
    info = current_leader(conn)
    assert info is not None
    killed_at = time.monotonic()
    conn.execute("SELECT pg_terminate_backend(%s)", (info.pid,))
    assert wait_for(lambda: new.beat.is_leader, timeout=15)
    assert time.monotonic() - killed_at < 15
    # The old leader notices, steps down and stays a follower.
    assert wait_for(lambda: not old.beat.is_leader, timeout=15)
    after = current_leader(conn)
    assert after is not None and after.pid != info.pid
    # It reconnected: when the new leader goes away, the old one leads again.
    new.halt()
    assert wait_for(lambda: old.beat.is_leader, timeout=15)


def test_stopped_leader_hands_over_and_new_leader_enqueues(
    running_beats: Callable[[str], RunningBeat], conn: Conn
) -> None:
    first, second = running_beats("first"), running_beats("second")
    assert wait_for(lambda: len(leaders(first, second)) == 1)
    (old,) = leaders(first, second)
    new = second if old is first else first
    old.halt()
    assert not old.beat.is_leader
    assert wait_for(lambda: new.beat.is_leader, timeout=15)
    add_schedule(conn, "after-handover", next_run_at=datetime.now(UTC) - timedelta(seconds=1))
    assert wait_for(lambda: len(runs_of(conn, "after-handover")) == 1, timeout=15)


# -- syncing [[schedules]] -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Sched:
    """Stands in for reproq.config.ScheduleSettings."""

    name: str
    cron: str = "0 * * * *"
    timezone: str = "UTC"
    task: str = "myapp.tasks.report"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    enabled: bool = True
    misfire: str = "latest"
    misfire_limit: int = 100


def test_sync_creates_rows_with_cron_tz_stored_form(conn: Conn) -> None:
    report = sync_schedules(
        conn,
        [
            Sched(name="utc", args=(1,), kwargs={"a": "b"}),
            Sched(
                name="berlin",
                cron="30 2 * * *",
                timezone="Europe/Berlin",
                misfire="all",
                misfire_limit=5,
            ),
        ],
        now=T0,
    )
    assert report == SyncReport(created=("berlin", "utc"))
    utc_row = schedule_row(conn, "utc")
    assert utc_row["cron_expr"] == "0 * * * *"
    assert utc_row["payload_json"] == {"args": [1], "kwargs": {"a": "b"}}
    assert utc_row["next_run_at"] == T0 + timedelta(hours=1)
    assert utc_row["enabled"] is True
    berlin = schedule_row(conn, "berlin")
    assert berlin["cron_expr"] == "CRON_TZ=Europe/Berlin 30 2 * * *"
    assert berlin["next_run_at"] == datetime(2026, 1, 2, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert (berlin["misfire_policy"], berlin["misfire_limit"]) == ("all", 5)


def test_sync_keeps_next_run_at_unless_cron_or_zone_changes(conn: Conn) -> None:
    sync_schedules(conn, [Sched(name="a"), Sched(name="b"), Sched(name="c")], now=T0)
    later = T0 + timedelta(minutes=90)
    report = sync_schedules(
        conn,
        [
            Sched(name="a", priority=5),  # settings change only
            Sched(name="b", cron="*/15 * * * *"),  # cron change
            Sched(name="c"),  # nothing
        ],
        now=later,
    )
    assert report == SyncReport(updated=("a", "b"), rescheduled=("b",), unchanged=("c",))
    assert schedule_row(conn, "a")["next_run_at"] == T0 + timedelta(hours=1)
    assert schedule_row(conn, "a")["priority"] == 5
    assert schedule_row(conn, "b")["next_run_at"] == later + timedelta(minutes=15)
    zone = sync_schedules(conn, [Sched(name="a", priority=5, timezone="Asia/Tokyo")], now=later)
    assert zone.rescheduled == ("a",)
    assert schedule_row(conn, "a")["cron_expr"] == "CRON_TZ=Asia/Tokyo 0 * * * *"


def test_sync_disables_only_its_own_schedules_removed_from_the_config(conn: Conn) -> None:
    add_schedule(conn, "from-django")
    first = sync_schedules(conn, [Sched(name="kept"), Sched(name="dropped")], now=T0)
    assert first.disabled == ()
    report = sync_schedules(conn, [Sched(name="kept")], now=T0)
    assert report.disabled == ("dropped",)
    assert schedule_row(conn, "dropped")["enabled"] is False
    assert schedule_row(conn, "from-django")["enabled"] is True
    assert schedule_row(conn, "kept")["managed_by"] == "reproq-config"
    assert schedule_row(conn, "from-django")["managed_by"] is None
    # Already disabled rows are not reported again, and nothing is deleted.
    assert sync_schedules(conn, [Sched(name="kept")], now=T0).disabled == ()
    total = conn.execute("SELECT count(*) AS n FROM periodic_tasks").fetchone()
    assert total is not None and total["n"] == 3


def test_sync_never_changes_a_row_of_the_same_name_it_did_not_create(conn: Conn) -> None:
    add_schedule(conn, "report", cron="0 3 * * *")
    before = schedule_row(conn, "report")
    report = sync_schedules(conn, [Sched(name="report", priority=9)], now=T0)
    assert report == SyncReport(not_owned=("report",))
    assert schedule_row(conn, "report") == before
    # Handed to the config by marking it, the row follows the config from then on.
    conn.execute("UPDATE periodic_tasks SET managed_by = 'reproq-config' WHERE name = 'report'")
    assert sync_schedules(conn, [Sched(name="report", priority=9)], now=T0).updated == ("report",)
    assert schedule_row(conn, "report")["priority"] == 9


def test_sync_reenabling_a_schedule_does_not_replay_the_disabled_period(conn: Conn) -> None:
    sync_schedules(conn, [Sched(name="s", enabled=False)], now=T0)
    later = T0 + timedelta(days=3, minutes=10)
    report = sync_schedules(conn, [Sched(name="s")], now=later)
    assert report.rescheduled == ("s",)
    assert schedule_row(conn, "s")["next_run_at"] == later + timedelta(minutes=50)


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        ([Sched(name="x"), Sched(name="x")], "schedules.x: duplicate schedule name 'x'"),
        ([Sched(name="x", cron="* * *")], "schedules.x.cron: cron expression '* * *' has 3 fields"),
        (
            [Sched(name="x", timezone="Mars/Base")],
            "schedules.x.cron: unknown time zone 'Mars/Base'",
        ),
        ([Sched(name="x", misfire="never")], "schedules.x.misfire: unknown misfire policy 'never'"),
        ([Sched(name="x", task="nodots")], "schedules.x: task path 'nodots'"),
    ],
)
def test_sync_rejects_bad_schedules_without_writing(
    conn: Conn, schedules: list[Sched], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        sync_schedules(conn, schedules, now=T0)
    assert message in str(info.value)
    total = conn.execute("SELECT count(*) AS n FROM periodic_tasks").fetchone()
    assert total is not None and total["n"] == 0


def test_synced_schedule_is_enqueued_by_beat(dsn: str, conn: Conn) -> None:
    sync_schedules(conn, [Sched(name="hourly", args=("r",))], now=T0)
    clock = FakeClock(T0 + timedelta(hours=1, seconds=2))
    with Beat(dsn, clock=clock) as b:
        assert b.run_once() == 1
    (run,) = runs_of(conn, "hourly")
    assert run["spec_json"]["args"] == ["r"]
    assert run["spec_json"]["scheduled_at"] == iso(T0 + timedelta(hours=1))


# -- the command -----------------------------------------------------------------------


def test_beat_once_command_enqueues_and_prints_the_count(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    add_schedule(conn, "cli-1", next_run_at=now - timedelta(minutes=1))
    add_schedule(conn, "cli-2", next_run_at=now - timedelta(minutes=1))
    add_schedule(conn, "cli-later", next_run_at=now + timedelta(hours=1))
    assert main(["beat", "--dsn", dsn, "--interval", "30s", "--once"]) == 0
    assert capsys.readouterr().out.strip() == "enqueued 2"
    assert main(["beat", "--dsn", dsn, "--once"]) == 0
    assert capsys.readouterr().out.strip() == "enqueued 0"


def test_beat_command_rejects_a_bad_interval(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["beat", "--dsn", dsn, "--interval", "soon", "--once"]) == 2
    assert "--interval" in capsys.readouterr().err


def test_beat_command_stops_cleanly_on_sigterm(dsn: str, conn: Conn) -> None:
    add_schedule(conn, "proc", next_run_at=datetime.now(UTC) - timedelta(seconds=5))
    env = {**os.environ, "DATABASE_URL": dsn}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reproq", "beat", "--interval", "200ms", "--name", "proc-beat"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(
            lambda: (
                proc.poll() is not None
                or (len(runs_of(conn, "proc")) == 1 and current_leader(conn) is not None)
            ),
            timeout=30,
        )
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "beat proc-beat is now the leader" in err
    assert "beat proc-beat stepped down" in err
    # The lock went with the process.
    with connect(dsn) as check:
        assert current_leader(check) is None
