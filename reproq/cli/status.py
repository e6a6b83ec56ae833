"""``reproq status``: counts per queue and status, the oldest READY age, workers, limits."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reproq.cli._commands import command, connect, duration, positive
from reproq.cli._common import print_json
from reproq.cli.render import jsonable, render_status
from reproq.errors import UsageError

if TYPE_CHECKING:
    from reproq.cli._commands import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add ``status``."""
    parser = command(
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

    stale_after = duration(args.stale_after, "--stale-after")
    positive(args.count_cap, "--count-cap")
    if args.exact and args.count_cap is not None:
        raise UsageError("--exact and --count-cap exclude each other")
    cap = None if args.exact else (args.count_cap or observe.DEFAULT_COUNT_CAP)
    with connect(args, "status") as conn:
        summary = observe.status_summary(conn, stale_after=stale_after, count_cap=cap)
    if args.json:
        data = jsonable(summary)
        data["workers_alive"] = summary.workers_alive
        data["workers_stale"] = summary.workers_stale
        print_json(data)
        return 0
    print(render_status(summary))
    return 0
