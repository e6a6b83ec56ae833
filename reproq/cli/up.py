"""``reproq up [CONFIG]``: run the whole declared runtime (pools, beat, metrics) in one process."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from reproq.config import Flag

logger = logging.getLogger("reproq.up")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``up`` command."""
    parser = subparsers.add_parser(
        "up",
        help="run worker pools, beat and metrics as declared in a config file",
        description=(
            "Apply migrations, sync the config's queues, limits and schedules into the "
            "database, then run one worker per [[pools]] entry, the beat and the metrics "
            "server until SIGTERM/SIGINT (a second signal forces). SIGHUP reloads "
            "schedules, queues and limits from the file. Without a DSN anywhere, an "
            "embedded PostgreSQL is started in the data directory and stopped on exit."
        ),
    )
    parser.add_argument(
        "config_file",
        nargs="?",
        metavar="CONFIG",
        help="config file, TOML or YAML (default: $REPROQ_CONFIG, else reproq.yaml, "
        "reproq.yml or reproq.toml in the working directory, else built-in defaults)",
    )
    parser.add_argument("--config", metavar="FILE", help="same as CONFIG")
    parser.add_argument("--dsn", help="PostgreSQL DSN (overrides the config and environment)")
    parser.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply migrations; fail unless the schema is up to date",
    )
    parser.add_argument("--worker-id", help="base worker id (pools append -<pool name>)")
    parser.add_argument(
        "--concurrency",
        metavar="N",
        help="slots of the pool (only for a config with a single pool)",
    )
    parser.add_argument(
        "--queues", help="comma-separated queues of the pool (only for a single pool)"
    )
    parser.add_argument(
        "--shutdown-timeout",
        metavar="DURATION",
        help="how long running tasks may finish on shutdown, e.g. 30s",
    )
    parser.add_argument("--no-beat", action="store_true", help="do not run the beat")
    parser.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve /metrics here")
    parser.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-json", action="store_true", default=None, help="log JSON lines")
    parser.set_defaults(func=handle)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags as dotted setting keys (None: not given)."""
    # Text values are parsed like environment variables ("a,b", "30s").
    return {
        "database.dsn": Flag(args.dsn, "--dsn"),
        "worker.worker_id": Flag(args.worker_id, "--worker-id"),
        "worker.concurrency": Flag(args.concurrency, "--concurrency"),
        "worker.queues": Flag(args.queues, "--queues"),
        "worker.shutdown_timeout": Flag(args.shutdown_timeout, "--shutdown-timeout"),
        "beat.enabled": Flag(False if args.no_beat else None, "--no-beat"),
        "metrics.addr": Flag(args.metrics_addr, "--metrics-addr"),
        "metrics.enabled": Flag(
            False if args.no_metrics else (True if args.metrics_addr else None), "--no-metrics"
        ),
        "logging.level": Flag(args.log_level, "--log-level"),
        "logging.json": Flag(args.log_json, "--log-json"),
    }


def handle(args: argparse.Namespace) -> int:
    """Run ``reproq up``."""
    from psycopg.conninfo import conninfo_to_dict

    from reproq.config import load_settings, resolve_config_path
    from reproq.runtime.logs import setup_logging
    from reproq.runtime.supervisor import Runtime

    path: Path | None = resolve_config_path(args.config_file or args.config)
    overrides = _overrides(args)
    settings = load_settings(path, overrides=overrides)

    secrets: list[str | None] = [settings.metrics.auth_token]
    if settings.database.dsn:
        # A malformed DSN fails clearly at connect time; here it only has no password.
        with contextlib.suppress(Exception):
            secrets.append(str(conninfo_to_dict(settings.database.dsn).get("password") or ""))
    setup_logging(level=settings.logging.level, json_lines=settings.logging.json, secrets=secrets)
    source = f"config {path}" if path is not None else "built-in defaults (no config file)"
    logger.info("reproq up: %s (pid %d)", source, os.getpid())
    for warning in settings.warnings:
        logger.warning("config: %s", warning)

    def reload_settings() -> Any:
        return load_settings(path, overrides=overrides)

    runtime = Runtime(
        settings,
        migrate=not args.no_migrate,
        reload_settings=reload_settings if path is not None else None,
    )
    code = runtime.run_until_signalled()
    if runtime.abandoned_threads():
        # Tasks that ignored the forced stop would keep the interpreter alive at exit.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    return code
