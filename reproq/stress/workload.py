"""The torture workload: a seeded mix of tasks, workflows and schedules.

:class:`Workload` produces batches of work to enqueue. Each item is one of the
:data:`KINDS`; the kind travels in the spec's kwargs (``kind``) so the checker can tell
what a row was meant to do. The mix is sized so that, at the configured rate, every
contended resource (lock keys, concurrency keys, the rate-limited queue) keeps up:
a backlog that can never drain would look like lost work.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reproq.producer.signature import Signature

__all__ = [
    "DEFAULT_MIX",
    "KINDS",
    "THROTTLED_QUEUE",
    "Batch",
    "Chord",
    "ScheduleSpec",
    "Workload",
    "schedules_for",
]

TASKS = "reproq.stress.tasks"
"""Module of the task bodies (the workers' allow-list prefix)."""

THROTTLED_QUEUE = "stress-throttled"
"""The rate-limited queue."""

THROTTLED_RATE = 20.0
"""Tokens per second of the throttled queue's rate limit."""

THROTTLED_BURST = 5
"""Burst size of the throttled queue's rate limit."""

LOCK_KEYS = 4
LONG_LOCKED_SHARE = 0.03
"""Share of ``locked`` tasks that work 5-8 s instead of 10-150 ms."""
CONCURRENCY_KEYS = 2
CONCURRENCY_LIMIT = 3

KINDS: tuple[str, ...] = (
    "fast",
    "slow",
    "flaky",
    "always_fail",
    "timeout",
    "cancellable",
    "locked",
    "limited",
    "throttled",
    "chain",
    "chord",
)
"""Every workload kind a batch can hold (periodic ``tick`` runs come from the beat)."""

DEFAULT_MIX: Mapping[str, float] = {
    "fast": 30,
    "slow": 8,
    "flaky": 5,
    "always_fail": 4,
    "timeout": 3,
    "cancellable": 3,
    "locked": 10,
    "limited": 10,
    "throttled": 5,
    "chain": 4,
    "chord": 3,
}
"""Relative weights of the kinds."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Chord:
    """A chord to enqueue: members, then a callback."""

    members: tuple[Signature, ...]
    callback: Signature


@dataclass(frozen=True, kw_only=True, slots=True)
class Batch:
    """Work to enqueue in one go."""

    tasks: tuple[Signature, ...] = ()
    chains: tuple[tuple[Signature, ...], ...] = ()
    chords: tuple[Chord, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    """Items per kind (a chain or chord counts once)."""

    @property
    def size(self) -> int:
        """Rows this batch writes."""
        return (
            len(self.tasks)
            + sum(len(c) for c in self.chains)
            + sum(len(c.members) + 1 for c in self.chords)
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSpec:
    """A periodic schedule the run creates (fires every minute, first fire at once)."""

    name: str
    cron_expr: str
    task_path: str
    kwargs: Mapping[str, object]
    queue_name: str = "default"
    max_attempts: int = 3


def schedules_for(run_id: str, count: int = 3) -> list[ScheduleSpec]:
    """The run's periodic schedules."""
    return [
        ScheduleSpec(
            name=f"stress-{run_id}-tick-{i}",
            cron_expr="* * * * *",
            task_path=f"{TASKS}.sleep",
            kwargs={"kind": "tick", "ms": 20, "run": run_id},
        )
        for i in range(count)
    ]


class Workload:
    """Seeded generator of torture work."""

    def __init__(self, *, seed: int, run_id: str, mix: Mapping[str, float] | None = None) -> None:
        self.rng = random.Random(seed)
        self.run_id = run_id
        chosen = dict(mix or DEFAULT_MIX)
        unknown = set(chosen) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown workload kinds: {sorted(unknown)}")
        self.kinds = [k for k in KINDS if chosen.get(k, 0) > 0]
        self.weights = [chosen[k] for k in self.kinds]
        self.seq = 0

    def batch(self, items: int) -> Batch:
        """``items`` workload items (tasks, chains or chords) drawn from the mix."""
        tasks: list[Signature] = []
        chains: list[tuple[Signature, ...]] = []
        chords: list[Chord] = []
        counts: dict[str, int] = {}
        for kind in self.rng.choices(self.kinds, self.weights, k=items) if self.kinds else []:
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "chain":
                chains.append(self._chain())
            elif kind == "chord":
                chords.append(self._chord())
            else:
                tasks.append(self._task(kind))
        return Batch(tasks=tuple(tasks), chains=tuple(chains), chords=tuple(chords), counts=counts)

    # ------------------------------------------------------------------ items

    def _sig(
        self,
        func: str,
        kind: str,
        ms: float,
        *,
        extra: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        self.seq += 1
        kwargs: dict[str, Any] = {"kind": kind, "ms": round(ms, 1), "seq": self.seq}
        kwargs["run"] = self.run_id
        kwargs.update(extra or {})
        options.setdefault("timeout_seconds", 60)
        options.setdefault("max_attempts", 3)
        return Signature(task_path=f"{TASKS}.{func}", kwargs=kwargs, **options)

    def _task(self, kind: str) -> Signature:
        rng = self.rng
        if kind == "fast":
            return self._sig("sleep", kind, rng.uniform(1, 40))
        if kind == "slow":
            return self._sig("sleep", kind, rng.uniform(500, 2500))
        if kind == "flaky":
            return self._sig("flaky", kind, rng.uniform(1, 50), extra={"fail_attempts": 1})
        if kind == "always_fail":
            return self._sig("fail", kind, rng.uniform(1, 50), max_attempts=rng.choice((1, 2)))
        if kind == "timeout":
            return self._sig(
                "hang", kind, 3000, timeout_seconds=1, max_attempts=rng.choice((1, 1, 2))
            )
        if kind == "cancellable":
            return self._sig("cancellable", kind, rng.uniform(3000, 6000))
        if kind == "locked":
            # Now and then one outlasts a worker's lease, so a worker that dies holding the
            # key leaves time for its task process to run on beside the key's next holder.
            long = rng.random() < LONG_LOCKED_SHARE
            return self._sig(
                "sleep",
                kind,
                rng.uniform(5000, 8000) if long else rng.uniform(10, 150),
                lock_key=f"stress-lock-{rng.randrange(LOCK_KEYS)}",
            )
        if kind == "limited":
            return self._sig(
                "sleep",
                kind,
                rng.uniform(50, 300),
                concurrency_key=f"stress-conc-{rng.randrange(CONCURRENCY_KEYS)}",
                concurrency_limit=CONCURRENCY_LIMIT,
            )
        if kind == "throttled":
            return self._sig("sleep", kind, rng.uniform(1, 20), queue=THROTTLED_QUEUE)
        raise ValueError(f"not a single-task kind: {kind}")

    def _chain(self) -> tuple[Signature, ...]:
        steps = self.rng.randint(2, 4)
        failing = self.rng.randrange(steps) if self.rng.random() < 0.2 else -1
        out: list[Signature] = []
        for i in range(steps):
            if i == failing:
                out.append(self._sig("fail", "chain_step_fail", 10, max_attempts=1))
            else:
                out.append(self._sig("sleep", "chain_step", self.rng.uniform(5, 100)))
        return tuple(out)

    def _chord(self) -> Chord:
        size = self.rng.randint(2, 5)
        failing = self.rng.randrange(size) if self.rng.random() < 0.2 else -1
        members = tuple(
            self._sig("fail", "chord_member_fail", 10, max_attempts=1)
            if i == failing
            else self._sig("sleep", "chord_member", self.rng.uniform(5, 300))
            for i in range(size)
        )
        return Chord(members=members, callback=self._sig("sleep", "chord_callback", 10))
