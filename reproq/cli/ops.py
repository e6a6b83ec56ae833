"""Operations commands (seed-compatible): replay, cancel, triage, limit, prune, pause,
resume and status.

Each handler parses and checks its flags, opens one short connection, calls
:mod:`reproq.ops.admin` (writes) or :mod:`reproq.ops.observe` (reads) — the same functions the
TUI uses — and prints either a compact table or, with ``--json``, a JSON document.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from reproq.cli._common import add_dsn_arguments, dsn_from_args, print_json
from reproq.db import Conn, connection
from reproq.errors import UsageError

if TYPE_CHECKING:
    from reproq.ops.admin import CancelResult
    from reproq.ops.observe import StatusSummary, TaskDetail, TaskRef

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(subparsers: Subparsers) -> None:
    """Add replay, cancel, triage, limit, prune, pause, resume and status."""
    _register_replay(subparsers)
    _register_cancel(subparsers)
    _register_triage(subparsers)
    _register_limit(subparsers)
    _register_prune(subparsers)
    _register_pause(subparsers)
    _register_status(subparsers)


# --------------------------------------------------------------------------- helpers


def _command(
    subparsers: Subparsers,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str | None = None,
    json_flag: bool = False,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=description or help)
    add_dsn_arguments(parser)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=handler)
    return parser


def _group(subparsers: Subparsers, name: str, *, help: str) -> Subparsers:
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(func=lambda _args: _usage(parser))
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


def _usage(parser: argparse.ArgumentParser) -> int:
    raise UsageError(f"{parser.prog} needs a command (see `{parser.prog} --help`)")


def _connect(args: argparse.Namespace, name: str) -> AbstractContextManager[Conn]:
    return connection(dsn_from_args(args), application_name=f"reproq-{name}")


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be a positive integer, got {value}")
    return value


def _duration(text: str, flag: str, *, allow_zero: bool = False) -> dt.timedelta:
    from reproq.durations import parse_duration

    seconds = parse_duration(text, key=flag)
    if seconds <= 0 and not allow_zero:
        raise UsageError(f"{flag} must be greater than zero, got {text!r}")
    return dt.timedelta(seconds=seconds)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses as objects, times as ISO 8601 text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


_NUMBER = re.compile(r"^(-|-?\d+(\.\d+)?\+?)$")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A compact aligned table: numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        bool(cells) and all(_NUMBER.match(row[i]) for row in cells) for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return _when(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    from reproq.durations import format_duration

    # Whole seconds are precise enough for ages and keep the column narrow.
    return format_duration(round(seconds) if seconds >= 1 else round(seconds, 3))


def _short(text: str | None, width: int) -> str:
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


# --------------------------------------------------------------------------- replay


def _register_replay(subparsers: Subparsers) -> None:
    parser = _command(
        subparsers,
        "replay",
        _handle_replay,
        help="enqueue a new READY run of an existing task's spec",
        description=(
            "Insert a new READY row copying the spec, queue, priority, keys and limits of an "
            "existing run (metadata_json.replayed_from records the source). Refused while an "
            "identical spec is READY or RUNNING."
        ),
        json_flag=True,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, metavar="N", help="the result_id to replay")
    which.add_argument("--spec-hash", metavar="H", help="replay the newest run with this spec_hash")


def _handle_replay(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    _positive(args.id, "--id")
    with _connect(args, "replay") as conn:
        result = admin.replay(conn, result_id=args.id, spec_hash=args.spec_hash)
    if args.json:
        print_json(jsonable(result))
    else:
        print(f"replayed task {result.source_id} as task {result.new_id}")
    return 0


# --------------------------------------------------------------------------- cancel


def _register_cancel(subparsers: Subparsers) -> None:
    parser = _command(
        subparsers,
        "cancel",
        _handle_cancel,
        help="cancel a task: READY/WAITING at once, RUNNING via a cancel request",
        description=(
            "READY and WAITING tasks become CANCELLED at once, with the WAITING tasks that "
            "depend on them; a RUNNING task gets cancel_requested and its worker stops it "
            "within one heartbeat. Repeat --id to cancel several."
        ),
        json_flag=True,
    )
    parser.add_argument(
        "--id", type=int, metavar="N", action="append", required=True, help="result_id"
    )


def _handle_cancel(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    ids: list[int] = args.id
    for value in ids:
        _positive(value, "--id")
    with _connect(args, "cancel") as conn:
        if len(ids) == 1:
            result = admin.cancel(conn, ids[0])
            if args.json:
                print_json(jsonable(result))
            else:
                print(_cancel_line(result))
            return 0
        bulk = admin.bulk_cancel(conn, ids)
    if args.json:
        print_json(jsonable(bulk))
    else:
        print(bulk.summary("cancelled"))
    return 0 if not bulk.skipped else 1


def _cancel_line(result: CancelResult) -> str:
    from reproq.ops.admin import CancelOutcome

    if result.status is CancelOutcome.CANCEL_REQUESTED:
        return (
            f"task {result.result_id}: cancel requested "
            "(it is RUNNING; its worker stops it within one heartbeat)"
        )
    text = f"task {result.result_id}: cancelled"
    if result.also_cancelled:
        text += " (and waiting tasks " + ", ".join(map(str, result.also_cancelled)) + ")"
    return text


# --------------------------------------------------------------------------- triage


def _register_triage(subparsers: Subparsers) -> None:
    sub = _group(subparsers, "triage", help="inspect and retry FAILED tasks (the dead letters)")

    lst = _command(
        sub, "list", _handle_triage_list, help="FAILED tasks, newest first", json_flag=True
    )
    lst.add_argument("--queue", metavar="Q", help="only this queue")
    lst.add_argument("--limit", type=int, default=50, metavar="N", help="rows (default 50)")

    ins = _command(
        sub,
        "inspect",
        _handle_triage_inspect,
        help="everything about one task: spec, every attempt's error, lineage",
        json_flag=True,
    )
    ins.add_argument("--id", type=int, metavar="N", required=True, help="result_id")

    retry = _command(
        sub,
        "retry",
        _handle_triage_retry,
        help="put FAILED tasks back to READY (attempts reset, error history kept)",
        json_flag=True,
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, metavar="N", action="append", help="result_id")
    which.add_argument("--all", action="store_true", help="every FAILED task (see filters)")
    retry.add_argument("--queue", metavar="Q", help="with --all: only this queue")
    retry.add_argument("--task", metavar="GLOB", help="with --all: task paths like billing.*")
    retry.add_argument("--limit", type=int, metavar="N", help="with --all: at most N tasks")


def _handle_triage_list(args: argparse.Namespace) -> int:
    from reproq.ops import observe

    _positive(args.limit, "--limit")
    with _connect(args, "triage") as conn:
        rows = observe.triage_list(conn, queue=args.queue, limit=args.limit)
    if args.json:
        print_json(jsonable(rows))
        return 0
    if not rows:
        where = f" in queue {args.queue!r}" if args.queue else ""
        print(f"no FAILED tasks{where}")
        return 0
    print(
        table(
            ["ID", "QUEUE", "TASK", "ATTEMPTS", "FAILED AT", "KIND", "ERROR"],
            [
                [
                    r.result_id,
                    r.queue_name,
                    r.task_path,
                    f"{r.attempts}/{r.max_attempts}",
                    r.failed_at,
                    r.error_kind,
                    _short(r.last_error, 60),
                ]
                for r in rows
            ],
        )
    )
    return 0


def _handle_triage_inspect(args: argparse.Namespace) -> int:
    from reproq.ops import observe

    _positive(args.id, "--id")
    with _connect(args, "triage") as conn:
        detail = observe.get_task(conn, args.id)
    if args.json:
        print_json(jsonable(detail))
        return 0
    print(render_detail(detail))
    return 0


def render_detail(d: TaskDetail) -> str:
    """A task's detail as readable text (used by ``triage inspect``)."""
    import json

    lines = [
        f"task {d.result_id}  {d.task_path}  [{d.status}]",
        f"  queue          {d.queue_name} (priority {d.priority})",
        f"  attempts       {d.attempts}/{d.max_attempts}, timeout {d.timeout_seconds}s",
        f"  enqueued       {_when(d.enqueued_at)}",
    ]
    optional = [
        ("run after", _when(d.run_after) if d.run_after else None),
        ("started", _when(d.started_at) if d.started_at else None),
        ("last attempt", _when(d.last_attempted_at) if d.last_attempted_at else None),
        ("finished", _when(d.finished_at) if d.finished_at else None),
        ("failed", _when(d.failed_at) if d.failed_at else None),
        ("expires", _when(d.expires_at) if d.expires_at else None),
        (
            "lease",
            f"{d.leased_by} until {_when(d.leased_until)}" if d.leased_by else None,
        ),
        ("cancel", "requested" if d.cancel_requested and d.status == "RUNNING" else None),
        ("lock key", d.lock_key),
        (
            "concurrency",
            f"{d.concurrency_key} (limit {d.concurrency_limit})" if d.concurrency_key else None,
        ),
        ("workers", ", ".join(d.worker_ids) if d.worker_ids else None),
        ("spec hash", d.spec_hash),
        ("logs", d.logs_uri),
        ("artifacts", d.artifacts_uri),
        ("parent", _ref(d.parent) if d.parent else (str(d.parent_id) if d.parent_id else None)),
        ("children", ", ".join(_ref(c) for c in d.children) if d.children else None),
        ("workflow", _workflow(d)),
        (
            "replayed from",
            _ref(d.replayed_from_ref)
            if d.replayed_from_ref
            else (str(d.replayed_from) if d.replayed_from else None),
        ),
        ("last error", d.last_error),
    ]
    lines += [f"  {label:<14} {value}" for label, value in optional if value]
    lines.append("  args           " + json.dumps(d.args, ensure_ascii=False))
    lines.append("  kwargs         " + json.dumps(d.kwargs, ensure_ascii=False, sort_keys=True))
    if d.return_value is not None:
        lines.append("  return         " + json.dumps(d.return_value, ensure_ascii=False))
    if d.errors:
        lines.append(f"  errors ({len(d.errors)})")
        for e in d.errors:
            head = f"    attempt {e.attempt if e.attempt is not None else '?'}: {e.kind}"
            if e.exception_class:
                head += f" {e.exception_class}"
            if e.message:
                head += f": {e.message}"
            extra = ", ".join(x for x in (e.at, e.worker_id) if x)
            if extra:
                head += f"  ({extra})"
            lines.append(head)
            if e.traceback:
                lines.extend("      " + t for t in e.traceback.rstrip().splitlines())
    return "\n".join(lines)


