"""Cron schedules: 5-field expressions evaluated in a time zone, safely across DST changes.

Field matching comes from croniter, applied to *wall-clock* (naive local) times; turning a
wall-clock time into an instant is done here, with explicit rules for the two moments a
daylight-saving change makes ambiguous:

* **Spring forward** (a wall time that does not exist, e.g. 02:30 on 2026-03-29 in
  Europe/Berlin): the run fires once, at the instant of the change (03:00 CEST = 01:00
  UTC). This is classic cron's rule and also what croniter itself does; it keeps the
  order of runs (a 02:45 run never fires after a 03:15 one) and several skipped wall
  times of one schedule collapse into that single run.
* **Fall back** (a wall time that happens twice, e.g. 02:30 on 2026-10-25 in
  Europe/Berlin): a schedule that names its hours fires once, at the first occurrence
  (02:30 CEST = 00:30 UTC). A schedule whose hour field starts with ``*`` (``0 * * * *``,
  ``*/15 * * * *``, ``0 */2 * * *``) is an interval schedule and fires in both
  occurrences, so "every hour" stays hourly in real time. croniter alone would fire
  ``30 2 * * *`` twice that night.

Expressions are 5 fields (minute hour day-of-month month day-of-week) with croniter's
usual syntax (ranges, steps, names, ``L``, ``#``), plus the macros ``@hourly``,
``@daily``/``@midnight``, ``@weekly``, ``@monthly`` and ``@yearly``/``@annually``. An
optional ``CRON_TZ=Zone`` (or ``TZ=Zone``) prefix, as reproq-django stores it, sets the
zone; without one the zone given to :meth:`CronSchedule.parse` applies (default UTC).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

__all__ = [
    "DEFAULT_SKIP_GRACE",
    "MISSED_COUNT_CAP",
    "CronSchedule",
    "MisfirePlan",
    "MisfirePolicy",
    "format_cron_expr",
    "split_cron_tz",
]

DEFAULT_SKIP_GRACE = timedelta(seconds=60)
"""How late a fire time may be seen and still count as on time under ``skip``."""

MISSED_COUNT_CAP = 1_000
"""Missed fire times are counted up to this many (a downtime of years is not enumerated)."""

_MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_TZ_PREFIX = re.compile(r"^\s*(?:CRON_TZ|TZ)=(\S*)\s+(.*)$", re.DOTALL)
# Hashed (H) and random (R) fields would make the schedule depend on state outside the
# expression, so two beat processes could disagree about fire times.
_HASHED_OR_RANDOM = re.compile(r"(?<![A-Za-z])[HR](?![A-Za-z])")
# Where croniter starts searching when checking that an expression can ever fire.
_PROBE_START = datetime(2000, 1, 1)
# Offsets around an instant are compared this far each side to find how much wall time
# a nearby DST change repeats or skips.
_OFFSET_WINDOW = timedelta(hours=6)


class MisfirePolicy(StrEnum):
    """What beat does with fire times that passed while no beat was running."""

    LATEST = "latest"
    """Enqueue one run for the missed period, for its most recent fire time (upstream)."""
    ALL = "all"
    """Enqueue every missed fire time, oldest first, at most ``misfire_limit`` (the newest)."""
    SKIP = "skip"
    """Enqueue nothing missed; only fire times within the grace period of now still run."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MisfirePlan:
    """The outcome of applying a misfire policy to one due schedule."""

    fire_times: tuple[datetime, ...]
    """Fire times to enqueue now, oldest first (aware UTC)."""
    next_run_at: datetime
    """The schedule's new ``next_run_at``: the first fire time after now."""
    missed: int
    """Due fire times that are *not* enqueued (exact below :data:`MISSED_COUNT_CAP`)."""


def split_cron_tz(expr: str) -> tuple[str | None, str]:
    """Split a stored expression into ``(zone or None, the 5 fields)``.

    ``"CRON_TZ=Europe/Berlin 30 2 * * *"`` gives ``("Europe/Berlin", "30 2 * * *")``.
    """
    match = _TZ_PREFIX.match(expr)
    if match is None:
        return None, expr.strip()
    return match.group(1), match.group(2).strip()


def format_cron_expr(cron: str, timezone: str = "UTC") -> str:
    """The stored form of a schedule: the fields, prefixed by ``CRON_TZ=Zone `` unless UTC.

    reproq-django and the Go worker read the same prefix, so a schedule written here is
    evaluated in the same zone by every reader.
    """
    zone, fields = split_cron_tz(cron)
    zone = zone or timezone
    fields = " ".join(fields.split())
    if zone == "UTC":
        return fields
    return f"CRON_TZ={zone} {fields}"


