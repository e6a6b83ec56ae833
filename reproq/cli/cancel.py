"""``reproq cancel``: READY and WAITING runs at once, RUNNING ones through a cancel request."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reproq.cli._commands import command, connect, positive
from reproq.cli._common import print_json
from reproq.cli.render import jsonable

if TYPE_CHECKING:
    from reproq.cli._commands import Subparsers
    from reproq.ops.admin import CancelResult


def register(subparsers: Subparsers) -> None:
    """Add ``cancel``."""
    parser = command(
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
        positive(value, "--id")
    with connect(args, "cancel") as conn:
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
