"""``python -m reproq.executor`` speaks the executor contract: one envelope on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reproq.errors import TaskNotAllowed
from reproq.executors.contract import call_task, exception_class_name, production_mode, resolve_task
from tests.tasks import executors as tasks

ROOT = Path(__file__).resolve().parents[2]
TASKS = "tests.tasks.executors"


def _spec(task: str, args: list[Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"v": 1, "task_path": f"{TASKS}.{task}", "args": args or [], "kwargs": kwargs}


def _run(
    *flags: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reproq.executor", "--result-id", "7", "--attempt", "2", *flags],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def _envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must hold exactly one line, got {proc.stdout!r}"
    envelope: dict[str, Any] = json.loads(lines[0])
    return envelope


def test_a_successful_task_prints_one_success_envelope_and_exits_zero() -> None:
    proc = _run("--payload-stdin", stdin=json.dumps(_spec("echo", [1, "two"], flag=True)))
    assert proc.returncode == 0, proc.stderr
    assert _envelope(proc) == {"ok": True, "return": {"args": [1, "two"], "kwargs": {"flag": True}}}


def test_a_raising_task_prints_a_failure_envelope_with_class_message_and_traceback() -> None:
    proc = _run("--payload-stdin", stdin=json.dumps(_spec("fail", ["it broke"])))
    assert proc.returncode == 0
    envelope = _envelope(proc)
    assert envelope["ok"] is False
    assert envelope["exception_class"] == "ValueError"
    assert envelope["message"] == "it broke"
    assert "Traceback" in envelope["traceback"]
    assert "in fail" in envelope["traceback"]


def test_task_output_at_python_and_fd_level_goes_to_stderr_not_into_the_envelope() -> None:
    proc = _run("--payload-stdin", stdin=json.dumps(_spec("noisy")))
    assert _envelope(proc) == {"ok": True, "return": "quiet result"}
    for text in ("python-level stdout", "python-level stderr", "fd-level stdout"):
        assert text in proc.stderr


def test_the_payload_can_come_from_a_file(tmp_path: Path) -> None:
    payload = tmp_path / "spec.json"
    payload.write_text(json.dumps(_spec("add", [2, 3])))
    proc = _run("--payload-file", str(payload))
    assert _envelope(proc) == {"ok": True, "return": 5}


def test_the_payload_can_be_inline_outside_production() -> None:
    proc = _run("--payload-json", json.dumps(_spec("add", [2, 3])), env={"REPROQ_PRODUCTION": ""})
    assert _envelope(proc) == {"ok": True, "return": 5}


def test_an_inline_payload_is_refused_in_production_without_running_the_task() -> None:
    proc = _run("--payload-json", json.dumps(_spec("add", [2, 3])), env={"REPROQ_PRODUCTION": "1"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "refusing --payload-json in production" in proc.stderr


def test_exactly_one_payload_source_is_required() -> None:
    proc = _run()
    assert proc.returncode == 2
    assert proc.stdout == ""


def test_an_unimportable_task_is_a_clear_failure_envelope() -> None:
    spec = {"task_path": "no_such_package.tasks.run", "args": [], "kwargs": {}}
    envelope = _envelope(_run("--payload-stdin", stdin=json.dumps(spec)))
    assert envelope["ok"] is False
    assert envelope["exception_class"] == "ImportError"
    assert envelope["message"] == (
        "cannot import task 'no_such_package.tasks.run': No module named 'no_such_package'"
    )


def test_a_payload_that_is_not_a_spec_is_a_failure_envelope() -> None:
    envelope = _envelope(_run("--payload-stdin", stdin="this is not json"))
    assert envelope["ok"] is False
    assert envelope["exception_class"] == "reproq.errors.InvalidSpec"
    assert envelope["message"].startswith("task 7: spec_json is not valid JSON")


def test_a_return_value_json_cannot_hold_fails_clearly() -> None:
    envelope = _envelope(_run("--payload-stdin", stdin=json.dumps(_spec("unserialisable"))))
    assert envelope["ok"] is False
    assert envelope["exception_class"] == "TypeError"
    assert "is not JSON-serialisable (set)" in envelope["message"]


def test_stdout_stays_ascii_whatever_the_return_value() -> None:
    proc = _run("--payload-stdin", stdin=json.dumps(_spec("echo", ["héllo ✓"])))
    assert proc.stdout.isascii()
    assert _envelope(proc)["return"] == {"args": ["héllo ✓"], "kwargs": {}}


# In-process checks of the helpers the process executor's children share.


def test_resolve_task_finds_module_level_functions_and_nested_attributes() -> None:
    assert resolve_task(f"{TASKS}.add") is tasks.add
    assert resolve_task("posixpath.join") is os.path.join
    assert resolve_task("json.decoder.JSONDecoder.decode") is json.JSONDecoder.decode


def test_resolve_task_refuses_a_name_its_module_only_imported_or_aliases() -> None:
    with pytest.raises(TaskNotAllowed, match=r"'os\.path' is not a module of that name"):
        resolve_task("os.path.join")  # os.path is posixpath
    with pytest.raises(TaskNotAllowed, match=r"defined in 'json\.decoder', not in 'json'"):
        resolve_task("json.JSONDecoder.decode")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (f"{TASKS}.missing", f"cannot import task '{TASKS}.missing': '{TASKS}' has no attribute"),
        (f"{TASKS}.NOT_CALLABLE", f"task '{TASKS}.NOT_CALLABLE' is a int, not a callable"),
        ("nodots", "task path 'nodots' is not a dotted path"),
    ],
)
def test_resolve_task_explains_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(ImportError, match=message.replace(".", r"\.")):
        resolve_task(path)


def test_call_task_runs_coroutines_and_refuses_nan() -> None:
    assert json.loads(call_task(f"{TASKS}.add_async", [2, 3], {})) == {"ok": True, "return": 5}
    envelope = json.loads(call_task(f"{TASKS}.not_a_number", [], {}))
    assert envelope["ok"] is False
    assert "not JSON-serialisable" in envelope["message"]


def test_call_task_turns_system_exit_into_a_failure_envelope() -> None:
    envelope = json.loads(call_task("sys.exit", [3], {}))
    assert envelope["ok"] is False
    assert envelope["exception_class"] == "SystemExit"
    assert envelope["message"] == "3"


def test_exception_class_names_are_qualified_except_for_builtins() -> None:
    assert exception_class_name(ValueError) == "ValueError"
    assert exception_class_name(json.JSONDecodeError) == "json.decoder.JSONDecodeError"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)],
)
def test_production_mode_reads_reproq_production(value: str, expected: bool) -> None:
    assert production_mode({"REPROQ_PRODUCTION": value}) is expected
