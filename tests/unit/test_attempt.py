"""The gate before an attempt runs and the record written after it (no database needed)."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from reproq.engine.attempt import (
    AllowList,
    AttemptPolicy,
    Refusal,
    cancelled_completion,
    failure_completion,
    outcome_completion,
    prepare_call,
    truncate_utf8,
)
from reproq.engine.claim import ClaimedRow
from reproq.engine.lease import Lease
from reproq.executors.base import Outcome, TaskCall
from reproq.models import ErrorKind, TaskStatus
from reproq.spec import build_spec

AT = "2025-01-01T00:00:00+00:00"


def _policy(**overrides: object) -> AttemptPolicy:
    values: dict[str, object] = {
        "worker_id": "w1",
        "allow": AllowList(["tests.tasks."]),
        "max_payload_bytes": 1024 * 1024,
        "max_output_bytes": 1024 * 1024,
    }
    values.update(overrides)
    return AttemptPolicy(**values)  # type: ignore[arg-type]


def _row(spec: object, **overrides: object) -> ClaimedRow:
    values: dict[str, object] = {
        "result_id": 7,
        "attempt": 1,
        "spec_text": spec if isinstance(spec, str) else json.dumps(spec),
        "timeout_seconds": 30,
        "max_attempts": 3,
        "workflow_id": None,
        "expired": False,
        "cancel_requested": False,
    }
    values.update(overrides)
    return ClaimedRow(**values)  # type: ignore[arg-type]


LEASE = Lease(result_id=7, attempt=1, max_attempts=3)


@pytest.mark.parametrize(
    ("entries", "path", "allowed"),
    [
        (["myapp.tasks."], "myapp.tasks.send", True),
        (["myapp.tasks"], "myapp.tasks.send", True),
        (["myapp.tasks"], "myapp.tasksevil.run", False),
        (["myapp.tasks."], "myapp.tasksevil.run", False),
        (["myapp.tasks."], "os.system", False),
        (["*"], "os.system", True),
        (["a.", "b."], "b.x", True),
        ([], "myapp.tasks.send", False),
        (["myapp.tasks."], "myapp.tasks._private", False),
        (["myapp.tasks."], "myapp.tasks.helpers._os.system", False),
        (["*"], "myapp.tasks.send.__globals__", False),
        (["*"], "_private.tasks.send", False),
    ],
)
def test_the_allow_list_matches_module_prefixes_at_dot_boundaries(
    entries: list[str], path: str, allowed: bool
) -> None:
    assert AllowList(entries).allows(path) is allowed


def test_a_valid_row_becomes_a_call_with_the_spec_arguments_and_deadline() -> None:
    spec = build_spec("tests.tasks.sample.add", [1, 2], {"x": 3}, timeout_seconds=30)
    call = prepare_call(_row(spec), _policy())
    assert isinstance(call, TaskCall)
    assert (call.task_path, call.args, call.kwargs) == ("tests.tasks.sample.add", [1, 2], {"x": 3})
    assert call.timeout_seconds == 30 and call.worker_id == "w1"


def test_the_allow_list_checks_the_path_in_the_spec_that_would_be_executed() -> None:
    refusal = prepare_call(_row(build_spec("os.system", ["true"])), _policy())
    assert isinstance(refusal, Refusal)
    assert refusal.kind == ErrorKind.SECURITY_VIOLATION
    assert "os.system" in refusal.message


def test_a_private_name_is_a_security_violation_even_under_an_allowed_prefix() -> None:
    spec = {"task_path": "tests.tasks.sample._touch", "args": ["/tmp/x"]}
    refusal = prepare_call(_row(spec), _policy())
    assert isinstance(refusal, Refusal)
    assert refusal.kind == ErrorKind.SECURITY_VIOLATION
    assert "private '_touch'" in refusal.message


@pytest.mark.parametrize("name", ["lock_key", "concurrency_key"])
def test_a_key_over_the_limit_written_by_another_client_is_an_invalid_spec(name: str) -> None:
    spec = build_spec("tests.tasks.sample.add", [1, 2])
    spec[name] = "k" * 9000
    refusal = prepare_call(_row(spec), _policy())
    assert isinstance(refusal, Refusal)
    assert refusal.kind == ErrorKind.INVALID_SPEC
    assert f"{name} 'kkkk" in refusal.message
    assert "9000 bytes, over the 1024-byte limit" in refusal.message


def test_a_spec_nested_too_deeply_to_read_is_an_invalid_spec() -> None:
    text = '{"task_path": "tests.tasks.sample.echo", "args": ' + "[" * 100_000 + "]" * 100_000 + "}"
    refusal = prepare_call(_row(text), _policy(max_payload_bytes=10**6))
    assert isinstance(refusal, Refusal)
    assert refusal.kind == ErrorKind.INVALID_SPEC
    assert "nested too deeply" in refusal.message


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("not json", ErrorKind.INVALID_SPEC),
        ({"task_path": "nodots"}, ErrorKind.INVALID_SPEC),
        ({"task_path": "a.b", "args": "x"}, ErrorKind.INVALID_SPEC),
    ],
)
def test_invalid_specs_are_refused(spec: object, kind: ErrorKind) -> None:
    refusal = prepare_call(_row(spec), _policy())
    assert isinstance(refusal, Refusal) and refusal.kind == kind


def test_expired_and_cancelled_rows_and_oversized_payloads_are_refused() -> None:
    spec = build_spec("tests.tasks.sample.add", [1, 2])
    expired = prepare_call(_row(spec, expired=True), _policy())
    cancelled = prepare_call(_row(spec, cancel_requested=True), _policy())
    big = prepare_call(_row(spec), _policy(max_payload_bytes=20))
    assert isinstance(expired, Refusal) and expired.kind == ErrorKind.EXPIRED
    assert isinstance(cancelled, Refusal) and cancelled.kind == ErrorKind.CANCELLED
    assert isinstance(big, Refusal) and big.kind == ErrorKind.INFRA_ERROR
    assert "max_payload_bytes" in big.message


def test_a_success_stores_the_return_value_as_json() -> None:
    done = outcome_completion(LEASE, Outcome.success({"a": [1, "é"]}), _policy(), at=AT)
    assert done.status == TaskStatus.SUCCESSFUL
    assert json.loads(done.return_json or "") == {"a": [1, "é"]}


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), "a\x00b", object()])
def test_return_values_json_or_postgres_cannot_hold_fail_clearly(value: object) -> None:
    done = outcome_completion(LEASE, Outcome.success(value), _policy(), at=AT)
    assert done.status == TaskStatus.READY  # an app error: retried like any other
    entry = json.loads(done.error_json or "")
    assert entry["kind"] == "app_error"
    assert type(value).__name__ in entry["message"]


def test_a_result_over_max_output_bytes_fails_clearly() -> None:
    done = outcome_completion(
        LEASE, Outcome.success("x" * 100), _policy(max_output_bytes=50), at=AT
    )
    entry = json.loads(done.error_json or "")
    assert entry["kind"] == "app_error" and "max_output_bytes" in entry["message"]


def test_a_failure_entry_has_every_contract_field() -> None:
    outcome = Outcome.failure(
        ErrorKind.APP_ERROR, "boom", exception_class="ValueError", traceback="tb"
    )
    done = outcome_completion(LEASE, outcome, _policy(), at=AT)
    entry = json.loads(done.error_json or "")
    assert entry == {
        "kind": "app_error",
        "message": "boom",
        "exception_class": "ValueError",
        "traceback": "tb",
        "attempt": 1,
        "at": AT,
        "worker_id": "w1",
    }
    assert done.status == TaskStatus.READY and done.delay_seconds == 30
    assert done.last_error == "boom"


def test_the_last_failed_attempt_is_final_and_last_error_is_bounded() -> None:
    lease = Lease(result_id=7, attempt=3, max_attempts=3, workflow_id=uuid.uuid4())
    done = outcome_completion(
        lease, Outcome.failure(ErrorKind.APP_ERROR, "é" * 2000), _policy(), at=AT
    )
    assert done.status == TaskStatus.FAILED
    assert done.workflow_id == lease.workflow_id
    assert len((done.last_error or "").encode()) <= 1024


def test_nul_characters_in_error_text_are_made_storable() -> None:
    done = outcome_completion(
        LEASE, Outcome.failure(ErrorKind.APP_ERROR, "bad\x00byte"), _policy(), at=AT
    )
    assert "\x00" not in (done.error_json or "") and "\\u0000" not in (done.error_json or "")
    assert "\x00" not in (done.last_error or "")


def test_truncate_utf8_never_splits_a_character() -> None:
    assert truncate_utf8("é" * 10, 5) == "éé"
    assert truncate_utf8("short", 100) == "short"


def test_captured_output_is_written_to_a_private_log_file(tmp_path: Path) -> None:
    outcome = Outcome.success(1, stdout="out\n", stderr="err\n")
    done = outcome_completion(LEASE, outcome, _policy(logs_dir=str(tmp_path / "logs")), at=AT)
    assert done.logs_uri == str(tmp_path / "logs" / "task-7-attempt-1.log")
    text = Path(done.logs_uri).read_text()
    assert "out" in text and "err" in text
    assert stat.S_IMODE(os.stat(done.logs_uri).st_mode) == 0o600


def test_a_log_file_is_laid_out_as_the_go_worker_writes_it(tmp_path: Path) -> None:
    outcome = Outcome.failure(ErrorKind.APP_ERROR, "no", stdout="partial", stderr="trace\n")
    done = outcome_completion(LEASE, outcome, _policy(logs_dir=str(tmp_path)), at=AT)
    assert done.logs_uri is not None
    assert Path(done.logs_uri).read_text() == "STDOUT:\npartial\nSTDERR:\ntrace\n"


def test_an_attempt_without_output_still_gets_its_log_file(tmp_path: Path) -> None:
    done = outcome_completion(LEASE, Outcome.success(1), _policy(logs_dir=str(tmp_path)), at=AT)
    assert done.logs_uri == str(tmp_path / "task-7-attempt-1.log")
    assert Path(done.logs_uri).read_text() == "STDOUT:\n\nSTDERR:\n\n"


def test_an_attempt_the_worker_ended_gets_a_log_file_saying_why(tmp_path: Path) -> None:
    refusal = prepare_call(_row(build_spec("tests.tasks.sample.add"), expired=True), _policy())
    assert isinstance(refusal, Refusal)
    done = failure_completion(
        LEASE, refusal.kind, refusal.message, _policy(logs_dir=str(tmp_path)), at=AT
    )
    assert done.logs_uri == str(tmp_path / "task-7-attempt-1.log")
    assert Path(done.logs_uri).read_text() == (
        "WORKER:\nexpired: expires_at passed before it could run\n"
    )
    assert stat.S_IMODE(os.stat(done.logs_uri).st_mode) == 0o600


def test_a_cancelled_attempt_keeps_what_the_task_wrote_in_its_log_file(tmp_path: Path) -> None:
    outcome = Outcome.failure(ErrorKind.CANCELLED, "stopped", stdout="half done\n")
    done = cancelled_completion(LEASE, outcome, _policy(logs_dir=str(tmp_path)), at=AT)
    assert done.status == TaskStatus.FAILED
    assert json.loads(done.error_json or "{}")["kind"] == "cancelled"
    assert done.logs_uri is not None
    assert Path(done.logs_uri).read_text() == "STDOUT:\nhalf done\nSTDERR:\n\n"


def test_without_a_logs_directory_no_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = outcome_completion(LEASE, Outcome.success(1, stdout="x"), _policy(), at=AT)
    failed = failure_completion(LEASE, ErrorKind.EXPIRED, "late", _policy(), at=AT)
    assert done.logs_uri is None and failed.logs_uri is None
    assert not list(tmp_path.iterdir())


def test_a_task_path_that_is_not_a_string_is_an_invalid_spec_even_after_valid_ones() -> None:
    assert isinstance(prepare_call(_row(build_spec("tests.tasks.sample.add")), _policy()), TaskCall)
    refusal = prepare_call(_row({"task_path": ["tests.tasks.sample.add"]}), _policy())
    assert isinstance(refusal, Refusal) and refusal.kind == ErrorKind.INVALID_SPEC
