"""The subprocess executor runs each attempt per the contract, with real child processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reproq.errors import ConfigError
from reproq.executors import _lifeline as _lifeline_module
from reproq.executors._common import TRUNCATION_MARKER
from reproq.executors.base import TaskCall
from reproq.executors.subprocess import SubprocessExecutor
from reproq.models import ErrorKind
from tests.unit.executor_support import TASKS, Flag, alive, make_call

ROOT = Path(__file__).resolve().parents[2]


def _call(task: str, *args: Any, timeout: float = 30.0, **kwargs: Any) -> TaskCall:
    return make_call(task, *args, result_id=11, timeout=timeout, **kwargs)


def _executor(**options: Any) -> SubprocessExecutor:
    options.setdefault("cwd", ROOT)
    options.setdefault("grace_seconds", 0.5)
    options.setdefault("production", False)
    return SubprocessExecutor(**options)


def _wait_dead(pid: int, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def _read_pids(path: Path, within: float = 10.0) -> list[int]:
    end = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < end, "the task never wrote its pids"
        time.sleep(0.02)
    return [int(pid) for pid in path.read_text().split()]


def test_a_successful_attempt_returns_the_task_value() -> None:
    outcome = _executor().run(_call("add", 2, 3), Flag())
    assert outcome.ok
    assert outcome.return_value == 5
    assert outcome.error_kind is None
    assert outcome.extra["exit_code"] == 0


def test_a_task_exception_is_an_app_error_with_class_message_and_traceback() -> None:
    outcome = _executor().run(_call("fail", "no luck"), Flag())
    assert not outcome.ok
    assert outcome.error_kind is ErrorKind.APP_ERROR
    assert outcome.exception_class == "ValueError"
    assert outcome.message == "no luck"
    assert outcome.traceback is not None and "ValueError: no luck" in outcome.traceback


def test_what_the_task_prints_is_returned_as_stderr_for_the_logs() -> None:
    outcome = _executor().run(_call("noisy"), Flag())
    assert outcome.ok and outcome.return_value == "quiet result"
    assert outcome.stdout == ""
    assert "python-level stdout" in outcome.stderr
    assert "fd-level stderr" in outcome.stderr


def test_the_payload_goes_over_stdin_by_default() -> None:
    outcome = _executor().run(_call("payload_argv"), Flag())
    argv = ["--result-id", "11", "--attempt", "1", "--payload-stdin"]
    assert outcome.return_value["argv"] == argv


def test_the_file_payload_is_private_and_removed_afterwards() -> None:
    outcome = _executor(payload_mode="file").run(_call("payload_argv"), Flag())
    argv = outcome.return_value["argv"]
    assert argv[-2] == "--payload-file"
    assert outcome.return_value["file_mode"] == 0o600
    assert not os.path.exists(argv[-1])


def test_the_inline_payload_is_passed_on_the_command_line() -> None:
    outcome = _executor(payload_mode="inline").run(_call("add", 1, 1), Flag())
    assert outcome.ok and outcome.return_value == 2


def test_inline_payloads_are_refused_in_production() -> None:
    with pytest.raises(ConfigError, match="refused in production"):
        SubprocessExecutor(payload_mode="inline", production=True)
    with pytest.raises(ConfigError, match="unknown payload mode"):
        SubprocessExecutor(payload_mode="argv")


def test_production_mode_is_passed_on_to_the_executor_module() -> None:
    outcome = _executor(production=True).run(_call("read_env", "REPROQ_PRODUCTION"), Flag())
    assert outcome.return_value == "1"


def test_env_is_added_to_the_worker_environment() -> None:
    outcome = _executor(env={"REPROQ_TEST_MARK": "x1"}).run(
        _call("read_env", "REPROQ_TEST_MARK"), Flag()
    )
    assert outcome.return_value == "x1"


def test_an_oversized_payload_is_refused_before_anything_is_spawned() -> None:
    # A python that does not exist proves no spawn was attempted.
    executor = _executor(python="/nonexistent/python", max_payload_bytes=100)
    outcome = executor.run(_call("echo", "x" * 200), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert "exceeds max_payload_bytes (100); the task was not started" in outcome.message


def test_a_missing_python_is_an_infra_error() -> None:
    outcome = _executor(python="/nonexistent/python").run(_call("add", 1, 2), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message.startswith("could not start the executor (/nonexistent/python")


def test_a_missing_executor_module_is_an_infra_error_with_the_stderr_tail() -> None:
    outcome = _executor(module="no_such_executor_module").run(_call("add", 1, 2), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert "ended with exit code 1 and no result" in outcome.message
    assert "No module named no_such_executor_module" in outcome.message


def test_an_executor_that_dies_without_an_envelope_is_an_infra_error() -> None:
    outcome = _executor().run(_call("exit_now", 3), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert "ended with exit code 3 and no result" in outcome.message


def test_anything_but_one_envelope_on_stdout_is_invalid_json() -> None:
    # Run as a module, the tasks file prints plain text instead of an envelope.
    outcome = _executor(module=TASKS).run(_call("add", 1, 2), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message == "Invalid JSON on stdout: 'this is not a JSON envelope'"
    assert outcome.stdout == "this is not a JSON envelope\n"


def test_output_beyond_the_limit_is_dropped_and_marked() -> None:
    executor = _executor(max_output_bytes=10_000)
    outcome = executor.run(_call("print_bytes", 3_000_000, "stderr"), Flag())
    assert outcome.ok and outcome.return_value == 3_000_000
    assert outcome.stderr.startswith("x" * 10_000 + "\n" + TRUNCATION_MARKER)
    assert len(outcome.stderr) < 10_100


def test_an_envelope_cut_by_the_output_limit_is_invalid_json() -> None:
    outcome = _executor(max_output_bytes=1_000).run(_call("echo", "y" * 5_000), Flag())
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message.startswith("Invalid JSON on stdout: output exceeded max_output_bytes")


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    started = time.monotonic()
    outcome = _executor().run(
        _call("spawn_grandchild_and_sleep", str(pid_file), 60, timeout=2.0), Flag()
    )
    assert time.monotonic() - started < 20
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message == "timeout after 2s"
    child, grandchild = _read_pids(pid_file)
    assert _wait_dead(child)
    assert _wait_dead(grandchild), "the grandchild in the task's process group survived"


def test_a_task_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    started = time.monotonic()
    outcome = _executor(grace_seconds=0.3).run(
        _call("sleep_ignoring_term", 60, timeout=1.5), Flag()
    )
    assert outcome.message == "timeout after 1.5s"
    assert outcome.extra["exit_code"] == -9
    assert time.monotonic() - started < 20


def test_a_cancel_stops_the_running_task(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    outcome = _executor().run(
        _call("spawn_grandchild_and_sleep", str(pid_file), 60), Flag(after=1.5)
    )
    assert outcome.error_kind is ErrorKind.CANCELLED
    for pid in _read_pids(pid_file):
        assert _wait_dead(pid)


def test_sigterm_lets_the_task_clean_up_before_the_kill(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    outcome = _executor(grace_seconds=5).run(
        _call("sleep_then_clean_up", 60, str(marker), timeout=2.0), Flag()
    )
    assert outcome.message == "timeout after 2s"
    assert marker.read_text() == "cleaned up"
    assert outcome.extra["exit_code"] == 0, "the envelope was written and the module exited"


def test_a_cancel_before_the_start_spawns_nothing() -> None:
    flag = Flag()
    flag._event.set()
    outcome = _executor(python="/nonexistent/python").run(_call("add", 1, 2), flag)
    assert outcome.error_kind is ErrorKind.CANCELLED


def test_attempts_run_concurrently_from_many_threads() -> None:
    executor = _executor()
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda n: executor.run(_call("add", n, n), Flag()), range(4)))
    assert [outcome.return_value for outcome in outcomes] == [0, 2, 4, 6]
    assert len({outcome.extra["pid"] for outcome in outcomes}) == 4


def test_shutdown_without_waiting_kills_running_attempts(tmp_path: Path) -> None:
    executor = _executor()
    pid_file = tmp_path / "pids"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            executor.run, _call("spawn_grandchild_and_sleep", str(pid_file), 60), Flag()
        )
        pids = _read_pids(pid_file)
        executor.shutdown(wait=False)
        for pid in pids:
            assert not alive(pid) or _wait_dead(pid, within=1.0)
        outcome = future.result(timeout=10)
    assert outcome.error_kind is ErrorKind.INFRA_ERROR
    assert outcome.message == "stopped by executor shutdown"
    after = executor.run(_call("add", 1, 2), Flag())
    assert after.message == "the subprocess executor is shut down"


def test_the_default_interpreter_is_the_running_one() -> None:
    assert SubprocessExecutor().python == sys.executable


def test_the_executor_module_gives_the_task_its_attempt_and_worker_id() -> None:
    call = dataclasses.replace(_call("whoami"), attempt=2, worker_id="w-sub")
    outcome = _executor().run(call, Flag())
    assert outcome.ok, outcome.message
    assert outcome.return_value == {"result_id": 11, "attempt": 2, "worker_id": "w-sub"}


def _lifeline(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-I", "-S", _lifeline_module.__file__, str(seconds)],
        stdin=subprocess.PIPE,
        process_group=0,
    )


def _in_group(group: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"], process_group=group)


def test_the_lifeline_kills_its_group_when_its_pipe_closes() -> None:
    lifeline = _lifeline(0)
    member = _in_group(lifeline.pid)
    try:
        assert lifeline.stdin is not None
        lifeline.stdin.close()  # what the death of the worker looks like from here
        assert member.wait(timeout=10) == -signal.SIGKILL
        assert lifeline.wait(timeout=10) == -signal.SIGKILL
    finally:
        for proc in (member, lifeline):
            proc.kill()
            proc.wait()


def test_the_lifeline_kills_its_group_at_its_deadline_while_the_pipe_is_open() -> None:
    lifeline = _lifeline(0.5)
    member = _in_group(lifeline.pid)
    try:
        assert member.wait(timeout=10) == -signal.SIGKILL
        assert lifeline.wait(timeout=10) == -signal.SIGKILL
    finally:
        for proc in (member, lifeline):
            proc.kill()
            proc.wait()


def test_sigterm_to_the_group_reaches_the_task_but_not_the_lifeline() -> None:
    lifeline = _lifeline(0)
    member = _in_group(lifeline.pid)
    try:
        time.sleep(0.5)  # let the lifeline install its signal dispositions
        os.killpg(lifeline.pid, signal.SIGTERM)
        assert member.wait(timeout=10) == -signal.SIGTERM
        time.sleep(0.2)
        assert lifeline.poll() is None
    finally:
        for proc in (member, lifeline):
            proc.kill()
            proc.wait()


def test_the_task_runs_in_the_process_group_of_its_lifeline(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    executor = _executor()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            executor.run, _call("spawn_grandchild_and_sleep", str(pid_file), 60), Flag(after=3)
        )
        child, grandchild = _read_pids(pid_file)
        group = os.getpgid(child)
        assert group != child and os.getpgid(grandchild) == group
        leader = Path(f"/proc/{group}/cmdline").read_bytes().split(b"\0")
        assert leader[3].decode().endswith("_lifeline.py")
        outcome = future.result(timeout=20)
    assert outcome.error_kind is ErrorKind.CANCELLED
    assert _wait_dead(child) and _wait_dead(grandchild) and _wait_dead(group)
