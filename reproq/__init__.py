"""reproq: a PostgreSQL-backed background task runner, compatible with reproq-django.

The public names below are imported on first use, so that ``import reproq.executor`` in a
task's child process (and ``reproq --help``) does not pay for the database driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reproq.errors import (
        ActionNotAllowed,
        AlreadyQueued,
        ConfigError,
        DatabaseError,
        InvalidSpec,
        LeaseLost,
        PayloadTooLarge,
        ReproqError,
        TaskNotFound,
    )
    from reproq.models import ErrorKind, TaskStatus
    from reproq.producer.client import Client, configure
    from reproq.producer.signature import Signature
    from reproq.producer.task import Task, task

__version__ = "0.1.0"

__all__ = [
    "ActionNotAllowed",
    "AlreadyQueued",
    "Client",
    "ConfigError",
    "DatabaseError",
    "ErrorKind",
    "InvalidSpec",
    "LeaseLost",
    "PayloadTooLarge",
    "ReproqError",
    "Signature",
    "Task",
    "TaskNotFound",
    "TaskStatus",
    "__version__",
    "configure",
    "task",
]

_HOMES = {
    "Client": "reproq.producer.client",
    "configure": "reproq.producer.client",
    "ActionNotAllowed": "reproq.errors",
    "AlreadyQueued": "reproq.errors",
    "ConfigError": "reproq.errors",
    "DatabaseError": "reproq.errors",
    "InvalidSpec": "reproq.errors",
    "LeaseLost": "reproq.errors",
    "PayloadTooLarge": "reproq.errors",
    "ReproqError": "reproq.errors",
    "TaskNotFound": "reproq.errors",
    "ErrorKind": "reproq.models",
    "TaskStatus": "reproq.models",
    "Signature": "reproq.producer.signature",
    "Task": "reproq.producer.task",
    "task": "reproq.producer.task",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'reproq' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
