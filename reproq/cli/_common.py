"""Arguments and helpers shared by the command modules.

Every command that takes ``--config``/``--dsn`` builds its settings through the one
loader (:func:`reproq.config.load_settings`): flags are its ``overrides``, so defaults <
file < environment < flags holds the same way everywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from typing import Any

from reproq.config import Flag, Settings, load_settings, resolve_config_path
from reproq.db import resolve_dsn
from reproq.errors import ConfigError


def add_dsn_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dsn`` and ``--config FILE`` (default ``$REPROQ_CONFIG``, else ``reproq.yaml`` …)."""
    parser.add_argument(
        "--dsn", help="PostgreSQL DSN (default: $REPROQ_DSN, $DATABASE_URL, the config's)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="reproq config, TOML or YAML (default: $REPROQ_CONFIG, else reproq.yaml, "
        "reproq.yml or reproq.toml in the working directory)",
    )


def add_migrate_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-migrate``, for the commands that run on the database (``worker``, ``beat``)."""
    parser.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply pending migrations at start; fail unless the schema is up to date",
    )


def prepare_database(dsn: str, args: argparse.Namespace, *, application_name: str) -> None:
    """Connect to *dsn* and apply pending migrations unless ``--no-migrate`` was given.

    A reproq-django project's database has the tables that Django's ``migrate`` made and
    no reproq migration yet: the Go worker ran on it as it was, so ``manage.py reproq
    worker`` must too, with no ``reproq migrate`` step in between.
    """
    from reproq.db import redact_dsn
    from reproq.pg.migrations import prepare_schema

    version, applied = prepare_schema(
        dsn, apply=not args.no_migrate, application_name=application_name
    )
    if applied:
        logging.getLogger("reproq.cli").info(
            "database %s: applied %s (schema version %d)",
            redact_dsn(dsn),
            ", ".join(applied),
            version,
        )


def command_settings(
    args: argparse.Namespace, overrides: Mapping[str, object] | None = None
) -> Settings:
    """The command's settings: defaults < its config file < the environment < its flags."""
    path = resolve_config_path(getattr(args, "config", None))
    flags: dict[str, object] = {"database.dsn": Flag(getattr(args, "dsn", None), "--dsn")}
    flags.update(overrides or {})
    return load_settings(path, overrides=flags)


def database_dsn(settings: Settings) -> str:
    """The DSN *settings* name (flag, environment or file); without one, that of the
    config's embedded PostgreSQL while ``reproq up`` runs it; else a clear error."""
    if settings.database.dsn:
        return settings.database.dsn
    path = settings.source_file
    if path is None:
        return resolve_dsn(None)  # says where a DSN can come from
    from reproq.pg.cluster import attach_dsn

    data_dir = settings.database.embedded_data_dir
    dsn = attach_dsn(data_dir)
    if dsn is None:
        raise ConfigError(
            f"{path} has no database.dsn and its embedded PostgreSQL ({data_dir}) is not "
            f"running; start it with `reproq up {path}` or pass --dsn"
        )
    return dsn


def dsn_from_args(args: argparse.Namespace) -> str:
    """The DSN a command should use (see :func:`command_settings`, :func:`database_dsn`)."""
    return database_dsn(command_settings(args))


def print_json(value: Any) -> None:
    """Print a JSON document (sorted keys, ISO dates) to stdout."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))