@dataclass(frozen=True, slots=True)
class _WallTime:
    """The instants one matching wall-clock time stands for (see the module rules)."""

    first: datetime  # lowest instant this wall time can map to
    last: datetime  # highest
    instants: tuple[datetime, ...]  # the ones that fire, ascending


@dataclass(frozen=True, kw_only=True, slots=True)
class CronSchedule:
    """A validated cron schedule in one time zone; build it with :meth:`parse`."""

    fields: str
    """The 5 fields, whitespace-normalised, macros expanded (e.g. ``"30 2 * * *"``)."""
    timezone: str = "UTC"
    """IANA zone the fields are evaluated in."""
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _interval_hours: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", _load_zone(self.timezone))
        hour_field = self.fields.split()[1] if len(self.fields.split()) > 1 else ""
        object.__setattr__(self, "_interval_hours", hour_field.startswith("*"))

    @classmethod
    def parse(cls, expr: str, timezone: str = "UTC") -> CronSchedule:
        """Parse ``expr`` (optionally ``CRON_TZ=Zone``-prefixed, which wins over ``timezone``).

        Raises ``ValueError`` with a one-line reason for a malformed expression, an
        unknown zone or an expression that can never fire.
        """
        if not isinstance(expr, str) or not expr.strip():
            raise ValueError("empty cron expression")
        prefixed_zone, body = split_cron_tz(expr)
        if prefixed_zone is not None and not prefixed_zone:
            raise ValueError(f"cron expression {expr!r}: CRON_TZ= names no time zone")
        zone_name = prefixed_zone or timezone
        _load_zone(zone_name)
        if body.startswith("@") and body.lower() not in _MACROS:
            raise ValueError(
                f"unsupported cron macro {body!r} (use 5 fields or one of {', '.join(_MACROS)})"
            )
        fields_list = _MACROS.get(body.lower(), body).split()
        if len(fields_list) != 5:
            raise ValueError(
                f"cron expression {body!r} has {len(fields_list)} fields; expected 5 "
                "(minute hour day-of-month month day-of-week)"
            )
        fields = " ".join(fields_list)
        if _HASHED_OR_RANDOM.search(fields):
            raise ValueError(
                f"cron expression {fields!r}: hashed (H) and random (R) fields are not supported"
            )
        try:
            croniter(fields, _PROBE_START).get_next(datetime)
        except CroniterError as exc:
            reason = str(exc) or type(exc).__name__
            if "failed to find" in reason:
                reason = "it never matches a date"
            raise ValueError(f"invalid cron expression {fields!r}: {reason}") from None
        return cls(fields=fields, timezone=zone_name)

    @property
    def stored_form(self) -> str:
        """The ``cron_expr`` text to store: fields with a ``CRON_TZ=`` prefix unless UTC."""
        return format_cron_expr(self.fields, self.timezone)

    def next_after(self, dt: datetime) -> datetime:
        """The first fire time strictly after ``dt`` (aware in, aware UTC out)."""
        return next(self._ascending(_utc(dt)))

    def previous_at_or_before(self, dt: datetime) -> datetime:
        """The last fire time at or before ``dt`` (aware in, aware UTC out)."""
        return next(self._descending(_utc(dt)))

    def fire_times(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Fire times in ``(after, until]``, oldest first, at most ``limit`` of them."""
        end = _utc(until)
        out: list[datetime] = []
        if limit <= 0:
            return out
        for instant in self._ascending(_utc(after)):
            if instant > end:
                break
            out.append(instant)
            if len(out) >= limit:
                break
        return out

    def misfire_fire_times(
        self,
        policy: MisfirePolicy | str,
        next_run_at: datetime,
        now: datetime,
        limit: int,
        *,
        grace: timedelta = DEFAULT_SKIP_GRACE,
    ) -> MisfirePlan:
        """Decide what to enqueue for a schedule whose ``next_run_at`` may be in the past.

        The due fire times are ``next_run_at`` itself (the row says that run is owed,
        even if it is off the cron grid) and every fire time in ``(next_run_at, now]``.
        ``latest`` enqueues the most recent of them; ``all`` enqueues them oldest first,
        keeping the newest ``limit`` when there are more; ``skip`` enqueues only those at
        or after ``now - grace`` (on time for a beat that ticks within ``grace``). In
        every case the new ``next_run_at`` is the first fire time after ``now``. Nothing
        is due while ``next_run_at`` is after ``now``: the plan is then empty and keeps it.
        """
        chosen = MisfirePolicy(policy)
        if limit < 1:
            raise ValueError(f"misfire limit must be at least 1, got {limit}")
        start = _utc(next_run_at)
        current = _utc(now)
        if start > current:
            return MisfirePlan(fire_times=(), next_run_at=start, missed=0)
        if chosen is MisfirePolicy.LATEST:
            newest_first = list(islice(self._due(start, current), 1))
        elif chosen is MisfirePolicy.ALL:
            newest_first = list(islice(self._due(start, current), limit))
        else:
            cutoff = current - grace
            newest_first = []
            for instant in self._due(start, current):
                if instant < cutoff:
                    break
                newest_first.append(instant)
        cap = max(MISSED_COUNT_CAP, len(newest_first) + 1)
        total_due = sum(1 for _ in islice(self._due(start, current), cap))
        return MisfirePlan(
            fire_times=tuple(reversed(newest_first)),
            next_run_at=self.next_after(current),
            missed=max(0, total_due - len(newest_first)),
        )

    # -- wall time <-> instants ------------------------------------------------------

    def _due(self, next_run_at: datetime, now: datetime) -> Iterator[datetime]:
        """Due fire times, newest first: those in ``(next_run_at, now]``, then next_run_at."""
        for instant in self._descending(now):
            if instant <= next_run_at:
                break
            yield instant
        yield next_run_at

    def _ascending(self, after: datetime) -> Iterator[datetime]:
        """Every fire time strictly after ``after``, ascending, without duplicates."""
        # Start early enough to see the second occurrence of repeated wall times.
        margin = self._offset_spread(after) + timedelta(minutes=1)
        start = after.astimezone(self._zone).replace(tzinfo=None) - margin
        walls = croniter(self.fields, start)
        pending: list[datetime] = []
        last: datetime | None = None
        while True:
            wall = self._map(walls.get_next(datetime))
            # Every later wall time maps at or after wall.first, so anything pending up
            # to it is final.
            while pending and pending[0] <= wall.first:
                instant = heapq.heappop(pending)
                if instant > after and (last is None or instant > last):
                    last = instant
                    yield instant
            for instant in wall.instants:
                heapq.heappush(pending, instant)

    def _descending(self, at_or_before: datetime) -> Iterator[datetime]:
        """Every fire time at or before ``at_or_before``, descending, without duplicates."""
        margin = self._offset_spread(at_or_before) + timedelta(minutes=1)
        start = at_or_before.astimezone(self._zone).replace(tzinfo=None) + margin
        walls = croniter(self.fields, start)
        pending: list[tuple[float, datetime]] = []  # max-heap via negated timestamps
        last: datetime | None = None
        while True:
            wall = self._map(walls.get_prev(datetime))
            # Every earlier wall time maps at or before wall.last.
            while pending and pending[0][1] >= wall.last:
                _, instant = heapq.heappop(pending)
                if instant <= at_or_before and (last is None or instant < last):
                    last = instant
                    yield instant
            for instant in wall.instants:
                heapq.heappush(pending, (-instant.timestamp(), instant))

    def _map(self, wall: datetime) -> _WallTime:
        """The instants the naive local time ``wall`` stands for, by the module's DST rules."""
        early = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        late = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        if early == late:
            return _WallTime(first=early, last=early, instants=(early,))
        if early.astimezone(self._zone).replace(tzinfo=None) == wall:
            # Repeated wall time (fall back): fold=0 is the first occurrence.
            instants = (early, late) if self._interval_hours else (early,)
            return _WallTime(first=early, last=late, instants=instants)
        # Skipped wall time (spring forward): fold=0 read it with the old offset, which
        # lands after the change, fold=1 with the new one, which lands before it.
        change = _transition_between(late, early, self._zone)
        return _WallTime(first=change, last=change, instants=(change,))

    def _offset_spread(self, instant: datetime) -> timedelta:
        """How far the zone's UTC offset varies within a few hours of ``instant``."""
        offsets = [
            (instant + delta).astimezone(self._zone).utcoffset() or timedelta(0)
            for delta in (-_OFFSET_WINDOW, timedelta(0), _OFFSET_WINDOW)
        ]
        return max(offsets) - min(offsets)


def _transition_between(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in ``(before, after]`` whose UTC offset differs from ``before``'s."""
    old = before.astimezone(zone).utcoffset()
    # Zone changes happen on whole seconds, so bisect over integer timestamps.
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == old:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _load_zone(name: str) -> ZoneInfo:
    """The zone called ``name``, or a ``ValueError`` naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (expected an IANA name such as 'Europe/Berlin')"
        ) from None


def _utc(dt: datetime) -> datetime:
    """``dt`` as aware UTC; naive datetimes are refused rather than guessed."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {dt.isoformat()}")
    return dt.astimezone(UTC)
