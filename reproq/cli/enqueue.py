"""``reproq enqueue``: put one task run on the queue from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from typing import TYPE_CHECKING, Any

from reproq.cli._common import add_dsn_arguments, dsn_from_args, print_json
from reproq.errors import InvalidSpec, PayloadTooLarge, UsageError
from reproq.spec import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_SECONDS

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(subparsers: Subparsers) -> None:
    """Add the ``enqueue`` command."""
    parser = subparsers.add_parser(
        "enqueue",
        help="enqueue one task run and print its result id",
        description=(
            "Enqueue TASK_PATH (a dotted path such as myapp.tasks.send_email) with JSON "
            "arguments. An identical spec that is already READY or RUNNING is not queued "
            "twice: its result id is printed instead (or, with --no-dedup, it is an error)."
        ),
    )
    add_dsn_arguments(parser)
    parser.add_argument("task_path", metavar="TASK_PATH")
    parser.add_argument("--args", default="[]", metavar="JSON", help="a JSON array (default [])")
    parser.add_argument("--kwargs", default="{}", metavar="JSON", help="a JSON object (default {})")
    parser.add_argument("--queue", default="default", help="queue name (default: default)")
    parser.add_argument("--priority", type=int, default=0, help="higher runs sooner (default 0)")
    parser.add_argument(
        "--run-after", metavar="WHEN", help="not before this time: ISO 8601, or +30s, +1h"
    )
    parser.add_argument("--lock-key", help="at most one RUNNING task per lock key")
    parser.add_argument("--concurrency-key", help="limit RUNNING tasks sharing this key")
    parser.add_argument(
        "--concurrency-limit", type=int, default=0, metavar="N", help="0 = unlimited (default)"
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help=f"attempts before FAILED (default {DEFAULT_MAX_ATTEMPTS})",
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        help=f"per-attempt timeout, seconds or e.g. 5m (default {DEFAULT_TIMEOUT_SECONDS}s)",
    )
    parser.add_argument(
        "--expires-in", metavar="DURATION", help="not run at all after this long, e.g. 1h"
    )
    parser.add_argument(
        "--no-dedup",
        action="store_true",
        help="fail instead of returning the id of an identical active task",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.set_defaults(func=handle)


def _json_arg(text: str, flag: str, kind: type[Any]) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{flag} is nested too deeply to read") from None
    if not isinstance(value, kind):
        raise UsageError(f"{flag} must be a JSON {_json_type(kind())}, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def handle(args: argparse.Namespace) -> int:
    """Run ``reproq enqueue``."""
    from reproq.db import connection
    from reproq.durations import parse_duration, parse_when
    from reproq.producer.enqueue import insert_task
    from reproq.producer.signature import Signature
    from reproq.spec import validate_task_path

    try:
        validate_task_path(args.task_path)
    except InvalidSpec as exc:
        raise UsageError(str(exc)) from None
    task_args = _json_arg(args.args, "--args", list)
    task_kwargs = _json_arg(args.kwargs, "--kwargs", dict)
    if args.max_attempts < 1:
        raise UsageError(f"--max-attempts must be a positive integer, got {args.max_attempts}")
    if args.concurrency_limit < 0:
        raise UsageError(f"--concurrency-limit must be >= 0, got {args.concurrency_limit}")
    if args.concurrency_limit and not args.concurrency_key:
        raise UsageError("--concurrency-limit needs --concurrency-key")
    timeout = DEFAULT_TIMEOUT_SECONDS
    if args.timeout is not None:
        seconds = parse_duration(args.timeout, key="--timeout")
        if seconds <= 0:
            raise UsageError(f"--timeout must be greater than zero, got {args.timeout!r}")
        timeout = math.ceil(seconds)
    expires_in: dt.timedelta | None = None
    if args.expires_in is not None:
        seconds = parse_duration(args.expires_in, key="--expires-in")
        if seconds <= 0:
            raise UsageError(f"--expires-in must be greater than zero, got {args.expires_in!r}")
        expires_in = dt.timedelta(seconds=seconds)
    now = dt.datetime.now(dt.UTC)
    run_after = parse_when(args.run_after, now, key="--run-after") if args.run_after else None

    # The flags' values are the caller's input: a value the spec refuses is a usage error.
    try:
        sig = Signature(
            task_path=args.task_path,
            args=tuple(task_args),
            kwargs=task_kwargs,
            queue=args.queue,
            priority=args.priority,
            run_after=run_after,
            lock_key=args.lock_key,
            concurrency_key=args.concurrency_key,
            concurrency_limit=args.concurrency_limit,
            max_attempts=args.max_attempts,
            timeout_seconds=timeout,
            expires_in=expires_in,
        )
        row = sig.to_new_task(now=now)
        row.validate()
    except (InvalidSpec, PayloadTooLarge) as exc:
        raise UsageError(str(exc)) from None
    with connection(dsn_from_args(args), application_name="reproq-enqueue") as conn:
        result_id = insert_task(conn, row, dedup=not args.no_dedup)
    if args.json:
        print_json(
            {
                "result_id": result_id,
                "task_path": row.task_path,
                "queue_name": row.queue_name,
                "spec_hash": row.spec_hash,
                "run_after": row.run_after.isoformat() if row.run_after else None,
            }
        )
    else:
        print(result_id)
    return 0
