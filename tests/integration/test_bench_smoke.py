"""``reproq bench`` runs the backlog and latency scenarios end to end and writes the
documented JSON shape (the burst, steady and reference scenarios: test_bench_scenarios).

Sizes are tiny and nothing about speed is asserted: performance is measured by running
``reproq bench`` itself, never by the test suite.
"""

from __future__ import annotations

import json
from pathlib import Path

from reproq.cli import main
from reproq.pg.throwaway import ServerInfo


def test_bench_runs_the_backlog_and_latency_scenarios_and_writes_comparable_json(
    pg_server: ServerInfo, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    scenarios = ["enqueue", "e2e", "latency", "claim-growth"]
    code = main(
        ["bench", *scenarios, "--dsn", pg_server.dsn, "--scale", "0.001", "--json", str(out)]
    )
    assert code == 0
    doc = json.loads(out.read_text())

    assert doc["machine"]["cpu_count"] >= 1
    assert doc["machine"]["cpu_model"]
    assert doc["postgres"]["server_version"]
    assert {"synchronous_commit", "fsync", "shared_buffers"} <= set(doc["postgres"]["settings"])

    scenarios = doc["scenarios"]
    assert set(scenarios) == {"enqueue", "e2e", "latency", "claim-growth"}

    enqueue = scenarios["enqueue"]
    assert enqueue["specs"] == 99  # 100 at this scale, one of them opens the pool
    assert enqueue["specs_per_second"] > 0

    runs = {run["label"]: run for run in scenarios["e2e"]["runs"]}
    assert {"thread x1", "thread x1 400 slots", "mock x1", "process x1", "subprocess x1"} <= set(
        runs
    )
    assert runs["thread x1 400 slots"]["concurrency"] == 400
    lanes = runs["thread x1 800 slots 2 connections"]
    assert (lanes["workers"], lanes["concurrency"], lanes["connections"]) == (1, 800, 2)
    assert any(label.startswith("thread x") and not label.startswith("thread x1") for label in runs)
    for label, run in runs.items():
        assert "error" not in run, (label, run)
        assert run["successful"] == run["tasks"]
        assert run["tasks_per_second"] > 0
        assert set(run["wait_ms"]) == {"n", "p50", "p95", "p99", "max"}
        assert run["worker_rss_mb"] > 0

    for mode in ("notify", "polling", "polling-10ms"):
        latency = scenarios["latency"][mode]
        assert latency["tasks"] >= 1
        assert latency["pickup_ms"]["n"] == latency["tasks"]
        assert latency["pickup_ms"]["p50"] is not None
        assert latency["worker_rss_mb"] > 0

    growth = scenarios["claim-growth"]["runs"]
    assert [run["history_rows"] for run in growth] == [10, 1000]
    for run in growth:
        assert "error" not in run, run
        assert run["successful"] == run["tasks"]

    # Without raw-claim in the run there is nothing to divide by: figures, no ratios.
    assert doc["figures"]["e2e thread x1"]["runs"][0] > 0
    assert not any("ratio" in figure for figure in doc["figures"].values())
