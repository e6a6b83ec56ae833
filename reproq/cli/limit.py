"""``reproq limit set|ls|rm``: the token-bucket rate limits (``global``, ``task:``, ``queue:``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reproq.cli._commands import command, connect, group
from reproq.cli._common import print_json
from reproq.cli.render import jsonable, rate, table

if TYPE_CHECKING:
    from reproq.cli._commands import Subparsers


def register(subparsers: Subparsers) -> None:
    """Add ``limit`` with ``set``, ``ls`` and ``rm``."""
    sub = group(subparsers, "limit", help="token-bucket rate limits (global, task:, queue:)")
    set_ = command(
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
    command(sub, "ls", _handle_limit_ls, help="list rate limits", json_flag=True)
    rm = command(
        sub,
        "rm",
        _handle_limit_rm,
        help="remove a rate limit ('global' is reset to no limit)",
        json_flag=True,
    )
    rm.add_argument("--key", required=True, metavar="K")


def _handle_limit_set(args: argparse.Namespace) -> int:
    from reproq.ops import admin

    with connect(args, "limit") as conn:
        lim = admin.set_limit(conn, args.key, args.rate, args.burst)
    if args.json:
        print_json(jsonable(lim))
    else:
        print(f"rate limit {lim.key}: {rate(lim.tokens_per_second)}, burst {lim.burst_size}")
    return 0


def _handle_limit_ls(args: argparse.Namespace) -> int:
    from reproq.ops import observe

    with connect(args, "limit") as conn:
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
                    rate(lim.tokens_per_second),
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

    with connect(args, "limit") as conn:
        removed = admin.remove_limit(conn, args.key)
    if args.json:
        print_json(jsonable(removed))
    elif removed.reset:
        print("rate limit global reset to no limit (the global row is kept)")
    else:
        print(f"removed rate limit {removed.key}")
    return 0
