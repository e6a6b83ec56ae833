"""Applying a config file to the database: queue controls, rate limits and schedules.

``reproq up`` syncs them at start (:func:`sync`) and again on SIGHUP
(:func:`apply_reload`), through :mod:`reproq.ops.admin` for queues and limits and
:func:`reproq.schedule.beat.sync_schedules` for ``periodic_tasks``. A reload applies all
of the file or, on an error, none of it; settings that only take effect at start (pools,
worker, database, metrics, beat) are reported as needing a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from reproq.config import QueueSettings, RateLimitSettings, Settings
from reproq.db import Conn
from reproq.errors import NotFound
from reproq.schedule.sync import SyncReport, sync_schedules

__all__ = ["ReloadReport", "apply_reload", "sync"]

logger = logging.getLogger("reproq.runtime")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReloadReport:
    """What :meth:`Runtime.reload` changed (or why it changed nothing)."""

    applied: bool
    """False when the new file was invalid and the running configuration was kept."""
    errors: tuple[str, ...] = ()
    schedules: SyncReport | None = None
    queues_changed: tuple[str, ...] = ()
    limits_set: tuple[str, ...] = ()
    limits_removed: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    """Top-level sections whose changes only take effect when the process restarts."""


def sync(
    conn: Conn, settings: Settings, *, previous: Settings | None, now: dt.datetime
) -> ReloadReport:
    """Sync the queues, limits and schedules of *settings* (*previous*: those running)."""
    # One transaction: a reload applies all of the file or, on an error, none of it.
    with conn.transaction():
        queues = _sync_queues(conn, settings, previous)
        limits_set, limits_removed = _sync_limits(conn, settings, previous)
        schedules = _sync_schedules(conn, settings, previous, now)
    return ReloadReport(
        applied=True,
        schedules=schedules,
        queues_changed=queues,
        limits_set=limits_set,
        limits_removed=limits_removed,
    )


def apply_reload(
    conn: Conn, old: Settings, new: Settings, *, now: dt.datetime
) -> tuple[Settings, ReloadReport]:
    """Apply what can change while running of *new*; the settings to run on and a report.

    Raises a :class:`~reproq.errors.ReproqError` (nothing applied) if the database
    refuses the file's values.
    """
    report = sync(conn, new, previous=old, now=now)
    needs_restart = tuple(
        section
        for section in ("database", "worker", "pools", "beat", "metrics")
        if getattr(old, section) != getattr(new, section)
    ) + (("logging.json",) if old.logging.json != new.logging.json else ())
    for warning in sorted(set(new.warnings) - set(old.warnings)):
        logger.warning("config: %s", warning)
    if needs_restart:
        logger.warning(
            "reload: changes to %s take effect at the next start; not applied",
            ", ".join(needs_restart),
        )
    if new.logging.level != old.logging.level:
        logging.getLogger().setLevel(new.logging.level.upper())
        logger.info("reload: log level now %s", new.logging.level.upper())
    # Keep the start-time sections: only the synced ones changed for real.
    running = _replace_live_sections(old, new)
    report = ReloadReport(
        applied=True,
        schedules=report.schedules,
        queues_changed=report.queues_changed,
        limits_set=report.limits_set,
        limits_removed=report.limits_removed,
        needs_restart=needs_restart,
    )
    if not (
        report.queues_changed
        or report.limits_set
        or report.limits_removed
        or (report.schedules and _schedules_changed(report.schedules))
        or needs_restart
    ):
        logger.info("reload: nothing changed")
    logger.info("reload: done")
    return running, report


def _sync_schedules(
    conn: Conn, settings: Settings, previous: Settings | None, now: dt.datetime
) -> SyncReport | None:
    # A file that never declared schedules leaves periodic_tasks alone: rows may come
    # from reproq-django or `reproq schedule` and must not be disabled by an empty list.
    if not settings.schedules and not (previous is not None and previous.schedules):
        if previous is None:
            logger.info("schedules: none in the config; periodic_tasks left as they are")
        return None
    report = sync_schedules(conn, settings.schedules, now=now)
    for label, names in (
        ("created", report.created),
        ("updated", report.updated),
        ("rescheduled", report.rescheduled),
        ("disabled (no longer in the config)", report.disabled),
    ):
        if names:
            logger.info("schedules %s: %s", label, ", ".join(names))
    for name in report.not_owned:
        logger.warning(
            "schedule %s: its periodic_tasks row was not created by a reproq config "
            "(reproq-django's, or written by hand); left as it is",
            name,
        )
    if previous is None:
        logger.info(
            "schedules: %d in the config (%d unchanged)",
            len(settings.schedules),
            len(report.unchanged),
        )
    return report


def _schedules_changed(report: SyncReport) -> bool:
    return bool(report.created or report.updated or report.rescheduled or report.disabled)


def _replace_live_sections(old: Settings, new: Settings) -> Settings:
    """*old* with the sections a reload applies (queues, limits, schedules, logging) of *new*."""
    return dataclasses.replace(
        old,
        queues=new.queues,
        limits=new.limits,
        schedules=new.schedules,
        logging=new.logging,
        sources=new.sources,
        warnings=new.warnings,
    )


def _pause_is_explicit(settings: Settings, queue: QueueSettings) -> bool:
    """Whether the file (or env/flags) states the queue's pause state, not the default."""
    return settings.source_of(f"queues.{queue.name}.paused") != "default"


