"""The one exception tree of reproq: every subclass is something a caller can act on."""

from __future__ import annotations


class ReproqError(Exception):
    """Root of every error reproq raises on purpose."""

    exit_code: int = 1


class UsageError(ReproqError):
    """The caller asked for something malformed (bad flag value, bad JSON argument)."""

    exit_code = 2


class ConfigError(ReproqError):
    """A configuration problem, located by file, key path and line when known."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class DatabaseError(ReproqError):
    """The database could not be reached or refused an operation."""


class SchemaError(DatabaseError):
    """The database schema is missing or older than this version of reproq expects."""


class AlreadyQueued(ReproqError):
    """An identical spec is already READY or RUNNING and duplicates were refused."""

    def __init__(self, spec_hash: str, existing_id: int) -> None:
        self.spec_hash = spec_hash
        self.existing_id = existing_id
        super().__init__(
            f"an identical task is already queued or running as result_id {existing_id} "
            f"(spec_hash {spec_hash})"
        )


class TaskNotFound(ReproqError):
    """No task run has the given id (or spec hash)."""


class LeaseLost(ReproqError):
    """The worker no longer holds the lease it tried to renew or finish."""


class ActionNotAllowed(ReproqError):
    """An operation is not allowed in the row's current state."""


class InvalidSpec(ReproqError):
    """A task spec is malformed or cannot be encoded."""


class TaskNotAllowed(ReproqError):
    """A task path that must not be executed: outside the allow-list, a private name, or a
    path that reaches a callable not defined in the module it names."""


class PayloadTooLarge(ReproqError):
    """A spec or result exceeds the configured byte limit."""


class LocalServerError(DatabaseError):
    """A local PostgreSQL cluster could not be found, created, started or stopped."""


class NotFound(ReproqError):
    """A named object other than a task run (a rate limit, a schedule) does not exist."""


class TaskCancelled(ReproqError):
    """Raised inside a running task that was asked to stop (see :mod:`reproq.context`)."""