def _ref(ref: TaskRef) -> str:
    return f"{ref.result_id} ({ref.task_path}, {ref.status})"


def _workflow(d: TaskDetail) -> str | None:
    if d.workflow is not None:
        w = d.workflow
        text = (
            f"{w.workflow_id} {w.status}: {w.success_count}/{w.expected_count} succeeded, "
            f"{w.failure_count} failed"
        )
        if w.callback_result_id:
            text += f", callback {w.callback_result_id}"
        return text
    if d.workflow_id is not None:
        steps = " -> ".join(f"{r.result_id} [{r.status}]" for r in d.chain)
        return f"{d.workflow_id} chain: {steps}" if steps else str(d.workflow_id)
    return None


def _handle_triage_retry(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    _positive(args.limit, "--limit")
    if not args.all and (args.queue or args.task or args.limit):
        raise UsageError("--queue, --task and --limit go with --all")
    with _connect(args, "triage") as conn:
        if args.all:
            bulk = admin.retry_all(conn, queue=args.queue, task_path=args.task, limit=args.limit)
        elif len(args.id) == 1:
            _positive(args.id[0], "--id")
            result = admin.retry(conn, args.id[0])
            if args.json:
                print_json(jsonable(result))
            else:
                text = f"task {result.result_id}: retried (READY, attempts reset)"
                if result.revived:
                    text += "; waiting again: " + ", ".join(map(str, result.revived))
                print(text)
            return 0
        else:
            for value in args.id:
                _positive(value, "--id")
            bulk = admin.bulk_retry(conn, args.id)
    if args.json:
        print_json(jsonable(bulk))
    else:
        print(bulk.summary("retried"))
    # --all skips duplicates by design; explicit ids that were skipped are a failure.
    return 1 if bulk.skipped and not args.all else 0


# --------------------------------------------------------------------------- limits


def _register_limit(subparsers: Subparsers) -> None:
    sub = _group(subparsers, "limit", help="token-bucket rate limits (global, task:, queue:)")
    set_ = _command(
        sub,
        "set",
        _handle_limit_set,
        help="create or change a rate limit",
        description=(
            "Keys: 'global', 'task:<task path>' or 'queue:<queue name>'; the most specific "
            "existing key applies to a task. Rate 0 means no limit."
        ),
        json_flag=True,
    )
    set_.add_argument("--key", required=True, metavar="K")
    set_.add_argument("--rate", type=float, required=True, metavar="R", help="tokens/second")
    set_.add_argument("--burst", type=int, required=True, metavar="B", help="bucket size")
    _command(sub, "ls", _handle_limit_ls, help="list rate limits", json_flag=True)
    rm = _command(
        sub,
        "rm",
        _handle_limit_rm,
        help="remove a rate limit ('global' is reset to no limit)",
        json_flag=True,
    )
    rm.add_argument("--key", required=True, metavar="K")


def _rate(value: float) -> str:
    return "no limit" if value <= 0 else f"{value:g}/s"


def _handle_limit_set(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    with _connect(args, "limit") as conn:
        lim = admin.set_limit(conn, args.key, args.rate, args.burst)
    if args.json:
        print_json(jsonable(lim))
    else:
        print(f"rate limit {lim.key}: {_rate(lim.tokens_per_second)}, burst {lim.burst_size}")
    return 0


def _handle_limit_ls(args: argparse.Namespace) -> int:
    from reproq.ops import observe

    with _connect(args, "limit") as conn:
        limits = observe.list_limits(conn)
    if args.json:
        print_json(jsonable(limits))
        return 0
    print(
        table(
            ["KEY", "RATE", "BURST", "TOKENS", "REFILLED"],
            [
                [
                    lim.key,
                    _rate(lim.tokens_per_second),
                    lim.burst_size,
                    round(lim.current_tokens, 2),
                    lim.last_refilled_at,
                ]
                for lim in limits
            ],
        )
    )
    return 0


def _handle_limit_rm(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    with _connect(args, "limit") as conn:
        removed = admin.remove_limit(conn, args.key)
    if args.json:
        print_json(jsonable(removed))
    elif removed.reset:
        print("rate limit global reset to no limit (the global row is kept)")
    else:
        print(f"removed rate limit {removed.key}")
    return 0


# --------------------------------------------------------------------------- prune


def _register_prune(subparsers: Subparsers) -> None:
    sub = _group(subparsers, "prune", help="delete expired or old finished rows, stale workers")
    exp = _command(
        sub,
        "expired",
        _handle_prune_expired,
        help="delete rows past expires_at (never RUNNING ones)",
        json_flag=True,
    )
    exp.add_argument("--limit", type=int, metavar="N", help="delete at most N rows")
    exp.add_argument("--dry-run", action="store_true", help="only count")

    fin = _command(
        sub,
        "finished",
        _handle_prune_finished,
        help="delete finished rows older than a duration (by finished_at)",
        json_flag=True,
    )
    fin.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 7d, 12h")
    fin.add_argument(
        "--status",
        action="append",
        metavar="S",
        help="SUCCESSFUL, FAILED or CANCELLED; repeat or comma-separate (default: all three)",
    )
    fin.add_argument("--dry-run", action="store_true", help="only count")
    fin.add_argument(
        "--batch", type=int, default=10_000, metavar="N", help="rows per DELETE (default 10000)"
    )

    wrk = _command(
        sub,
        "workers",
        _handle_prune_workers,
        help="forget workers not seen for a duration",
        json_flag=True,
    )
    wrk.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 10m")
    wrk.add_argument("--dry-run", action="store_true", help="only count")


def _pruned(args: argparse.Namespace, count: int, what: str) -> int:
    if args.json:
        print_json(
            {"deleted": 0 if args.dry_run else count, "matched": count, "dry_run": args.dry_run}
        )
    elif args.dry_run:
        print(f"would delete {count} {what} (dry run)")
    else:
        print(f"deleted {count} {what}")
    return 0


def _handle_prune_expired(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    _positive(args.limit, "--limit")
    with _connect(args, "prune") as conn:
        count = admin.prune_expired(conn, limit=args.limit, dry_run=args.dry_run)
    return _pruned(args, count, "expired task runs")


def _handle_prune_finished(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    older = _duration(args.older_than, "--older-than", allow_zero=True)
    _positive(args.batch, "--batch")
    statuses: Sequence[str] = admin.FINISHED_STATUSES
    if args.status:
        statuses = [s.strip().upper() for item in args.status for s in item.split(",") if s.strip()]
    with _connect(args, "prune") as conn:
        count = admin.prune_finished(
            conn, older_than=older, statuses=statuses, dry_run=args.dry_run, batch=args.batch
        )
    return _pruned(args, count, "finished task runs")


def _handle_prune_workers(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    older = _duration(args.older_than, "--older-than")
    with _connect(args, "prune") as conn:
        count = admin.prune_workers(conn, older_than=older, dry_run=args.dry_run)
    return _pruned(args, count, "stale workers")


# --------------------------------------------------------------------------- pause


def _register_pause(subparsers: Subparsers) -> None:
    pause = _command(
        subparsers,
        "pause",
        _handle_pause,
        help="stop workers claiming from a queue (running tasks finish)",
        json_flag=True,
    )
    pause.add_argument("queue", metavar="QUEUE")
    pause.add_argument("--reason", help="shown by status and the TUI")
    resume = _command(
        subparsers,
        "resume",
        _handle_resume,
        help="let workers claim from a queue again",
        json_flag=True,
    )
    resume.add_argument("queue", metavar="QUEUE")


def _handle_pause(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    with _connect(args, "pause") as conn:
        state = admin.pause_queue(conn, args.queue, args.reason)
    if args.json:
        print_json(jsonable(state))
    else:
        reason = f" ({state.reason})" if state.reason else ""
        print(f"queue {state.queue} paused{reason}")
    return 0


def _handle_resume(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    with _connect(args, "resume") as conn:
        state = admin.resume_queue(conn, args.queue)
    if args.json:
        print_json(jsonable(state))
    else:
        print(f"queue {state.queue} resumed")
    return 0


# --------------------------------------------------------------------------- status


def _register_status(subparsers: Subparsers) -> None:
    parser = _command(
        subparsers,
        "status",
        _handle_status,
        help="counts per queue and status, oldest READY age, workers",
        description=(
            "Counts per queue and status, the age of the oldest due READY task, paused "
            "queues, workers and rate limits. Finished counts stop at --count-cap "
            "(shown as N+) so this stays fast on large tables; --exact counts them all."
        ),
        json_flag=True,
    )
    parser.add_argument(
        "--stale-after",
        default="3m",
        metavar="DURATION",
        help="a worker not seen for this long is stale (default 3m)",
    )
    parser.add_argument(
        "--count-cap", type=int, default=None, metavar="N", help="finished-count cap (10000)"
    )
    parser.add_argument("--exact", action="store_true", help="count finished rows exactly")


def _handle_status(args: argparse.Namespace) -> int:
    from reproq.ops import observe

    stale_after = _duration(args.stale_after, "--stale-after")
    _positive(args.count_cap, "--count-cap")
    if args.exact and args.count_cap is not None:
        raise UsageError("--exact and --count-cap exclude each other")
    cap = None if args.exact else (args.count_cap or observe.DEFAULT_COUNT_CAP)
    with _connect(args, "status") as conn:
        summary = observe.status_summary(conn, stale_after=stale_after, count_cap=cap)
    if args.json:
        data = jsonable(summary)
        data["workers_alive"] = summary.workers_alive
        data["workers_stale"] = summary.workers_stale
        print_json(data)
        return 0
    print(render_status(summary))
    return 0


def render_status(s: StatusSummary) -> str:
    """``reproq status`` as text: a queue table, then workers and limits."""
    from reproq.ops.observe import format_count

    cap = s.count_cap
    out: list[str] = []
    if not s.queues:
        out.append("no queues yet (no task runs, pauses, limits or workers)")
    else:
        rows: list[list[Any]] = []
        for qi in s.queues:
            rows.append(
                [
                    qi.queue,
                    qi.ready,
                    qi.scheduled,
                    qi.waiting,
                    qi.running,
                    format_count(qi.failed, cap),
                    format_count(qi.successful, cap),
                    format_count(qi.cancelled, cap),
                    _age(qi.oldest_ready_age_seconds),
                    ("paused: " + qi.pause_reason if qi.pause_reason else "paused")
                    if qi.paused
                    else "",
                ]
            )
        totals = s.totals
        rows.append(
            [
                "TOTAL",
                sum(qi.ready for qi in s.queues),
                sum(qi.scheduled for qi in s.queues),
                totals["WAITING"],
                totals["RUNNING"],
                s.total_text("FAILED"),
                s.total_text("SUCCESSFUL"),
                s.total_text("CANCELLED"),
                _age(s.oldest_ready_age_seconds),
                "",
            ]
        )
        out.append(
            table(
                [
                    "QUEUE",
                    "READY",
                    "SCHEDULED",
                    "WAITING",
                    "RUNNING",
                    "FAILED",
                    "SUCCESSFUL",
                    "CANCELLED",
                    "OLDEST READY",
                    "",
                ],
                rows,
            )
        )
    out.append("")
    out.append(f"workers: {s.workers_alive} alive, {s.workers_stale} stale")
    if s.workers:
        out.append(
            table(
                ["WORKER", "HOST", "QUEUES", "RUNNING", "LAST SEEN", ""],
                [
                    [
                        w.worker_id,
                        w.hostname,
                        ",".join(w.queues) or "-",
                        w.running,
                        _age(w.last_seen_seconds) + " ago",
                        "stale" if w.stale else "",
                    ]
                    for w in s.workers
                ],
            )
        )
    limited = [lim for lim in s.limits if not lim.unlimited]
    if limited:
        out.append("")
        out.append(
            "rate limits: "
            + ", ".join(
                f"{lim.key} {_rate(lim.tokens_per_second)} burst {lim.burst_size}"
                for lim in limited
            )
        )
    return "\n".join(out)
