"""reproq: a PostgreSQL-backed background task runner, compatible with reproq-django."""

from __future__ import annotations

from reproq.client import Client, configure
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
from reproq.task import Signature, Task, task

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
