"""The figures of a bench document: one number per name and round, its median, and its
ratio to the reference loop measured in the same round.

A shared or virtual machine's speed drifts by tens of percent from one hour to the next,
so an absolute tasks/s figure says little on its own. The ``raw-claim`` scenario measures,
in the same round on the same server, a plain claim-and-complete loop with none of
reproq's guarantees; a reproq figure divided by it is what stays comparable between runs
and machines. Ratios are taken per round (round *i*'s figure over round *i*'s reference),
then their median, so a slow minute spoils one pair, not every ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RAW_CLAIM", "RAW_COPY", "Figure", "drain_figures", "ratio_of", "summarize"]

RAW_CLAIM = "raw-claim"
"""The reference loop's tasks/s: what reproq's task rates are divided by."""
RAW_COPY = "raw-claim copy"
"""COPY of the reference loop's rows, rows/s: what the enqueue rate is divided by."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One named number of one round (``None``: the run failed or measured nothing)."""

    name: str
    value: float | None
    unit: str
    reference: str | None = None
    """The figure this one is divided by, when a ratio means something."""


def drain_figures(name: str, run: Mapping[str, Any]) -> list[Figure]:
    """A worker drain's tasks/s (against the reference loop) and its worker's memory."""
    return [
        Figure(name, run.get("tasks_per_second"), "tasks/s", RAW_CLAIM),
        Figure(f"{name} rss", run.get("worker_rss_mb"), "MB"),
    ]


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _rounded(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def summarize(rounds: Sequence[Sequence[Figure]]) -> dict[str, Any]:
    """``{name: {unit, runs, median[, reference, ratio: {runs, median}]}}``, in the order
    the figures first appear; ``runs`` has one entry per round (``None`` where a round
    has no such figure)."""
    values: list[dict[str, float | None]] = [{f.name: f.value for f in r} for r in rounds]
    first: dict[str, Figure] = {}
    for found in rounds:
        for figure in found:
            first.setdefault(figure.name, figure)
    out: dict[str, Any] = {}
    for name, figure in first.items():
        runs = [_rounded(v.get(name), 1) for v in values]
        entry: dict[str, Any] = {"unit": figure.unit, "runs": runs, "median": _median(runs)}
        if figure.reference is not None and figure.reference in first:
            ratios = [_ratio(v.get(name), v.get(figure.reference)) for v in values]
            entry["reference"] = figure.reference
            entry["ratio"] = {"runs": ratios, "median": _rounded(_median(ratios), 3)}
        out[name] = entry
    return out


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def ratio_of(figures: Mapping[str, Any], name: str, round_index: int = 0) -> float | None:
    """The ratio of figure ``name`` in round ``round_index`` of a document's figures."""
    entry = figures.get(name) or {}
    runs = (entry.get("ratio") or {}).get("runs") or []
    return runs[round_index] if round_index < len(runs) else None
