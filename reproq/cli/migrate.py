"""``reproq migrate``: create or upgrade the schema, printing what was applied."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from reproq.cli._common import add_dsn_arguments, dsn_from_args

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(subparsers: Subparsers) -> None:
    """Add the ``migrate`` command."""
    parser = subparsers.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description=(
            "Apply every pending schema migration, each in its own transaction. Safe to run "
            "any number of times, also from several processes at once (an advisory lock "
            "serialises them). Upgrades schemas created by reproq-django or older installs "
            "in place, keeping every row."
        ),
    )
    add_dsn_arguments(parser)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``reproq migrate``."""
    from reproq.pg.migrations import latest_version, migrate

    applied = migrate(dsn_from_args(args))
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print(f"schema is up to date (version {latest_version()})")
    return 0
