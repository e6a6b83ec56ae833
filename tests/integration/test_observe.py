"""Read-only views (reproq.ops.observe): summary, queues, task listings, detail, rates."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from reproq.db import Conn
from reproq.errors import TaskNotFound, UsageError
from reproq.models import TaskStatus
from reproq.ops import admin, observe
from reproq.ops.observe import TaskFilter
from reproq.producer.enqueue import insert_task
from reproq.producer.signature import Signature
from reproq.producer.workflow import enqueue_chain, enqueue_chord


def _enqueue(conn: Conn, path: str = "app.tasks.work", *args: Any, **options: Any) -> int:
    return insert_task(conn, Signature(task_path=path, args=args, **options).to_new_task())


def _update(conn: Conn, result_id: int, sql_set: str, *params: Any) -> None:
    conn.execute(f"UPDATE task_runs SET {sql_set} WHERE result_id = %s", (*params, result_id))


def _finish(
    conn: Conn, result_id: int, status: str, *, ago: dt.timedelta = dt.timedelta(0)
) -> None:
    conn.execute(
        "UPDATE task_runs SET status = %(s)s, finished_at = now() - %(ago)s, "
        "failed_at = CASE WHEN %(s)s = 'FAILED' THEN now() - %(ago)s END, "
        "last_error = CASE WHEN %(s)s = 'FAILED' THEN 'boom' END WHERE result_id = %(id)s",
        {"s": status, "ago": ago, "id": result_id},
    )


def _run(conn: Conn, result_id: int, worker: str) -> None:
    _update(
        conn,
        result_id,
        "status = 'RUNNING', attempts = 1, leased_by = %s, leased_until = now() + interval "
        "'5 min', started_at = now(), worker_ids = jsonb_build_array(%s::text)",
        worker,
        worker,
    )


def _worker(conn: Conn, worker_id: str, *, seen_ago: dt.timedelta, queues: list[str]) -> None:
    conn.execute(
        "INSERT INTO reproq_workers (worker_id, hostname, concurrency, queues, started_at, "
        "last_seen_at, version) VALUES (%s, 'host1', 4, %s::jsonb, now() - interval '1 day', "
        "now() - %s, '0.1')",
        (worker_id, json.dumps(queues), seen_ago),
    )


# --------------------------------------------------------------------------- summary


def test_status_summary_counts_per_queue_and_status(conn: Conn) -> None:
    ready = [_enqueue(conn, "app.tasks.a", i) for i in range(3)]
    _update(conn, ready[0], "enqueued_at = now() - interval '10 minutes'")
    _enqueue(conn, "app.tasks.later", run_after=dt.timedelta(hours=1))
    running = _enqueue(conn, "app.tasks.r", queue="emails")
    _run(conn, running, "w1")
    chain = enqueue_chain(conn, [Signature(task_path="app.tasks.s", args=(i,)) for i in range(2)])
    done = _enqueue(conn, "app.tasks.d", queue="emails")
    _finish(conn, done, "SUCCESSFUL")
    failed = _enqueue(conn, "app.tasks.f", queue="emails")
    _finish(conn, failed, "FAILED")
    cancelled = _enqueue(conn, "app.tasks.c")
    admin.cancel(conn, cancelled)
    admin.pause_queue(conn, "emails", "smtp down")
    _worker(conn, "w1", seen_ago=dt.timedelta(seconds=5), queues=["default", "emails"])
    _worker(conn, "w2", seen_ago=dt.timedelta(hours=1), queues=["reports"])
    admin.set_limit(conn, "queue:emails", 2, 4)

    s = observe.status_summary(conn, stale_after=dt.timedelta(minutes=3))

    by_queue = {q.queue: q for q in s.queues}
    assert list(by_queue) == ["default", "emails", "reports"]
    default, emails = by_queue["default"], by_queue["emails"]
    # Three due READY rows plus the first chain step; the scheduled one is apart.
    assert (default.ready, default.scheduled, default.waiting) == (4, 1, 1)
    assert (default.running, default.cancelled, default.successful) == (0, 1, 0)
    assert (emails.running, emails.successful, emails.failed) == (1, 1, 1)
    assert default.oldest_ready_age_seconds is not None
    assert 9 * 60 <= default.oldest_ready_age_seconds < 60 * 60
    assert emails.oldest_ready_age_seconds is None
    assert emails.paused and emails.pause_reason == "smtp down" and not default.paused
    assert emails.rate_limit is not None and emails.rate_limit.burst_size == 4
    assert s.totals == {
        "READY": 5,
        "RUNNING": 1,
        "WAITING": 1,
        "SUCCESSFUL": 1,
        "FAILED": 1,
        "CANCELLED": 1,
    }
    assert (s.workers_alive, s.workers_stale) == (1, 1)
    assert {w.worker_id: w.running for w in s.workers} == {"w1": 1, "w2": 0}
    assert [p.queue for p in s.paused_queues] == ["emails"]
    assert [lim.key for lim in s.limits] == ["global", "queue:emails"]
    assert chain.result_ids  # the chain's rows are what the WAITING count saw


def test_finished_counts_stop_at_the_cap_unless_exact(conn: Conn) -> None:
    for i in range(5):
        _finish(conn, _enqueue(conn, "app.tasks.x", i), "SUCCESSFUL")

    capped = observe.status_summary(conn, count_cap=3)
    exact = observe.status_summary(conn, count_cap=None)

    assert capped.queues[0].successful == 4  # cap + 1: "more than 3"
    assert capped.total_text("SUCCESSFUL") == "3+" and exact.total_text("SUCCESSFUL") == "5"
    assert capped.total_text(TaskStatus.READY) == "0"
    assert observe.format_count(capped.queues[0].successful, capped.count_cap) == "3+"
    assert exact.queues[0].successful == 5
    assert observe.format_count(5, None) == "5"
    with pytest.raises(UsageError):
        observe.status_summary(conn, count_cap=0)


def test_an_empty_database_has_no_queues_but_the_global_limit(conn: Conn) -> None:
    s = observe.status_summary(conn)
    assert s.queues == () and s.workers == () and s.oldest_ready_age_seconds is None
    assert [lim.key for lim in s.limits] == ["global"] and s.limits[0].unlimited


def test_list_queues_reports_recent_work_and_concurrency_in_use(conn: Conn) -> None:
    for i in range(2):
        _finish(conn, _enqueue(conn, "app.tasks.ok", i, queue="q1"), "SUCCESSFUL")
    _finish(
        conn, _enqueue(conn, "app.tasks.old", queue="q1"), "SUCCESSFUL", ago=dt.timedelta(days=2)
    )
    _finish(conn, _enqueue(conn, "app.tasks.bad", queue="q1"), "FAILED")
    for i in range(2):
        rid = _enqueue(
            conn, "app.tasks.k", i, queue="q1", concurrency_key="acct:1", concurrency_limit=3
        )
        _run(conn, rid, "w1")
    admin.pause_queue(conn, "idle")

    queues = {q.queue: q for q in observe.list_queues(conn, window=dt.timedelta(hours=1))}

    q1 = queues["q1"]
    assert (q1.succeeded_in_window, q1.failed_in_window, q1.successful) == (2, 1, 3)
    assert q1.concurrency == (observe.ConcurrencyUse(key="acct:1", running=2, limit=3),)
    assert queues["idle"].paused and queues["idle"].count(TaskStatus.READY) == 0


# --------------------------------------------------------------------------- filters


def test_parse_filter_reads_the_whole_language() -> None:
    flt = observe.parse_filter(
        "status:failed,running queue:emails task:billing.* worker:w1 id:12,#13 age:>1h age:<2d"
    )
    assert flt == TaskFilter(
        statuses=(TaskStatus.FAILED, TaskStatus.RUNNING),
        queues=("emails",),
        task_path="billing.*",
        worker_id="w1",
        result_ids=(12, 13),
        min_age=dt.timedelta(hours=1),
        max_age=dt.timedelta(days=2),
    )
    assert observe.parse_filter("") == TaskFilter() and TaskFilter().is_empty
    assert observe.parse_filter("charge").task_path == "*charge*"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour:red", "unknown filter field 'colour'"),
        ("status:done", "unknown status 'done'"),
        ("id:abc", "'abc' is not a task id"),
        ("age:>soon", "filter 'age:>soon'"),
        ("age:>999999999999d", r"filter 'age:>999999999999d': .* must be at most 365000d"),
        ("queue:", "has no value"),
        ("task:a task:b", "already given"),
    ],
)
def test_parse_filter_names_the_bad_term(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        observe.parse_filter(text)


def test_glob_to_like_escapes_like_wildcards() -> None:
    assert observe.glob_to_like("billing.*") == "billing.%"
    assert observe.glob_to_like("a_b%c?") == "a\\_b\\%c_"


# --------------------------------------------------------------------------- listings


def test_list_tasks_filters_by_every_field(conn: Conn) -> None:
    charge = _enqueue(conn, "billing.tasks.charge", queue="billing")
    refund = _enqueue(conn, "billing.tasks.refund", queue="billing")
    _finish(conn, refund, "FAILED")
    mail = _enqueue(conn, "mail.tasks.send", queue="emails")
    _run(conn, mail, "w7")
    old = _enqueue(conn, "mail.tasks.digest", queue="emails")
    _update(conn, old, "enqueued_at = now() - interval '2 hours'")

    def ids(text: str) -> list[int]:
        return [r.result_id for r in observe.list_tasks(conn, observe.parse_filter(text))]

    assert ids("") == [old, mail, refund, charge]
    assert ids("status:failed") == [refund]
    assert ids("status:ready,running queue:emails") == [old, mail]
    assert ids("task:billing.*") == [refund, charge]
    assert ids("task:*.send") == [mail]
    assert ids("worker:w7") == [mail]
    assert ids(f"id:{charge},{old}") == [old, charge]
    assert ids("age:>1h") == [old]
    assert ids("age:<1h") == [mail, refund, charge]
    row = observe.list_tasks(conn, observe.parse_filter("status:failed"))[0]
    assert row.status is TaskStatus.FAILED and row.last_error == "boom"


def test_list_tasks_pages_by_cursor_or_offset_in_either_order(conn: Conn) -> None:
    ids = [_enqueue(conn, "app.tasks.p", i) for i in range(7)]

    first = observe.list_tasks(conn, limit=3)
    second = observe.list_tasks(conn, limit=3, cursor=first[-1].result_id)
    assert [r.result_id for r in first + second] == ids[::-1][:6]
    by_offset = observe.list_tasks(conn, limit=3, offset=3)
    assert [r.result_id for r in by_offset] == [r.result_id for r in second]
    oldest = observe.list_tasks(conn, limit=4, order="oldest", cursor=ids[1])
    assert [r.result_id for r in oldest] == ids[2:6]
    with pytest.raises(UsageError, match="limit must be a positive integer"):
        observe.list_tasks(conn, limit=0)
    with pytest.raises(UsageError, match="unknown order"):
        observe.list_tasks(conn, order="sideways")


# --------------------------------------------------------------------------- detail


def test_get_task_returns_every_column_errors_and_return_value(conn: Conn) -> None:
    rid = _enqueue(conn, "app.tasks.detail", 1, queue="q", kwargs={"k": "v"}, lock_key="L")
    errors = [
        {
            "kind": "app_error",
            "message": "first",
            "exception_class": "ValueError",
            "traceback": "Traceback ...",
            "attempt": 1,
            "at": "2025-01-01T00:00:00Z",
            "worker_id": "w1",
        },
        {"kind": "infra_error", "message": "timeout", "attempt": 2},
    ]
    _update(
        conn,
        rid,
        "status = 'SUCCESSFUL', errors_json = %s::jsonb, return_json = '{\"ok\": 1}'::jsonb, "
        "worker_ids = '[\"w1\", \"w2\"]'::jsonb, attempts = 3, logs_uri = '/tmp/x.log'",
        json.dumps(errors),
    )

    d = observe.get_task(conn, rid)

    assert d.result_id == rid and d.status is TaskStatus.SUCCESSFUL
    assert d.args == [1] and d.kwargs == {"k": "v"} and d.lock_key == "L"
    assert d.return_value == {"ok": 1} and d.worker_ids == ("w1", "w2")
    assert [e.kind for e in d.errors] == ["app_error", "infra_error"]
    assert d.errors[0].exception_class == "ValueError" and d.errors[0].traceback
    assert d.errors[1].attempt == 2 and d.errors[1].worker_id is None
    assert d.logs_uri == "/tmp/x.log" and len(d.spec_hash) == 64
    with pytest.raises(TaskNotFound, match="result_id 98765"):
        observe.get_task(conn, 98765)


def test_get_task_shows_chain_workflow_and_replay_lineage(conn: Conn) -> None:
    chain = enqueue_chain(
        conn, [Signature(task_path="app.tasks.s", args=(i,)) for i in range(3)]
    ).result_ids
    middle = observe.get_task(conn, chain[1])
    assert middle.parent is not None and middle.parent.result_id == chain[0]
    assert [c.result_id for c in middle.children] == [chain[2]]
    assert [r.result_id for r in middle.chain] == list(chain) and middle.workflow is None

    chord = enqueue_chord(
        conn,
        [Signature(task_path="app.tasks.m", args=(i,)) for i in range(2)],
        Signature(task_path="app.tasks.cb"),
    )
    member = observe.get_task(conn, chord.result_ids[0])
    assert member.workflow is not None
    assert member.workflow.callback_result_id == chord.callback_id
    assert len(member.workflow.members) == 3 and member.workflow.expected_count == 2

    _finish(conn, chain[0], "SUCCESSFUL")
    replayed = admin.replay(conn, result_id=chain[0])
    copy = observe.get_task(conn, replayed.new_id)
    assert copy.replayed_from == chain[0]
    assert copy.replayed_from_ref is not None and copy.replayed_from_ref.task_path == "app.tasks.s"


def test_triage_list_shows_failed_rows_newest_failure_first(conn: Conn) -> None:
    older = _enqueue(conn, "app.tasks.a", queue="q1")
    _finish(conn, older, "FAILED", ago=dt.timedelta(hours=2))
    newer = _enqueue(conn, "app.tasks.b", queue="q2")
    _finish(conn, newer, "FAILED", ago=dt.timedelta(minutes=5))
    _update(conn, newer, 'errors_json = \'[{"kind": "app_error", "exception_class": "KeyError"}]\'')
    _enqueue(conn, "app.tasks.ok")

    rows = observe.triage_list(conn)
    assert [r.result_id for r in rows] == [newer, older]
    assert rows[0].error_kind == "app_error" and rows[0].exception_class == "KeyError"
    assert [r.result_id for r in observe.triage_list(conn, queue="q1")] == [older]
    assert len(observe.triage_list(conn, limit=1)) == 1


def test_list_workers_marks_stale_ones_and_counts_their_tasks(conn: Conn) -> None:
    _worker(conn, "fresh", seen_ago=dt.timedelta(seconds=10), queues=["default"])
    _worker(conn, "gone", seen_ago=dt.timedelta(minutes=30), queues=["default"])
    for i in range(2):
        _run(conn, _enqueue(conn, "app.tasks.w", i), "fresh")

    workers = {w.worker_id: w for w in observe.list_workers(conn, dt.timedelta(minutes=3))}

    assert workers["fresh"].stale is False and workers["fresh"].running == 2
    assert workers["gone"].stale is True and workers["gone"].running == 0
    assert workers["gone"].last_seen_seconds >= 29 * 60
    assert workers["fresh"].queues == ("default",) and workers["fresh"].hostname == "host1"


def test_list_schedules_splits_the_time_zone_from_the_cron(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name, "
        "priority, max_attempts, concurrency_limit, next_run_at, enabled, created_at, "
        "updated_at) VALUES ('berlin', 'CRON_TZ=Europe/Berlin 30 2 * * *', 'app.tasks.n', "
        "'[1]', 'default', 0, 3, 0, now(), true, now(), now()), ('utc', '*/5 * * * *', "
        "'app.tasks.m', '{}', 'default', 0, 3, 0, now(), false, now(), now())"
    )
    schedules = observe.list_schedules(conn)
    assert [(s.name, s.timezone, s.cron, s.enabled) for s in schedules] == [
        ("berlin", "Europe/Berlin", "30 2 * * *", True),
        ("utc", "UTC", "*/5 * * * *", False),
    ]
    assert schedules[0].payload == [1] and schedules[0].misfire_policy


# --------------------------------------------------------------------------- rates


def test_throughput_buckets_finished_rows_over_the_window(conn: Conn) -> None:
    for minutes, status in [
        (5, "SUCCESSFUL"),
        (6, "SUCCESSFUL"),
        (7, "FAILED"),
        (55, "SUCCESSFUL"),
        (90, "SUCCESSFUL"),
    ]:
        rid = _enqueue(conn, "app.tasks.t", minutes)
        _finish(conn, rid, status, ago=dt.timedelta(minutes=minutes))

    buckets = observe.throughput(conn, dt.timedelta(hours=1), 6)

    assert len(buckets) == 6
    assert [(b.succeeded, b.failed) for b in buckets] == [
        (1, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (2, 1),
    ]
    assert buckets[1].start - buckets[0].start == dt.timedelta(minutes=10)
    with pytest.raises(UsageError):
        observe.throughput(conn, dt.timedelta(0), 6)


def test_top_failing_ranks_task_paths_by_failures_in_the_window(conn: Conn) -> None:
    for i in range(3):
        _finish(conn, _enqueue(conn, "app.tasks.flaky", i), "FAILED")
    _finish(conn, _enqueue(conn, "app.tasks.rare"), "FAILED")
    _finish(conn, _enqueue(conn, "app.tasks.ancient"), "FAILED", ago=dt.timedelta(days=3))

    top = observe.top_failing(conn, dt.timedelta(hours=1), 5)

    assert [(t.task_path, t.failures) for t in top] == [
        ("app.tasks.flaky", 3),
        ("app.tasks.rare", 1),
    ]
    assert top[0].last_error == "boom"


def test_beat_status_names_the_leader_and_the_next_fire(dsn: str, conn: Conn) -> None:
    from reproq.db import connect
    from reproq.schedule.beat import BEAT_LOCK_ID

    assert observe.beat_status(conn) == observe.BeatStatus(
        leader_pid=None,
        leader_application=None,
        leader_since=None,
        next_schedule=None,
        next_fire_at=None,
    )
    conn.execute(
        "INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name, "
        "priority, max_attempts, concurrency_limit, next_run_at, enabled, created_at, "
        "updated_at) VALUES ('soon', '* * * * *', 'app.tasks.a', '{}', 'default', 0, 3, 0, "
        "now() + interval '1 minute', true, now(), now()), ('off', '* * * * *', 'app.tasks.b', "
        "'{}', 'default', 0, 3, 0, now(), false, now(), now())"
    )
    leader = connect(dsn, application_name="beat-under-test")
    try:
        leader.execute("SELECT pg_advisory_lock(%s)", (BEAT_LOCK_ID,))
        pid = leader.info.backend_pid
        status = observe.beat_status(conn)
    finally:
        leader.close()
    assert status.leader_pid == pid and status.leader_application == "beat-under-test"
    assert status.next_schedule == "soon" and status.next_fire_at is not None
