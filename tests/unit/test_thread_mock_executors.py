"""The thread and mock executors and the executor registry (no database needed)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reproq.context import current_task
from reproq.errors import ConfigError
from reproq.executors import EXECUTOR_NAMES, make_executor
from reproq.executors.base import TaskCall
from reproq.executors.mock import MockExecutor, parse_mock_duration
from reproq.executors.thread import ThreadExecutor
from reproq.models import ErrorKind


def _call(path: str, *args: Any, timeout: float = 30, **spec: Any) -> TaskCall:
    return TaskCall(
        result_id=1,
        attempt=2,
        task_path=path,
        args=list(args),
        kwargs={},
        spec={"task_path": path, **spec},
        timeout_seconds=timeout,
        deadline=time.monotonic() + timeout,
        worker_id="w",
    )


def test_the_thread_executor_calls_the_task_and_returns_its_value() -> None:
    outcome = ThreadExecutor().run(_call("tests.tasks.sample.add", 2, 3), threading.Event())
    assert outcome.ok and outcome.return_value == 5


def test_a_task_exception_is_an_app_error_with_class_and_traceback() -> None:
    outcome = ThreadExecutor().run(_call("tests.tasks.sample.fail", "nope"), threading.Event())
    assert not outcome.ok and outcome.error_kind == ErrorKind.APP_ERROR
    assert outcome.exception_class == "ValueError" and outcome.message == "nope"
    assert outcome.traceback and "ValueError: nope" in outcome.traceback


def test_a_missing_task_is_an_app_error_naming_it() -> None:
    outcome = ThreadExecutor().run(_call("tests.tasks.sample.missing"), threading.Event())
    assert outcome.error_kind == ErrorKind.APP_ERROR and "missing" in outcome.message


def test_coroutine_tasks_run_to_completion() -> None:
    outcome = ThreadExecutor().run(
        _call("tests.tasks.executors.add_async", 1, 2), threading.Event()
    )
    assert outcome.ok and outcome.return_value == 3


def test_the_task_context_is_set_during_the_call_only() -> None:
    outcome = ThreadExecutor().run(_call("tests.tasks.sample.whoami"), threading.Event())
    assert outcome.return_value == {"result_id": 1, "attempt": 2, "worker_id": "w"}
    assert current_task() is None


def test_takes_context_passes_the_context_first() -> None:
    call = _call("tests.tasks.sample.with_context", 5, takes_context=True)
    outcome = ThreadExecutor().run(call, threading.Event())
    assert outcome.return_value == {"result_id": 1, "x": 5}


def test_raise_if_cancelled_ends_the_attempt_as_cancelled() -> None:
    cancel = threading.Event()
    cancel.set()
    executor = ThreadExecutor()
    assert executor.run(_call("tests.tasks.sample.add", 1, 1), cancel).error_kind == (
        ErrorKind.CANCELLED
    )
    timer = threading.Timer(0.1, cancel.set)
    cancel.clear()
    timer.start()
    outcome = executor.run(_call("tests.tasks.sample.cooperative_sleep", 10.0), cancel)
    assert outcome.error_kind == ErrorKind.CANCELLED


def test_the_mock_executor_succeeds_fails_and_draws_durations() -> None:
    assert MockExecutor().run(_call("x.y"), threading.Event()).ok
    failing = MockExecutor(failure_rate=1.0).run(_call("x.y"), threading.Event())
    assert failing.error_kind == ErrorKind.APP_ERROR
    started = time.monotonic()
    slow = MockExecutor(duration=(0.05, 0.1), seed=3).run(_call("x.y"), threading.Event())
    assert 0.05 <= time.monotonic() - started < 1 and slow.ok


def test_the_mock_executor_honours_cancel_and_deadline() -> None:
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    assert MockExecutor(duration=10).run(_call("x.y"), cancel).error_kind == ErrorKind.CANCELLED
    late = MockExecutor(duration=10).run(_call("x.y", timeout=0.05), threading.Event())
    assert late.error_kind == ErrorKind.INFRA_ERROR and "timeout" in late.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.5, (0.5, 0.5)), ("0.1-0.3", (0.1, 0.3)), ("1..2", (1.0, 2.0)), ([1, 2], (1.0, 2.0))],
)
def test_mock_durations_parse(value: Any, expected: tuple[float, float]) -> None:
    assert parse_mock_duration(value) == expected


@pytest.mark.parametrize("value", ["soon", "3-1", -1])
def test_bad_mock_durations_are_config_errors(value: Any) -> None:
    with pytest.raises(ConfigError):
        parse_mock_duration(value)


def test_the_registry_builds_executors_by_name() -> None:
    assert set(EXECUTOR_NAMES) == {"thread", "process", "subprocess", "mock"}
    assert make_executor("thread").name == "thread"
    assert make_executor("mock", {"duration": 0.1}).name == "mock"


def test_unknown_executors_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown executor"):
        make_executor("fork")
    with pytest.raises(ConfigError, match="mock"):
        make_executor("mock", {"speed": 1})
