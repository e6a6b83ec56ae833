"""The process executor runs attempts on a pool of long-lived, killable child processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reproq.errors import ConfigError
from reproq.executors._common import TRUNCATION_MARKER
from reproq.executors.base import TaskCall
from reproq.executors.process import ChildStartError, ProcessExecutor
from reproq.models import ErrorKind
from tests.unit.executor_support import TASKS, Flag, alive, make_call

ROOT = Path(__file__).resolve().parents[2]


def _call(task: str, *args: Any, timeout: float = 30.0, **kwargs: Any) -> TaskCall:
    return make_call(task, *args, result_id=21, timeout=timeout, **kwargs)


def _wait_dead(pid: int, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def _read_pids(path: Path, within: float = 15.0) -> list[int]:
    end = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < end, "the task never wrote its pids"
        time.sleep(0.02)
    return [int(pid) for pid in path.read_text().split()]


@pytest.fixture
def make_executor() -> Iterator[Any]:
    """Build executors that are always shut down (killing children) after the test."""
    made: list[ProcessExecutor] = []

    def make(**options: Any) -> ProcessExecutor:
        options.setdefault("processes", 1)
        options.setdefault("grace_seconds", 0.5)
        executor = ProcessExecutor(**options)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown(wait=False)


def _pid(executor: ProcessExecutor) -> int:
    outcome = executor.run(_call("pid"), Flag())
    assert outcome.ok, outcome.message
    pid: int = outcome.return_value
    return pid


def test_a_successful_attempt_returns_the_value_from_a_child_process(make_executor: Any) -> None:
    executor = make_executor()
    executor.start()
    outcome = executor.run(_call("add", 2, 3), Flag())
    assert outcome.ok and outcome.return_value == 5
    assert outcome.extra["pid"] != os.getpid()


def test_consecutive_tasks_reuse_the_same_child(make_executor: Any) -> None:
    executor = make_executor()
    pids = [_pid(executor) for _ in range(3)]
    assert len(set(pids)) == 1
    assert pids[0] != os.getpid()


def test_a_task_exception_is_an_app_error_and_the_child_stays(make_executor: Any) -> None:
    executor = make_executor()
    before = _pid(executor)
    outcome = executor.run(_call("fail", "no luck"), Flag())
    assert outcome.error_kind is ErrorKind.APP_ERROR
    assert outcome.exception_class == "ValueError"
    assert outcome.message == "no luck"
    assert outcome.traceback is not None and "ValueError: no luck" in outcome.traceback
    assert _pid(executor) == before


def test_a_return_value_json_cannot_hold_fails_clearly(make_executor: Any) -> None:
    outcome = make_executor().run(_call("unserialisable"), Flag())
    assert outcome.error_kind is ErrorKind.APP_ERROR
    assert outcome.exception_class == "TypeError"
    assert "is not JSON-serialisable (set)" in outcome.message


def test_each_task_s_stdout_and_stderr_are_captured_separately(make_executor: Any) -> None:
    executor = make_executor()
    outcome = executor.run(_call("noisy"), Flag())
    assert outcome.ok and outcome.return_value == "quiet result"
    assert outcome.stdout == "python-level stdout\nfd-level stdout\n"
    assert outcome.stderr == "python-level stderr\nfd-level stderr\n"
    quiet = executor.run(_call("add", 1, 1), Flag())
    assert (quiet.stdout, quiet.stderr) == ("", "")


def test_output_beyond_the_limit_is_dropped_and_marked(make_executor: Any) -> None:
    executor = make_executor(max_output_bytes=10_000)
    outcome = executor.run(_call("print_bytes", 200_000, "stdout"), Flag())
    assert outcome.ok
    assert outcome.stdout == "x" * 10_000 + "\n" + TRUNCATION_MARKER + "\n"


def test_an_oversized_payload_is_refused_before_any_child_is_used(make_executor: Any) -> None:
    executor = make_executor(max_payload_bytes=100)
    outcome = executor.run(_call("echo", "x" * 200), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert "exceeds max_payload_bytes (100)" in outcome.message
    assert "pid" not in outcome.extra


def test_a_timeout_kills_the_child_and_its_process_group(
    make_executor: Any, tmp_path: Path
) -> None:
    executor = make_executor()
    pid_file = tmp_path / "pids"
    outcome = executor.run(
        _call("spawn_grandchild_and_sleep", str(pid_file), 60, timeout=1.5), Flag()
    )
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message == "timeout after 1.5s"
    child, grandchild = _read_pids(pid_file)
    assert outcome.extra["pid"] == child
    assert _wait_dead(child)
    assert _wait_dead(grandchild), "the grandchild in the task's process group survived"
    replacement = _pid(executor)
    assert replacement != child


def test_a_task_ignoring_sigterm_is_killed_after_the_grace_period(make_executor: Any) -> None:
    executor = make_executor(grace_seconds=0.3)
    started = time.monotonic()
    outcome = executor.run(_call("sleep_ignoring_term", 60, timeout=1.0), Flag())
    assert outcome.message == "timeout after 1s"
    assert time.monotonic() - started < 15
    assert not alive(outcome.extra["pid"])


def test_sigterm_lets_the_task_clean_up_and_the_child_exit(
    make_executor: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "cleaned"
    executor = make_executor(grace_seconds=20)
    started = time.monotonic()
    outcome = executor.run(_call("sleep_then_clean_up", 60, str(marker), timeout=1.0), Flag())
    assert outcome.message == "timeout after 1s"
    assert marker.read_text() == "cleaned up"
    assert time.monotonic() - started < 15, "the child should exit well before the grace ends"


def test_a_cancel_kills_the_running_task(make_executor: Any, tmp_path: Path) -> None:
    executor = make_executor()
    pid_file = tmp_path / "pids"
    outcome = executor.run(_call("spawn_grandchild_and_sleep", str(pid_file), 60), Flag(after=1.0))
    assert outcome.error_kind is ErrorKind.CANCELLED
    for pid in _read_pids(pid_file):
        assert _wait_dead(pid)


@pytest.mark.parametrize(
    ("task", "args", "how"),
    [("exit_now", [3], "exit code 3"), ("segfault", [], "signal SIGSEGV")],
)
def test_a_child_dying_mid_task_is_an_infra_error_and_is_replaced(
    make_executor: Any, task: str, args: list[Any], how: str
) -> None:
    executor = make_executor()
    outcome = executor.run(_call(task, *args), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message == f"worker process died ({how})"
    assert not alive(outcome.extra["pid"])
    assert _pid(executor) != outcome.extra["pid"]


def test_a_child_killed_while_idle_is_replaced_without_failing_the_next_task(
    make_executor: Any,
) -> None:
    executor = make_executor()
    first = _pid(executor)
    os.kill(first, signal.SIGKILL)
    assert _wait_dead(first)
    outcome = executor.run(_call("add", 1, 2), Flag())
    assert outcome.ok and outcome.return_value == 3
    assert outcome.extra["pid"] != first


def test_children_are_recycled_after_max_tasks_per_child(make_executor: Any) -> None:
    executor = make_executor(max_tasks_per_child=2)
    pids = [_pid(executor) for _ in range(4)]
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[1] != pids[2]
    assert _wait_dead(pids[0])


def test_zero_means_no_task_limit_per_child(make_executor: Any) -> None:
    executor = make_executor(max_tasks_per_child=0)
    assert len({_pid(executor) for _ in range(3)}) == 1


def test_a_child_over_max_memory_mb_is_replaced_after_its_task(make_executor: Any) -> None:
    executor = make_executor(max_memory_mb=120)
    small = executor.run(_call("hold", 1), Flag())
    assert small.ok
    assert _pid(executor) == small.extra["pid"]
    big = executor.run(_call("hold", 150), Flag())
    assert big.ok, "going over max_memory_mb fails nothing"
    assert _wait_dead(big.extra["pid"])
    assert _pid(executor) != big.extra["pid"]


def test_the_pool_runs_tasks_in_parallel_up_to_its_size(make_executor: Any) -> None:
    executor = make_executor(processes=2)
    executor.start()
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: executor.run(_call("sleep", 0.3), Flag()), range(4)))
    assert all(outcome.ok for outcome in outcomes)
    assert len({outcome.extra["pid"] for outcome in outcomes}) == 2


def test_waiting_for_a_free_child_honours_the_deadline(make_executor: Any) -> None:
    executor = make_executor(processes=1)
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(executor.run, _call("sleep", 1.2), Flag())
        time.sleep(0.5)
        outcome = executor.run(_call("add", 1, 2, timeout=0.3), Flag())
        assert busy.result(timeout=30).ok
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message == "timeout after 0.3s waiting for a free worker process"


def test_a_memory_limit_turns_big_allocations_into_memory_errors(make_executor: Any) -> None:
    executor = make_executor(memory_limit_mb=300)
    outcome = executor.run(_call("allocate", 400), Flag())
    assert outcome.error_kind is ErrorKind.APP_ERROR
    assert outcome.exception_class == "MemoryError"
    assert executor.run(_call("allocate", 10), Flag()).ok


def test_the_spawn_start_method_works_too(make_executor: Any) -> None:
    executor = make_executor(start_method="spawn")
    outcome = executor.run(_call("add", 4, 5), Flag())
    assert outcome.ok and outcome.return_value == 9


def test_a_child_that_cannot_start_is_reported_clearly(make_executor: Any) -> None:
    executor = make_executor(preload=["no_such_module_for_reproq_tests"])
    with pytest.raises(ChildStartError, match="No module named 'no_such_module_for_reproq_tests'"):
        executor.start()
    outcome = executor.run(_call("add", 1, 2), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message.startswith("worker process failed to start: ModuleNotFoundError")


def test_output_capture_can_be_turned_off(make_executor: Any) -> None:
    outcome = make_executor(capture_output=False).run(_call("add", 1, 2), Flag())
    assert outcome.ok and (outcome.stdout, outcome.stderr) == ("", "")


def test_fork_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown start method 'fork'"):
        ProcessExecutor(start_method="fork")


def test_shutdown_removes_the_capture_directories(make_executor: Any) -> None:
    executor = make_executor()
    pid = _pid(executor)
    capture_dir = Path(os.readlink(f"/proc/{pid}/fd/1")).parent
    assert (capture_dir / "stdout").exists()
    executor.shutdown(wait=True)
    assert not capture_dir.exists()
    assert not alive(pid)


def test_shutdown_without_waiting_leaves_no_process_behind(
    make_executor: Any, tmp_path: Path
) -> None:
    executor = make_executor(processes=2)
    executor.start()
    idle = _pid(executor)
    pid_file = tmp_path / "pids"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            executor.run, _call("spawn_grandchild_and_sleep", str(pid_file), 60), Flag()
        )
        busy, grandchild = _read_pids(pid_file)
        executor.shutdown(wait=False)
        for pid in (idle, busy, grandchild):
            assert not alive(pid) or _wait_dead(pid, within=2.0), f"{pid} outlived shutdown"
        outcome = future.result(timeout=10)
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message == "stopped by executor shutdown (signal SIGKILL)"
    after = executor.run(_call("add", 1, 2), Flag())
    assert after.message == "the process executor is shut down"


def test_shutdown_with_wait_lets_the_running_task_finish(make_executor: Any) -> None:
    executor = make_executor()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(executor.run, _call("sleep", 0.5), Flag())
        time.sleep(0.2)
        executor.shutdown(wait=True)
        outcome = future.result(timeout=10)
    assert outcome.ok and outcome.return_value == 0.5
    assert not alive(outcome.extra["pid"])


def test_children_die_when_the_worker_process_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import time
        from reproq.executors.base import TaskCall
        from reproq.executors.process import ChildStartError, ProcessExecutor

        class Never:
            def is_set(self):
                return False

        if __name__ == "__main__":
            call = TaskCall(
                result_id=1, attempt=1, task_path="{TASKS}.spawn_grandchild_and_sleep",
                args=[{str(pid_file)!r}, 60], kwargs={{}}, spec={{}}, timeout_seconds=120,
                deadline=time.monotonic() + 120,
            )
            ProcessExecutor(processes=1).run(call, Never())
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        child, grandchild = _read_pids(pid_file, within=30)
        capture_dir = Path(os.readlink(f"/proc/{child}/fd/1")).parent
        assert capture_dir.name.startswith("reproq-child-")
        worker.kill()
        worker.wait(timeout=10)
        assert _wait_dead(child), "the child outlived the killed worker"
        assert _wait_dead(grandchild), "the grandchild outlived the killed worker"
        assert not capture_dir.exists(), "the child left its capture directory behind"
    finally:
        worker.kill()
        worker.wait(timeout=10)


def test_a_task_in_a_pool_child_sees_its_attempt_in_the_task_context(
    make_executor: Any,
) -> None:
    executor = make_executor()
    call = dataclasses.replace(_call("whoami"), worker_id="w-ctx")
    outcome = executor.run(call, Flag())
    assert outcome.ok
    assert outcome.return_value == {"result_id": 21, "attempt": 1, "worker_id": "w-ctx"}
