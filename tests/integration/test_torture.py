"""A short torture run: real workers, real faults, and every invariant must hold."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from reproq.stress.faults import FaultKind
from reproq.stress.report import Progress, render_table, write_json
from reproq.stress.torture import TortureConfig, run_torture


@pytest.mark.slow
def test_a_short_torture_run_with_faults_keeps_every_invariant(tmp_path: Path) -> None:
    config = TortureConfig(
        duration=25,
        workers=3,
        concurrency=20,
        rate=25,
        faults=tuple(FaultKind),
        fault_interval=2.5,
        seed=1124,  # plans every fault kind in 25 s: a same-id twin, a long freeze, a kill
        # of worker 0 (the subprocess worker of the default mixed fleet)
        lease_seconds=3,
        drain_timeout=90,
        log_dir=tmp_path / "logs",
    )
    stream = io.StringIO()
    report = run_torture(config, progress=Progress(stream))

    assert report.ok, render_table(report)
    assert report.drained
    injected = {str(f.event.kind) for f in report.faults if f.ok}
    assert len([f for f in report.faults if f.ok]) >= 5, render_table(report)
    assert {"kill", "stop", "db-restart", "db-freeze"} <= injected, render_table(report)
    assert report.settings["executor"] == "mixed"
    assert report.evidence.get("executions_in_task_processes", 0) > 0, render_table(report)
    assert report.executions > 100
    assert report.final_status.get("SUCCESSFUL", 0) > 100
    assert report.final_status.get("FAILED", 0) > 0  # always-failing and timing-out tasks
    assert not report.final_status.get("RUNNING")
    assert "load" in stream.getvalue()  # progress lines were written

    out = tmp_path / "torture.json"
    write_json(out, report.to_json())
    doc = json.loads(out.read_text())
    assert doc["ok"] is True
    assert [i["name"] for i in doc["invariants"]] == [r.name for r in report.results]
    assert doc["faults"]["injected"] >= 3
