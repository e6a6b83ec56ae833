"""The real app against a database while a real worker process drains the queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from textual.pilot import Pilot

from reproq.tui.screens.overview import OverviewScreen
from reproq.tui.screens.workers import WorkersScreen
from reproq.tui.source import PostgresSource
from reproq.tui.widgets.keyed_table import KeyedTable
from tests.tui.conftest import Seeder, drive, make_app, text_of, wait_for


def test_counts_move_while_a_worker_processes_tasks(
    dsn: str, source: PostgresSource, seed: Seeder
) -> None:
    for i in range(8):
        seed.task("reproq.demo.sleep", args=[], kwargs={"seconds": 1.0 + i / 100})
    for _ in range(16):
        seed.task("reproq.demo.noop")
    app = make_app(source)
    worker: subprocess.Popen[bytes] | None = None

    def totals() -> dict[str, int]:
        screen = app.screen
        assert isinstance(screen, OverviewScreen) and screen.data is not None
        return dict(screen.data.summary.totals)

    async def scenario(pilot: Pilot[Any]) -> None:
        nonlocal worker
        await wait_for(pilot, lambda: app.refreshes >= 1, "the first refresh")
        assert totals()["READY"] == 24 and totals()["SUCCESSFUL"] == 0
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "reproq", "worker", "--dsn", dsn,
                "--allowed-task-modules", "reproq.demo.", "--concurrency", "4",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        seen: list[int] = []

        def done() -> bool:
            count = totals()["SUCCESSFUL"]
            if not seen or seen[-1] != count:
                seen.append(count)
            return count == 24

        await wait_for(pilot, done, "every run done", timeout=60)
        # The screen followed the work as it happened (two seconds of sleeps on four
        # slots), not just its end.
        assert len(seen) >= 3 and seen == sorted(seen), seen
        assert totals()["READY"] == totals()["RUNNING"] == 0
        assert "SUCCESSFUL" in text_of(pilot, "#ov-counts")
        assert "1 alive" in text_of(pilot, "#ov-system")
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, WorkersScreen), "workers")
        table = app.screen.query_one("#workers", KeyedTable)
        await wait_for(pilot, lambda: len(table.keys) == 1, "the worker's row")

    try:
        drive(app, scenario)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
