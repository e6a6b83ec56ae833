"""``reproq beat``: run the periodic-task scheduler on its own (seed-compatible).

Its settings come from the one loader like every command's: the interval is the config's
``beat.tick`` (the Go worker's ``beat.interval``) unless ``--interval`` is given; when
neither says, 30 seconds, the Go worker's default.
Like ``reproq worker``, it first applies pending schema migrations unless ``--no-migrate``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from reproq.cli._common import (
    add_dsn_arguments,
    add_migrate_argument,
    command_settings,
    database_dsn,
    prepare_database,
)
from reproq.config import Flag

if TYPE_CHECKING:
    from reproq.schedule.beat import Beat

DEFAULT_INTERVAL = 30.0
"""Seconds between ticks when neither the flag nor the config sets one."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``beat`` command."""
    parser = subparsers.add_parser(
        "beat",
        help="enqueue periodic tasks when their cron schedule is due",
        description=(
            "Enqueue rows of periodic_tasks when they are due. Any number of beats may run; "
            "one leads (PostgreSQL advisory lock) and each fire time is enqueued once."
        ),
    )
    add_dsn_arguments(parser)
    parser.add_argument(
        "--interval",
        metavar="DURATION",
        help="time between ticks, e.g. 30s, 1m, 500ms (default: the config's beat.tick, "
        f"else {DEFAULT_INTERVAL:g}s)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one tick (leader or not), print how many runs were enqueued, and exit",
    )
    parser.add_argument("--name", help="name of this beat in logs (default: host:pid)")
    add_migrate_argument(parser)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``reproq beat``."""
    from reproq.schedule.beat import Beat

    settings = command_settings(args, {"beat.tick": Flag(args.interval, "--interval")})
    configured = settings.source_of("beat.tick") != "default"
    interval = settings.beat.tick if configured else DEFAULT_INTERVAL
    dsn = database_dsn(settings)
    prepare_database(dsn, args, application_name="reproq-beat")
    beat = Beat(dsn, tick=interval, name=args.name)
    if args.once:
        with beat:
            count = beat.run_once()
        print(f"enqueued {count}")
        return 0
    _run_until_signalled(beat)
    return 0


def _run_until_signalled(beat: Beat) -> None:
    """Run the beat until SIGTERM/SIGINT; a second signal ends the process within seconds
    even if the beat is stuck (on a frozen database, say)."""
    from reproq.runtime.forced_exit import FORCED_EXIT_SECONDS, exit_later

    stop = threading.Event()
    forced: list[threading.Event] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and not forced:
            forced.append(exit_later(FORCED_EXIT_SECONDS, what=f"beat {beat.name}"))
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        beat.run(stop)
    finally:
        for done in forced:
            done.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
