"""The ``reproq`` command line: one front door, one sub-module per group of commands.

Each command module exposes ``register(subparsers)`` and sets ``func`` on its parser;
``func(args)`` returns the exit code. Errors derived from :class:`ReproqError` become one
line on stderr (exit 2 for usage and config errors, 1 otherwise); ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from reproq.db import redact_dsn
from reproq.errors import ReproqError

# Order is the order shown by ``reproq --help``.
_COMMAND_MODULES: tuple[str, ...] = (
    "reproq.cli.up",
    "reproq.cli.worker",
    "reproq.cli.beat",
    "reproq.cli.enqueue",
    "reproq.cli.replay",
    "reproq.cli.cancel",
    "reproq.cli.triage",
    "reproq.cli.limit",
    "reproq.cli.prune",
    "reproq.cli.pause",
    "reproq.cli.status",
    "reproq.cli.migrate",
    "reproq.cli.config",
    "reproq.cli.tui",
    "reproq.cli.stress",
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _version_line() -> str:
    from reproq import __version__

    return f"reproq {__version__}"


def _print_version(args: argparse.Namespace) -> int:
    print(_version_line())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available command registered."""
    parser = _Parser(prog="reproq", description="PostgreSQL-backed background task runner.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # `reproq --version` and `reproq version` (the Go worker's spellings, which
    # reproq-django's check and doctor run).
    parser.add_argument("--version", action="version", version=_version_line())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("version", help="print the version").set_defaults(func=_print_version)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a command group not present in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if args.debug else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        from reproq.runtime.logs import RedactingFilter

        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter())
    try:
        code: int = args.func(args)
    except ReproqError as exc:
        if args.debug:
            raise
        # Driver messages may quote the connection string.
        print(f"reproq: error: {redact_dsn(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
