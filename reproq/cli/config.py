"""``reproq config check|show|init``: validate, explain and start a config file (TOML or YAML)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reproq.errors import UsageError

DEFAULT_PATH = "reproq.toml"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``config`` command group."""
    parser = subparsers.add_parser(
        "config",
        help="check, show or create a reproq config (TOML or YAML)",
        description=(
            "Check, show or create a reproq config, TOML or YAML (see docs/configuration.md)."
        ),
    )
    commands = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    check = commands.add_parser(
        "check",
        help="report every problem in config files (exit 2 if any)",
        description=(
            "Validate config files and report all problems at once, one per line as "
            "FILE:LINE: KEY: MESSAGE. Environment variables are applied, so ${VAR} "
            "references must resolve."
        ),
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="config file(s) to check")
    check.set_defaults(func=handle_check)

    show = commands.add_parser(
        "show",
        help="print the effective config as TOML with the source of each value",
        description=(
            "Print the effective settings (defaults < file < environment) as TOML; each "
            "value is followed by its source. Passwords and tokens are redacted."
        ),
    )
    show.add_argument(
        "file", nargs="?", metavar="FILE", help="config file (default: $REPROQ_CONFIG, else none)"
    )
    show.set_defaults(func=handle_show)

    init = commands.add_parser(
        "init",
        help="write a commented starter config (TOML, or YAML for a .yaml/.yml path)",
        description="Write a commented starter config file: YAML when PATH ends in .yaml "
        "or .yml, else TOML.",
    )
    init.add_argument(
        "path", nargs="?", default=DEFAULT_PATH, metavar="PATH", help=f"(default: {DEFAULT_PATH})"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=handle_init)


def handle_check(args: argparse.Namespace) -> int:
    """Run ``reproq config check``: 0 when every file is valid, 2 otherwise."""
    from reproq.config import check_file, load_settings

    failed = False
    for name in args.files:
        problems = check_file(name)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            failed = True
            continue
        for warning in load_settings(name).warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{name}: ok")
    return 2 if failed else 0


def handle_show(args: argparse.Namespace) -> int:
    """Run ``reproq config show``."""
    from reproq.config import load_settings, resolve_config_path, show_settings

    print(show_settings(load_settings(resolve_config_path(args.file))), end="")
    return 0


def handle_init(args: argparse.Namespace) -> int:
    """Run ``reproq config init``."""
    from reproq.config import starter_config

    path = Path(args.path)
    if path.exists() and not args.force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir():
        raise UsageError(f"{path} is a directory")
    try:
        path.write_text(starter_config(path), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    print(f"wrote {path}; check it with `reproq config check {path}`")
    return 0
