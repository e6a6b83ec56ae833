"""``reproq prune expired|finished|workers``: delete what the table no longer needs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from reproq.cli._commands import command, connect, duration, group, positive
from reproq.cli._common import print_json

if TYPE_CHECKING:
    from reproq.cli._commands import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add ``prune`` with ``expired``, ``finished`` and ``workers``."""
    sub = group(subparsers, "prune", help="delete expired or old finished rows, stale workers")
    exp = command(
        sub,
        "expired",
        _handle_prune_expired,
        help="delete rows past expires_at (never RUNNING ones)",
        json_flag=True,
    )
    exp.add_argument("--limit", type=int, metavar="N", help="delete at most N rows")
    exp.add_argument("--dry-run", action="store_true", help="only count")

    fin = command(
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

    wrk = command(
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

    positive(args.limit, "--limit")
    with connect(args, "prune") as conn:
        count = admin.prune_expired(conn, limit=args.limit, dry_run=args.dry_run)
    return _pruned(args, count, "expired task runs")


def _handle_prune_finished(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    older = duration(args.older_than, "--older-than", allow_zero=True)
    positive(args.batch, "--batch")
    statuses: Sequence[str] = admin.FINISHED_STATUSES
    if args.status:
        statuses = [s.strip().upper() for item in args.status for s in item.split(",") if s.strip()]
    with connect(args, "prune") as conn:
        count = admin.prune_finished(
            conn, older_than=older, statuses=statuses, dry_run=args.dry_run, batch=args.batch
        )
    return _pruned(args, count, "finished task runs")


def _handle_prune_workers(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    older = duration(args.older_than, "--older-than")
    with connect(args, "prune") as conn:
        count = admin.prune_workers(conn, older_than=older, dry_run=args.dry_run)
    return _pruned(args, count, "stale workers")
