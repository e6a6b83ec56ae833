"""Running the chosen scenarios in rounds, and the result document they make.

The document::

    {
      "started_at": "...", "argv": [...], "repeat": K, "config": {...sizes...},
      "machine": {...}, "postgres": {"kind", "version", "server_version", "settings"},
      "scenarios": {name: result of round 1},
      "repeats": [{name: result}, ...],        # rounds 2..K, when --repeat K > 1
      "figures": {figure: {"unit", "runs": [K values], "median",
                           "reference", "ratio": {"runs": [K ratios], "median"}}}
    }

A round runs every chosen scenario once, in :data:`SCENARIOS` order (the reference loop
first), so the figures of one round were measured minutes apart, and each of its ratios
divides by that round's reference.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reproq.errors import UsageError
from reproq.stress.bench.burst import burst_figures, e2e_burst
from reproq.stress.bench.config import SCENARIOS, BenchConfig
from reproq.stress.bench.e2e import claim_growth, e2e, e2e_figures, growth_figures
from reproq.stress.bench.enqueue import enqueue, enqueue_figures
from reproq.stress.bench.facts import bench_server, machine_info, server_facts
from reproq.stress.bench.figures import Figure, summarize
from reproq.stress.bench.harness import Harness
from reproq.stress.bench.latency import latency, latency_figures
from reproq.stress.bench.raw import raw_claim, raw_figures
from reproq.stress.bench.steady import e2e_steady, steady_figures
from reproq.stress.report import Progress

__all__ = ["Scenario", "run_bench"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """How to run a scenario, and which figures its result holds."""

    run: Callable[[Harness], dict[str, Any]]
    figures: Callable[[Mapping[str, Any]], list[Figure]]


_SCENARIOS: dict[str, Scenario] = {
    "raw-claim": Scenario(raw_claim, raw_figures),
    "enqueue": Scenario(enqueue, enqueue_figures),
    "e2e": Scenario(e2e, e2e_figures),
    "e2e-burst": Scenario(e2e_burst, burst_figures),
    "e2e-steady": Scenario(e2e_steady, steady_figures),
    "latency": Scenario(latency, latency_figures),
    "claim-growth": Scenario(claim_growth, growth_figures),
}
assert tuple(_SCENARIOS) == SCENARIOS


def _check(config: BenchConfig) -> None:
    unknown = [s for s in config.scenarios if s not in SCENARIOS]
    if unknown:
        raise UsageError(f"unknown bench scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
    if config.repeat < 1:
        raise UsageError("--repeat must be at least 1")


def _round(h: Harness, number: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in SCENARIOS:
        if name in h.config.scenarios:
            if h.config.repeat > 1:
                h.progress.note(f"round {number}/{h.config.repeat}: {name}")
            began = time.perf_counter()
            result = _SCENARIOS[name].run(h)
            result["scenario_seconds"] = round(time.perf_counter() - began, 2)
            results[name] = result
    return results


def _sizes(config: BenchConfig) -> dict[str, Any]:
    """The config without the DSN (it may hold a password)."""
    sizes = dataclasses.asdict(config)
    sizes.pop("dsn", None)
    return sizes


def run_bench(config: BenchConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run the chosen scenarios ``config.repeat`` times; returns the JSON-ready document."""
    _check(config)
    progress = progress or Progress()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rounds: list[dict[str, Any]] = []
    with bench_server(config, progress) as server:
        harness = Harness(config, server.admin_dsn, progress)
        with harness.connect(server.admin_dsn) as conn:
            postgres = {"kind": server.kind, **server_facts(conn)}
        completed = False
        try:
            for number in range(1, config.repeat + 1):
                rounds.append(_round(harness, number))
            completed = True
        finally:
            if completed and not harness.failures:
                shutil.rmtree(harness.log_root, ignore_errors=True)
            else:
                progress.note(f"worker logs kept in {harness.log_root}")
    figures = summarize(
        [
            [f for name, result in found.items() for f in _SCENARIOS[name].figures(result)]
            for found in rounds
        ]
    )
    return {
        "started_at": started_at,
        "argv": sys.argv[1:],
        "repeat": config.repeat,
        "config": _sizes(config),
        "machine": machine_info(),
        "postgres": postgres,
        "scenarios": rounds[0] if rounds else {},
        **({"repeats": rounds[1:]} if len(rounds) > 1 else {}),
        "figures": figures,
    }
