"""``reproq bench``'s reference loop, burst and steady scenarios run end to end in rounds,
and every reproq rate comes with its ratio to the same round's reference.

Sizes are tiny and nothing about speed is asserted: performance is measured by running
``reproq bench`` itself, never by the test suite.
"""

from __future__ import annotations

import json
from pathlib import Path

from reproq.cli import main
from reproq.pg.throwaway import ServerInfo


def test_raw_claim_burst_and_steady_run_in_rounds_with_ratios_to_the_reference(
    pg_server: ServerInfo, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--dsn", pg_server.dsn, "--scale", "0.001", "--repeat", "2"]
    argv += ["--scenario", "raw-claim", "--scenario", "e2e-burst", "--scenario", "e2e-steady"]
    argv += ["--burst-tasks", "60", "--burst-concurrency", "4,16", "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())

    assert doc["repeat"] == 2
    assert len(doc["repeats"]) == 1
    for found in (doc["scenarios"], doc["repeats"][0]):
        assert set(found) == {"raw-claim", "e2e-burst", "e2e-steady"}

        raw = found["raw-claim"]
        assert (raw["tasks"], raw["threads"], raw["batch"]) == (50, 4, 10)
        assert raw["tasks_per_second"] > 0
        assert raw["copy_rows_per_second"] > 0
        assert raw["claims"] >= 50 // 10

        burst = found["e2e-burst"]
        assert [run["concurrency"] for run in burst["runs"]] == [4, 16]
        for run in burst["runs"]:
            assert "error" not in run, run
            assert run["successful"] == run["tasks"] == 60
            assert run["tasks_per_second"] > 0
            assert run["worker_rss_mb"] > 0
            assert run["autovacuum"] is False

        steady = found["e2e-steady"]
        assert "error" not in steady, steady
        assert steady["enqueued"] > 0
        assert steady["successful"] == steady["enqueued"]
        assert steady["completed_per_second"] > 0
        assert steady["pickup_ms"]["n"] == steady["enqueued"]
        assert steady["pickup_ms"]["p99"] >= steady["pickup_ms"]["p50"] > 0
        assert steady["backlog_at_end"] >= 0
        assert isinstance(steady["kept_up"], bool)
        assert steady["worker_rss_mb"] > 0

    figures = doc["figures"]
    reference = figures["raw-claim"]["runs"]
    assert len(reference) == 2 and min(reference) > 0
    for name in ("e2e-burst c4", "e2e-burst c16", "e2e-steady completed"):
        figure = figures[name]
        assert figure["reference"] == "raw-claim"
        assert len(figure["runs"]) == 2 and min(figure["runs"]) > 0
        # Each round's ratio divides by that round's own reference.
        for value, ratio, ref in zip(
            figure["runs"], figure["ratio"]["runs"], reference, strict=True
        ):
            assert abs(ratio - value / ref) < 0.01
        assert figure["ratio"]["median"] > 0
    assert figures["e2e-burst c16 rss"]["unit"] == "MB"
    assert figures["e2e-steady pickup p99"]["median"] > 0
