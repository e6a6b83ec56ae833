"""What a task prints in the thread executor is captured per task and capped, like the
output of the process and subprocess executors, instead of flooding the worker's own
streams."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from reproq.executors.base import TaskCall
from reproq.executors.thread import ThreadExecutor

TASKS = "tests.tasks.executors"
MARKER = "[TRUNCATED due to size limit]"


def _call(path: str, *args: Any) -> TaskCall:
    return TaskCall(
        result_id=1,
        attempt=1,
        task_path=path,
        args=list(args),
        kwargs={},
        spec={"task_path": path},
        timeout_seconds=60,
        deadline=time.monotonic() + 60,
    )


def test_fifty_megabytes_of_print_are_capped_and_kept_off_the_worker_streams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    executor = ThreadExecutor(max_output_bytes=1024 * 1024)
    outcome = executor.run(_call(f"{TASKS}.print_text", 50 * 1024 * 1024), threading.Event())
    assert outcome.ok and outcome.return_value == 50 * 1024 * 1024
    assert outcome.stdout.startswith("x" * 1000)
    assert outcome.stdout.endswith(MARKER + "\n")
    assert len(outcome.stdout.encode()) <= 1024 * 1024 + len(MARKER) + 2
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_stderr_is_captured_too_and_a_failure_keeps_its_output() -> None:
    executor = ThreadExecutor(max_output_bytes=100)
    outcome = executor.run(_call(f"{TASKS}.print_text", 500, "stderr"), threading.Event())
    assert outcome.stderr == "x" * 100 + "\n" + MARKER + "\n"
    assert outcome.stdout == ""
    failed = executor.run(_call(f"{TASKS}.noisy_failure", "boom"), threading.Event())
    assert not failed.ok and failed.stdout == "before failing\n"


def test_each_task_gets_its_own_output_and_other_threads_print_as_before(
    capsys: pytest.CaptureFixture[str],
) -> None:
    executor = ThreadExecutor()
    results: dict[str, Any] = {}

    def run(tag: str) -> None:
        results[tag] = executor.run(
            _call(f"{TASKS}.print_text", 200_000, "stdout", tag), threading.Event()
        )

    threads = [threading.Thread(target=run, args=(tag,)) for tag in "ab"]
    for t in threads:
        t.start()
    print("from the worker itself")
    for t in threads:
        t.join()
    assert results["a"].stdout == "a" * 200_000
    assert results["b"].stdout == "b" * 200_000
    out, _ = capsys.readouterr()
    assert out == "from the worker itself\n"
    assert sys.stdout.write("still a stream\n") == len("still a stream\n")
