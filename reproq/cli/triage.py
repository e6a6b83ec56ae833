"""``reproq triage list|inspect|retry``: the FAILED runs (the dead letters)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reproq.cli._commands import command, connect, group, positive
from reproq.cli._common import print_json
from reproq.cli.render import jsonable, render_detail, short, table
from reproq.errors import UsageError

if TYPE_CHECKING:
    from reproq.cli._commands import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add ``triage`` with ``list``, ``inspect`` and ``retry``."""
    sub = group(subparsers, "triage", help="inspect and retry FAILED tasks (the dead letters)")

    lst = command(
        sub, "list", _handle_triage_list, help="FAILED tasks, newest first", json_flag=True
    )
    lst.add_argument("--queue", metavar="Q", help="only this queue")
    lst.add_argument("--limit", type=int, default=50, metavar="N", help="rows (default 50)")

    ins = command(
        sub,
        "inspect",
        _handle_triage_inspect,
        help="everything about one task: spec, every attempt's error, lineage",
        json_flag=True,
    )
    ins.add_argument("--id", type=int, metavar="N", required=True, help="result_id")

    retry = command(
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

    positive(args.limit, "--limit")
    with connect(args, "triage") as conn:
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
                    short(r.last_error, 60),
                ]
                for r in rows
            ],
        )
    )
    return 0


def _handle_triage_inspect(args: argparse.Namespace) -> int:
    from reproq.ops import observe

    positive(args.id, "--id")
    with connect(args, "triage") as conn:
        detail = observe.get_task(conn, args.id)
    if args.json:
        print_json(jsonable(detail))
        return 0
    print(render_detail(detail))
    return 0


def _handle_triage_retry(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    positive(args.limit, "--limit")
    if not args.all and (args.queue or args.task or args.limit):
        raise UsageError("--queue, --task and --limit go with --all")
    with connect(args, "triage") as conn:
        if args.all:
            bulk = admin.retry_all(conn, queue=args.queue, task_path=args.task, limit=args.limit)
        elif len(args.id) == 1:
            positive(args.id[0], "--id")
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
                positive(value, "--id")
            bulk = admin.bulk_retry(conn, args.id)
    if args.json:
        print_json(jsonable(bulk))
    else:
        print(bulk.summary("retried"))
    # --all skips duplicates by design; explicit ids that were skipped are a failure.
    return 1 if bulk.skipped and not args.all else 0
