"""``reproq pause QUEUE`` and ``reproq resume QUEUE``: stop and restart claiming from a queue."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reproq.cli._commands import command, connect
from reproq.cli._common import print_json
from reproq.cli.render import jsonable

if TYPE_CHECKING:
    from reproq.cli._commands import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add ``pause`` and ``resume``."""
    pause = command(
        subparsers,
        "pause",
        _handle_pause,
        help="stop workers claiming from a queue (running tasks finish)",
        json_flag=True,
    )
    pause.add_argument("queue", metavar="QUEUE")
    pause.add_argument("--reason", help="shown by status and the TUI")
    resume = command(
        subparsers,
        "resume",
        _handle_resume,
        help="let workers claim from a queue again",
        json_flag=True,
    )
    resume.add_argument("queue", metavar="QUEUE")


def _handle_pause(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    with connect(args, "pause") as conn:
        state = admin.pause_queue(conn, args.queue, args.reason)
    if args.json:
        print_json(jsonable(state))
    else:
        reason = f" ({state.reason})" if state.reason else ""
        print(f"queue {state.queue} paused{reason}")
    return 0


def _handle_resume(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    with connect(args, "resume") as conn:
        state = admin.resume_queue(conn, args.queue)
    if args.json:
        print_json(jsonable(state))
    else:
        print(f"queue {state.queue} resumed")
    return 0
