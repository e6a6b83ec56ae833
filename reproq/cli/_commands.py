"""Building blocks of the operations commands (replay, cancel, triage, limit, prune,
pause, resume, status): a command or group with the database and ``--json`` flags, one
short connection, and flag checks with one wording.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from reproq.cli._common import add_dsn_arguments, dsn_from_args
from reproq.db import Conn, connection
from reproq.errors import UsageError

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["command", "connect", "duration", "group", "positive"]


def command(
    subparsers: Subparsers,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str | None = None,
    json_flag: bool = False,
) -> argparse.ArgumentParser:
    """Add command ``name`` with ``--dsn``/``--config`` (and ``--json``) running ``handler``."""
    parser = subparsers.add_parser(name, help=help, description=description or help)
    add_dsn_arguments(parser)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=handler)
    return parser


def group(subparsers: Subparsers, name: str, *, help: str) -> Subparsers:
    """Add command group ``name``; run without a sub-command it is a usage error."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(func=lambda _args: _usage(parser))
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


def _usage(parser: argparse.ArgumentParser) -> int:
    raise UsageError(f"{parser.prog} needs a command (see `{parser.prog} --help`)")


def connect(args: argparse.Namespace, name: str) -> AbstractContextManager[Conn]:
    """One short connection for command ``name``, to the database the flags name."""
    return connection(dsn_from_args(args), application_name=f"reproq-{name}")


def positive(value: int | None, flag: str) -> int | None:
    """``value`` unchanged; a :class:`UsageError` naming ``flag`` when it is below 1."""
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be a positive integer, got {value}")
    return value


def duration(text: str, flag: str, *, allow_zero: bool = False) -> dt.timedelta:
    """``text`` (``7d``, ``90s``) as a duration; zero only with ``allow_zero``."""
    from reproq.durations import parse_duration

    seconds = parse_duration(text, key=flag)
    if seconds <= 0 and not allow_zero:
        raise UsageError(f"{flag} must be greater than zero, got {text!r}")
    return dt.timedelta(seconds=seconds)
