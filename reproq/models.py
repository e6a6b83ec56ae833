"""Domain values shared by every layer: task states, error kinds and row snapshots."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """The exact status strings stored in ``task_runs.status``."""

    READY = "READY"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        """True for states a task never leaves on its own."""
        return self in (TaskStatus.SUCCESSFUL, TaskStatus.FAILED, TaskStatus.CANCELLED)


ACTIVE_STATUSES: tuple[TaskStatus, ...] = (TaskStatus.READY, TaskStatus.RUNNING)
"""States covered by the unique spec_hash index (the dedup guarantee)."""


class ErrorKind(StrEnum):
    """The ``kind`` of one entry in ``task_runs.errors_json``."""

    APP_ERROR = "app_error"
    INFRA_ERROR = "infra_error"
    CANCELLED = "cancelled"
    INVALID_SPEC = "invalid_spec"
    SECURITY_VIOLATION = "security_violation"
    LEASE_EXPIRY = "lease_expiry"
    WORKFLOW_FAILED = "workflow_failed"
    EXPIRED = "expired"

    @property
    def retryable(self) -> bool:
        """Whether an attempt that failed with this kind may be retried."""
        return self in (ErrorKind.APP_ERROR, ErrorKind.INFRA_ERROR, ErrorKind.LEASE_EXPIRY)


class WorkflowStatus(StrEnum):
    """The ``status`` of a ``workflow_runs`` row."""

    RUNNING = "RUNNING"
    WAITING_CALLBACK = "WAITING_CALLBACK"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
