"""``reproq tui``: the terminal UI (Textual is imported only when the command runs)."""

from __future__ import annotations

import argparse

from reproq.cli._common import add_dsn_arguments, dsn_from_args
from reproq.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``reproq tui``."""
    parser = sub.add_parser(
        "tui",
        help="live monitoring, retry, replay, cancel and pause in the terminal",
        description=(
            "A live view of the queue: overview, queues, tasks, workers and schedules, "
            "with retry, replay, cancel and pause/resume. Press ? inside for every key."
        ),
    )
    add_dsn_arguments(parser)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="show generated data instead of a database (to try the interface)",
    )
    parser.set_defaults(func=run_tui)


def run_tui(args: argparse.Namespace) -> int:
    """Start the app on the database (or on demo data) until the user quits."""
    from reproq.clock import SystemClock
    from reproq.tui.app import ReproqApp
    from reproq.tui.demo_source import DemoSource
    from reproq.tui.source import DataSource, PostgresSource

    source: DataSource
    if args.demo:
        if args.dsn or args.config:
            raise UsageError("--demo shows generated data: leave out --dsn and --config")
        source = DemoSource(SystemClock())
    else:
        pg = PostgresSource(dsn_from_args(args))
        # A wrong DSN or a missing schema is reported here, as one line, rather than as
        # a "down" screen.
        pg.check()
        source = pg
    try:
        ReproqApp(source).run()
    finally:
        source.close()
    return 0