def _sync_queues(conn: Conn, settings: Settings, previous: Settings | None) -> tuple[str, ...]:
    """Apply each queue's explicit ``paused`` setting; returns the queues whose state changed.

    Queues whose pause state the file does not state keep whatever an operator set with
    ``reproq pause``/``resume`` or the TUI.
    """
    from reproq.ops.admin import pause_queue, resume_queue
    from reproq.ops.observe import list_queues

    current = {q.queue: q for q in list_queues(conn, count_cap=1)}
    changed: list[str] = []
    for queue in settings.queues:
        if not _pause_is_explicit(settings, queue):
            continue
        now = current.get(queue.name)
        was_paused = bool(now and now.paused)
        if queue.paused:
            if was_paused and now is not None and now.pause_reason == queue.reason:
                continue
            pause_queue(conn, queue.name, queue.reason)
            reason = f" ({queue.reason})" if queue.reason else ""
            logger.info("queue %s: paused by the config%s", queue.name, reason)
        else:
            if not was_paused:
                continue
            resume_queue(conn, queue.name)
            logger.info("queue %s: resumed by the config (paused = false)", queue.name)
        changed.append(queue.name)
    return tuple(changed)


def _sync_limits(
    conn: Conn, settings: Settings, previous: Settings | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set each configured limit that differs; on reload remove limits dropped from the file.

    Returns (keys set, keys removed). At start, limits in the database that the file
    does not mention are kept (``reproq limit set`` may have made them) and listed.
    """
    from reproq.ops.admin import remove_limit, set_limit
    from reproq.ops.observe import list_limits

    existing = {lim.key: lim for lim in list_limits(conn)}
    wanted: Mapping[str, RateLimitSettings] = {lim.key: lim for lim in settings.limits}
    set_keys: list[str] = []
    for key, lim in wanted.items():
        have = existing.get(key)
        if (
            have is not None
            and abs(have.tokens_per_second - lim.rate) < 1e-6
            and have.burst_size == lim.burst
        ):
            continue
        set_limit(conn, key, lim.rate, lim.burst)
        rate = "no limit" if lim.rate <= 0 else f"{lim.rate:g}/s burst {lim.burst}"
        logger.info("rate limit %s: %s", key, rate)
        set_keys.append(key)
    removed: list[str] = []
    if previous is not None:
        for key in sorted({lim.key for lim in previous.limits} - set(wanted)):
            try:
                remove_limit(conn, key)
            except NotFound:
                continue
            logger.info("rate limit %s: removed (no longer in the config)", key)
            removed.append(key)
    else:
        extra = sorted(
            key
            for key, lim in existing.items()
            if key not in wanted and not (key == "global" and lim.unlimited)
        )
        if extra:
            logger.info(
                "rate limits in the database but not in the config (kept): %s", ", ".join(extra)
            )
    return tuple(set_keys), tuple(removed)
