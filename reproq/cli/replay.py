"""``reproq replay``: a new READY run from the spec of an existing one."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reproq.cli._commands import command, connect, positive
from reproq.cli._common import print_json
from reproq.cli.render import jsonable

if TYPE_CHECKING:
    from reproq.cli._commands import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add ``replay``."""
    parser = command(
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

    positive(args.id, "--id")
    with connect(args, "replay") as conn:
        result = admin.replay(conn, result_id=args.id, spec_hash=args.spec_hash)
    if args.json:
        print_json(jsonable(result))
    else:
        print(f"replayed task {result.source_id} as task {result.new_id}")
    return 0
