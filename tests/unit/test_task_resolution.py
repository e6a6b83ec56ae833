"""Task path resolution: only callables defined in the module a path names can run.

A task path is checked as a string against the allow-list, so resolution must not be able
to leave the module the string names: through another module the task module happens to
import, a private or dunder attribute, an instance's attributes, or a name imported from
elsewhere. Every executor resolves through :func:`resolve_task`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from reproq.errors import TaskNotAllowed
from reproq.executors.base import TaskCall
from reproq.executors.contract import call_task, resolve_task
from reproq.executors.thread import ThreadExecutor
from reproq.models import ErrorKind
from tests.tasks import paths, sample

ESCAPES = [
    # through modules the allowed module imports
    "reproq.demo.logging.os.system",
    "reproq.demo.time.sleep",
    "reproq.demo.random.Random",
    "tests.tasks.sample.os.system",
    "tests.tasks.paths.subprocess.run",
    # private and dunder names
    "reproq.demo.random._os.system",
    "reproq.demo._which",
    "tests.tasks.paths._private",
    "reproq.demo.__builtins__.exec",
    "reproq.demo.add.__class__.__init__.__globals__",
    "reproq.demo.add.func.__globals__",
    "reproq.demo.add.__call__",
    # into an instance
    "reproq.demo.add.enqueue",
    "reproq.demo.add.func",
    "reproq.demo.log.info",
    # names imported from another module
    "tests.tasks.paths.system",
    "tests.tasks.paths.run_system",
    "tests.tasks.paths.sample_add",
    "reproq.demo.task",
    "reproq.demo.current_task",
    # a builtin whose module is not the one named
    "os.system",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_a_path_that_leaves_its_module_is_refused(path: str) -> None:
    with pytest.raises(TaskNotAllowed) as caught:
        resolve_task(path)
    assert repr(path) in str(caught.value)


def test_the_refusal_says_why() -> None:
    with pytest.raises(TaskNotAllowed, match=r"'logging' is a module"):
        resolve_task("reproq.demo.logging.os.system")
    with pytest.raises(TaskNotAllowed, match=r"private name '_os'"):
        resolve_task("reproq.demo.random._os.system")
    with pytest.raises(TaskNotAllowed, match=r"defined in 'posix', not in 'tests.tasks.paths'"):
        resolve_task("tests.tasks.paths.system")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests.tasks.sample.add", sample.add),
        ("tests.tasks.paths.double", paths.double),
        ("tests.tasks.paths.made_here", paths.made_here),
        ("tests.tasks.paths.Jobs.triple", paths.Jobs.triple),
        ("tests.tasks.paths.Jobs", paths.Jobs),
        ("tests.tasks.paths.shout", paths.shout),
    ],
)
def test_callables_defined_in_the_named_module_resolve(path: str, expected: object) -> None:
    assert resolve_task(path) is expected


def test_a_classmethod_and_a_task_object_resolve() -> None:
    assert resolve_task("tests.tasks.paths.Jobs.name")() == "Jobs"
    assert resolve_task("reproq.demo.add")(2, 3) == 5


def test_a_missing_name_is_still_an_import_error_not_a_refusal() -> None:
    with pytest.raises(ImportError) as caught:
        resolve_task("tests.tasks.paths.nothing_here")
    assert not isinstance(caught.value, TaskNotAllowed)


def _call(path: str, *args: object) -> TaskCall:
    return TaskCall(
        result_id=1,
        attempt=1,
        task_path=path,
        args=list(args),
        kwargs={},
        spec={"task_path": path},
        timeout_seconds=30,
        deadline=time.monotonic() + 30,
    )


def test_the_thread_executor_reports_an_escape_as_a_security_violation(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    outcome = ThreadExecutor().run(
        _call("reproq.demo.logging.os.system", f"touch {marker}"), threading.Event()
    )
    assert not outcome.ok
    assert outcome.error_kind is ErrorKind.SECURITY_VIOLATION
    assert "'logging' is a module" in outcome.message
    assert not marker.exists()


def test_the_child_envelope_marks_an_escape_as_a_security_violation(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    envelope = json.loads(call_task("reproq.demo.logging.os.system", [f"touch {marker}"], {}))
    assert envelope["ok"] is False
    assert envelope["kind"] == "security_violation"
    assert envelope["exception_class"] == "reproq.errors.TaskNotAllowed"
    assert not marker.exists()
