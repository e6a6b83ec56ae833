"""Syncing the configured ``[[schedules]]`` into ``periodic_tasks``, the table beat reads.

:func:`sync_schedules` upserts one row per configured schedule by name, in one
transaction under an advisory lock, so two processes starting with the same file do not
race. A row's ``next_run_at`` survives a restart unless its timing changed, and rows no
longer configured are disabled, never deleted (reproq-django may own them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from psycopg.types.json import Jsonb

from reproq.db import Conn, translate_errors
from reproq.errors import ConfigError, InvalidSpec
from reproq.queries import q
from reproq.schedule.cron import CronSchedule, MisfirePolicy
from reproq.spec import build_spec, encode_value

__all__ = ["BEAT_SYNC_LOCK_ID", "CONFIG_OWNER", "ScheduleLike", "SyncReport", "sync_schedules"]

BEAT_SYNC_LOCK_ID = 0x7265_7072_6F71_0003
"""Transaction advisory lock key serialising :func:`sync_schedules` runs."""


class ScheduleLike(Protocol):
    """What :func:`sync_schedules` reads from one configured schedule.

    ``reproq.config.ScheduleSettings`` fits; so does any object with these attributes.
    ``concurrency_key`` / ``concurrency_limit`` are read when present.
    """

    @property
    def name(self) -> str: ...
    @property
    def cron(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def args(self) -> Sequence[Any]: ...
    @property
    def kwargs(self) -> Mapping[str, Any]: ...
    @property
    def queue(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def misfire(self) -> str: ...
    @property
    def misfire_limit(self) -> int: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncReport:
    """What :func:`sync_schedules` changed, by schedule name (each tuple sorted)."""

    created: tuple[str, ...] = ()
    """New rows."""
    updated: tuple[str, ...] = ()
    """Existing rows whose settings changed."""
    rescheduled: tuple[str, ...] = ()
    """Rows whose ``next_run_at`` was recomputed (cron or zone changed, or re-enabled)."""
    disabled: tuple[str, ...] = ()
    """Enabled rows the config created that are no longer in it, now disabled (never deleted)."""
    unchanged: tuple[str, ...] = ()
    """Configured rows already matching the config."""
    not_owned: tuple[str, ...] = ()
    """Configured names whose existing row no config created (reproq-django's, or one
    written by hand): left exactly as they are."""


CONFIG_OWNER = "reproq-config"
"""``periodic_tasks.managed_by`` of the rows that ``[[schedules]]`` in a config created."""


def sync_schedules(conn: Conn, schedules: Sequence[ScheduleLike], *, now: datetime) -> SyncReport:
    """Make the config's own ``periodic_tasks`` rows match the configured schedules.

    A config owns the rows it created (``managed_by`` = :data:`CONFIG_OWNER`) and only
    those: a configured name whose row someone else wrote (reproq-django, an operator) is
    left as it is and reported in ``not_owned``, and only owned rows that left the config
    are disabled (never deleted). The stored ``cron_expr`` carries a ``CRON_TZ=Zone``
    prefix when the zone is not UTC (the form reproq-django reads). ``next_run_at`` is
    recomputed as the first fire time after ``now`` only for new rows, when the cron or
    zone changed, or when a disabled row is enabled again (time spent disabled is not a
    misfire); otherwise it is kept, so a restart neither skips nor repeats a run. Runs in
    one transaction (or within the caller's). Raises :class:`ConfigError` for a bad cron,
    zone, task path, misfire policy or a duplicate name.
    """
    desired = _validate_schedules(schedules)
    created: list[str] = []
    updated: list[str] = []
    rescheduled: list[str] = []
    unchanged: list[str] = []
    not_owned: list[str] = []
    with translate_errors(), conn.transaction():
        conn.execute(q("beat_sync_lock"), {"lock_id": BEAT_SYNC_LOCK_ID})
        existing = {row["name"]: row for row in conn.execute(q("beat_sync_existing")).fetchall()}
        for name, (schedule, params) in desired.items():
            row = existing.get(name)
            if row is not None and row["managed_by"] != CONFIG_OWNER:
                not_owned.append(name)
                continue
            if row is None:
                params["next_run_at"] = schedule.next_after(now)
                conn.execute(q("beat_sync_insert"), _with_json(params))
                created.append(name)
                continue
            if _needs_reschedule(row, schedule, params):
                params["next_run_at"] = schedule.next_after(now)
                rescheduled.append(name)
            else:
                params["next_run_at"] = row["next_run_at"]
            if any(row[key] != value for key, value in params.items() if key != "name"):
                conn.execute(q("beat_sync_update"), _with_json(params))
                updated.append(name)
            else:
                unchanged.append(name)
        gone = sorted(
            name
            for name, row in existing.items()
            if name not in desired and row["enabled"] and row["managed_by"] == CONFIG_OWNER
        )
        if gone:
            conn.execute(q("beat_sync_disable"), {"names": gone, "managed_by": CONFIG_OWNER})
    return SyncReport(
        created=tuple(sorted(created)),
        updated=tuple(sorted(updated)),
        rescheduled=tuple(sorted(rescheduled)),
        disabled=tuple(gone),
        unchanged=tuple(sorted(unchanged)),
        not_owned=tuple(sorted(not_owned)),
    )


def _validate_schedules(
    schedules: Sequence[ScheduleLike],
) -> dict[str, tuple[CronSchedule, dict[str, Any]]]:
    """Row parameters per schedule name, or a ConfigError naming the first bad schedule."""
    desired: dict[str, tuple[CronSchedule, dict[str, Any]]] = {}
    for item in schedules:
        name = item.name
        where = f"schedules.{name}"
        if not name:
            raise ConfigError("a schedule has an empty name", key="schedules")
        if name in desired:
            raise ConfigError(f"duplicate schedule name {name!r}", key=where)
        try:
            schedule = CronSchedule.parse(item.cron, item.timezone)
        except ValueError as exc:
            raise ConfigError(str(exc), key=f"{where}.cron") from None
        try:
            policy = MisfirePolicy(str(item.misfire))
        except ValueError:
            choices = ", ".join(p.value for p in MisfirePolicy)
            raise ConfigError(
                f"unknown misfire policy {item.misfire!r} (choose one of {choices})",
                key=f"{where}.misfire",
            ) from None
        if item.misfire_limit < 1:
            raise ConfigError("misfire_limit must be at least 1", key=f"{where}.misfire_limit")
        if item.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1", key=f"{where}.max_attempts")
        try:
            # Builds the same spec beat will, so a bad task path or argument fails here.
            build_spec(item.task, list(item.args), dict(item.kwargs))
            payload = {
                "args": encode_value(list(item.args), where=f"{where}.args"),
                "kwargs": encode_value(dict(item.kwargs), where=f"{where}.kwargs"),
            }
        except InvalidSpec as exc:
            raise ConfigError(str(exc), key=where) from None
        params: dict[str, Any] = {
            "name": name,
            "cron_expr": schedule.stored_form,
            "task_path": item.task,
            "payload_json": payload,
            "queue_name": item.queue,
            "priority": int(item.priority),
            "max_attempts": int(item.max_attempts),
            "concurrency_key": getattr(item, "concurrency_key", None),
            "concurrency_limit": int(getattr(item, "concurrency_limit", 0) or 0),
            "enabled": bool(item.enabled),
            "misfire_policy": policy.value,
            "misfire_limit": int(item.misfire_limit),
            "managed_by": CONFIG_OWNER,
        }
        desired[name] = (schedule, params)
    return desired


def _needs_reschedule(
    row: Mapping[str, Any], schedule: CronSchedule, params: Mapping[str, Any]
) -> bool:
    """Whether the stored row's next_run_at no longer follows the configured schedule."""
    if params["enabled"] and not row["enabled"]:
        return True
    try:
        stored = CronSchedule.parse(row["cron_expr"])
    except ValueError:
        return True
    return stored != schedule


def _with_json(params: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(params)
    out["payload_json"] = Jsonb(out["payload_json"])
    return out
