"""A bench document as text: one line per run of the first round, each rate followed by
its ratio to the reference loop, then (with ``--repeat``) every figure's median."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reproq.stress.bench.config import LATENCY_MODES
from reproq.stress.bench.figures import RAW_CLAIM, RAW_COPY, ratio_of

__all__ = ["drain_text", "latency_text", "render_bench", "steady_line"]


def drain_text(result: Mapping[str, Any]) -> str:
    """``12,000 tasks/s (20,000 in 1.6s)``, or the run's error."""
    if "error" in result:
        return f"error: {result['error']}"
    return (
        f"{result.get('tasks_per_second') or 0:,.0f} tasks/s "
        f"({result.get('tasks') or 0:,} in {result.get('seconds')}s)"
    )


def latency_text(result: Mapping[str, Any]) -> str:
    """Pickup percentiles of a run."""
    p = result.get("pickup_ms") or {}
    return f"p50 {p.get('p50')} ms, p95 {p.get('p95')} ms, p99 {p.get('p99')} ms (n={p.get('n')})"


def _times(figures: Mapping[str, Any], name: str) -> str:
    """`` = 0.850x raw-claim`` for figure ``name`` of the first round, or nothing."""
    ratio = ratio_of(figures, name)
    if ratio is None:
        return ""
    reference = (figures.get(name) or {}).get("reference")
    what = "raw COPY" if reference == RAW_COPY else "raw-claim"
    return f" = {ratio:.3f}x {what}"


def _rss(result: Mapping[str, Any]) -> str:
    rss = result.get("worker_rss_mb")
    return f", worker RSS {rss} MB" if rss is not None else ""


def _raw_lines(r: Mapping[str, Any]) -> list[str]:
    if "error" in r:
        return [f"raw-claim: error: {r['error']}"]
    return [
        f"raw-claim: {r.get('tasks') or 0:,} tasks, {r.get('threads')} threads, batch "
        f"{r.get('batch')}: {r.get('tasks_per_second') or 0:,.0f} tasks/s (the reference); "
        f"its COPY {r.get('copy_rows_per_second') or 0:,.0f} rows/s"
    ]


def _enqueue_lines(e: Mapping[str, Any], figures: Mapping[str, Any]) -> list[str]:
    return [
        f"enqueue: {e.get('specs') or 0:,} specs in {e.get('seconds')}s = "
        f"{e.get('specs_per_second') or 0:,.0f} specs/s{_times(figures, 'enqueue')} "
        "(target 30,000)"
    ]


def _drain_lines(name: str, result: Mapping[str, Any], figures: Mapping[str, Any]) -> list[str]:
    lines = []
    for entry in result.get("runs", []):
        if name == "e2e":
            label = str(entry.get("label"))
            figure = f"e2e {label}"
        else:
            label = f"{entry.get('history_rows', 0):,} finished rows"
            figure = f"claim-growth {label}"
        lines.append(f"{name} {label}: {drain_text(entry)}{_times(figures, figure)}{_rss(entry)}")
    return lines


def _burst_lines(b: Mapping[str, Any], figures: Mapping[str, Any]) -> list[str]:
    lines = []
    targets = b.get("target_tasks_per_second") or {}
    for run in b.get("runs", []):
        label = f"c{run.get('concurrency')}"
        target = targets.get(label)
        goal = f" (target {target:,})" if target else ""
        lines.append(
            f"e2e-burst {label}: {drain_text(run)}{_times(figures, f'e2e-burst {label}')}"
            f"{goal}{_rss(run)}"
        )
    return lines


def steady_line(s: Mapping[str, Any], figures: Mapping[str, Any]) -> str:
    """An e2e-steady result: offered and completed rates, pickup, backlog, memory."""
    if "error" in s:
        return f"e2e-steady: error: {s['error']}"
    pickup = s.get("pickup_ms") or {}
    verdict = "kept up" if s.get("kept_up") else "fell behind"
    return (
        f"e2e-steady {s.get('rate_per_second') or 0:,.0f}/s for {s.get('seconds')}s: offered "
        f"{s.get('offered_per_second') or 0:,.0f}/s, completed "
        f"{s.get('completed_per_second') or 0:,.0f}/s"
        f"{_times(figures, 'e2e-steady completed')}; pickup p50 {pickup.get('p50')} ms, "
        f"p99 {pickup.get('p99')} ms (target < 50); backlog at the end "
        f"{s.get('backlog_at_end') or 0:,}: {verdict}{_rss(s)}"
    )


def _medians(document: Mapping[str, Any]) -> list[str]:
    figures: Mapping[str, Any] = document.get("figures") or {}
    rounds = int(document.get("repeat") or 1)
    if rounds < 2 or not figures:
        return []
    lines = [
        "",
        f"medians of {rounds} rounds (each ratio is to the same round's {RAW_CLAIM}):",
    ]
    width = max(len(name) for name in figures)
    for name, entry in figures.items():
        runs = ", ".join(_num(v) for v in entry.get("runs", []))
        line = f"  {name:<{width}}  {_num(entry.get('median'))} {entry.get('unit')} [{runs}]"
        ratio = entry.get("ratio")
        if ratio:
            each = ", ".join(_num(v, 3) for v in ratio.get("runs", []))
            line += f"  x{entry.get('reference')}: {_num(ratio.get('median'), 3)} [{each}]"
        lines.append(line)
    return lines


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render_bench(document: Mapping[str, Any]) -> str:
    """A human summary of a result document."""
    machine = document.get("machine", {})
    pg = document.get("postgres", {})
    settings = pg.get("settings", {})
    lines = [
        f"machine: {machine.get('cpu_count')} CPUs ({machine.get('cpu_model')}), "
        f"{machine.get('memory_gb')} GB, {machine.get('platform')}, Python {machine.get('python')}",
        f"postgres: {pg.get('server_version')} ({pg.get('kind')}); "
        + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())),
    ]
    scenarios = document.get("scenarios", {})
    figures: Mapping[str, Any] = document.get("figures") or {}
    if int(document.get("repeat") or 1) > 1:
        lines.append("round 1:")
    if "raw-claim" in scenarios:
        lines += _raw_lines(scenarios["raw-claim"])
    if "enqueue" in scenarios:
        lines += _enqueue_lines(scenarios["enqueue"], figures)
    for name in ("e2e", "claim-growth"):
        if name in scenarios:
            lines += _drain_lines(name, scenarios[name], figures)
    if "e2e-burst" in scenarios:
        lines += _burst_lines(scenarios["e2e-burst"], figures)
    if "e2e-steady" in scenarios:
        lines.append(steady_line(scenarios["e2e-steady"], figures))
    if "latency" in scenarios:
        lat = scenarios["latency"]
        for mode, _ in LATENCY_MODES:
            if mode in lat:
                lines.append(
                    f"latency {mode} @ {lat.get('rate_per_second')}/s: {latency_text(lat[mode])}"
                )
    return "\n".join(lines + _medians(document))
