"""Health of a ``reproq up`` process, as ``/healthz`` reports it.

A process is healthy when its database answers and every component it supervises (pools,
beat, metrics server) is running. Anything else is unhealthy, with one reason per problem,
so a load balancer or an orchestrator can restart or drain it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from reproq import __version__
from reproq.db import redact_dsn

__all__ = ["ComponentState", "HealthCheck", "HealthReport"]


class ComponentState(StrEnum):
    """Lifecycle of one supervised component."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    """It died unexpectedly and waits for its next start (with backoff)."""
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, kw_only=True, slots=True)
class HealthReport:
    """The verdict of one health check."""

    ok: bool
    reasons: tuple[str, ...] = ()
    """Why the process is unhealthy (empty when :attr:`ok`)."""
    components: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Component name → :class:`ComponentState` value."""

    @property
    def http_status(self) -> int:
        """200 when healthy, else 503."""
        return 200 if self.ok else 503

    @property
    def text(self) -> str:
        """The plain ``/healthz`` body, Reproq Worker's: ``ok`` or ``unhealthy``."""
        return "ok" if self.ok else "unhealthy"

    def to_json(self) -> dict[str, Any]:
        """The detailed ``/healthz`` body (``Accept: application/json``)."""
        body: dict[str, Any] = {
            "status": "ok" if self.ok else "unavailable",
            "version": __version__,
            "components": dict(self.components),
        }
        if self.reasons:
            body["reasons"] = list(self.reasons)
        return body


class HealthCheck:
    """Combines a database probe and component states into a :class:`HealthReport`.

    *db_problem* returns None when the database answers, else the reason (it should be
    cached: ``/healthz`` may be polled often). *components* returns each component's
    current :class:`ComponentState`; one starting, restarting, or stopped while the
    process is not shutting down makes the process unhealthy.
    """

    def __init__(
        self,
        *,
        db_problem: Callable[[], str | None],
        components: Callable[[], Mapping[str, ComponentState]],
        shutting_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self._db_problem = db_problem
        self._components = components
        self._shutting_down = shutting_down

    def __call__(self) -> HealthReport:
        """Check now."""
        reasons: list[str] = []
        states = dict(self._components())
        shutting_down = self._shutting_down()
        if shutting_down:
            reasons.append("shutting down")
        for name, state in sorted(states.items()):
            if state is ComponentState.RESTARTING:
                reasons.append(f"{name} died and is being restarted")
            elif state is ComponentState.STARTING:
                reasons.append(f"{name} is starting")
            elif state is ComponentState.STOPPED and not shutting_down:
                reasons.append(f"{name} stopped")
        problem = self._db_problem()
        if problem is not None:
            # Driver messages may quote the connection string; the body is served to clients.
            reasons.append(f"database unreachable: {redact_dsn(problem)}")
        return HealthReport(
            ok=not reasons,
            reasons=tuple(reasons),
            components=MappingProxyType({k: str(v) for k, v in states.items()}),
        )
