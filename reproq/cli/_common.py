"""Arguments and helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
from typing import Any

from reproq.db import resolve_dsn


def add_dsn_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dsn`` (default ``$DATABASE_URL``) and ``--config FILE`` (default ``$REPROQ_CONFIG``)."""
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: $DATABASE_URL)")
    parser.add_argument(
        "--config", metavar="FILE", help="reproq TOML config to take the database from"
    )


def dsn_from_args(args: argparse.Namespace) -> str:
    """The DSN a command should use: --dsn, else $DATABASE_URL, else the config file's."""
    explicit: str | None = getattr(args, "dsn", None)
    if explicit:
        return explicit
    from reproq.config import dsn_for_command

    found = dsn_for_command(getattr(args, "config", None))
    return found if found is not None else resolve_dsn(None)


def print_json(value: Any) -> None:
    """Print a JSON document (sorted keys, ISO dates) to stdout."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))
