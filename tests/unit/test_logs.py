"""Log redaction and formats: no secret and no task payload reaches a log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from reproq.runtime.logs import REDACTED, redact_text, redact_value, register_secret, setup_logging


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing text lines to a buffer."""
    stream = io.StringIO()
    logger = logging.getLogger("reproq.test.logs")
    logger.propagate = False
    setup_logging(level="DEBUG", stream=stream, logger=logger)
    yield logger, stream
    logger.handlers.clear()
    logger.propagate = True


@pytest.fixture
def capture_json() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing JSON lines to a buffer."""
    stream = io.StringIO()
    logger = logging.getLogger("reproq.test.logs.json")
    logger.propagate = False
    setup_logging(level="INFO", json_lines=True, stream=stream, logger=logger)
    yield logger, stream
    logger.handlers.clear()
    logger.propagate = True


def test_url_dsn_password_is_hidden_but_the_rest_of_the_dsn_stays() -> None:
    text = redact_text("cannot connect to postgresql://bob:s3cr3t@db.internal:5432/app")
    assert "s3cr3t" not in text
    assert "postgresql://bob:***@db.internal:5432/app" in text


def test_key_value_dsn_password_is_hidden() -> None:
    text = redact_text("dsn host=db user=bob password=hunter22 dbname=app")
    assert "hunter22" not in text
    assert "password=***" in text
    assert "dbname=app" in text


def test_plain_urls_and_email_like_words_are_left_alone() -> None:
    line = "serving http://127.0.0.1:9090/metrics for root@worker-1"
    assert redact_text(line) == line


def test_bearer_tokens_and_token_assignments_are_hidden() -> None:
    text = redact_text("header Authorization: Bearer abc.DEF-123 auth_token=xyz987 rate=5")
    assert "abc.DEF-123" not in text
    assert "xyz987" not in text
    assert "rate=5" in text


def test_words_that_merely_start_like_token_are_kept() -> None:
    assert redact_text("tokens_per_second=5 burst=10") == "tokens_per_second=5 burst=10"


def test_payload_values_in_key_value_text_are_replaced_whole() -> None:
    text = redact_text('enqueue args=[1, {"email": "a@b.c", "n": [2, 3]}] kwargs={"x": "}"} q=hi')
    assert "a@b.c" not in text
    assert '"}"' not in text
    assert text == f"enqueue args={REDACTED} kwargs={REDACTED} q=hi"


def test_payload_values_in_json_text_are_replaced_with_a_json_string() -> None:
    spec = json.dumps({"task_path": "app.tasks.mail", "args": ["secret@x.y"], "kwargs": {}})
    text = redact_text(f"bad spec: {spec}")
    assert "secret@x.y" not in text
    assert json.loads(text.removeprefix("bad spec: ")) == {
        "task_path": "app.tasks.mail",
        "args": REDACTED,
        "kwargs": REDACTED,
    }


def test_registered_secrets_are_hidden_anywhere_in_a_line() -> None:
    register_secret("Zq9-registered-secret")
    assert "Zq9-registered-secret" not in redact_text("the value Zq9-registered-secret leaked")


def test_short_registered_values_are_ignored_so_words_survive() -> None:
    register_secret("on")
    assert redact_text("turned on") == "turned on"


def test_extra_fields_are_redacted_by_name() -> None:
    assert redact_value("kwargs", {"email": "a@b.c"}) == REDACTED
    assert redact_value("return_json", 42) == REDACTED
    assert redact_value("metrics_auth_token", "abc") == "***"
    assert redact_value("dsn", "postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact_value("queue", "default") == "default"


def test_text_lines_render_arguments_then_redact(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("connecting to %s as %s", "postgresql://u:topsecret@h/db", "u")
    line = stream.getvalue()
    assert "topsecret" not in line
    assert "INFO reproq.test.logs: connecting to postgresql://u:***@h/db as u" in line


def test_text_lines_append_extra_fields_redacted(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("task done", extra={"result_id": 7, "return_json": {"card": "4111"}})
    line = stream.getvalue()
    assert "4111" not in line
    assert "result_id=7" in line
    assert f"return_json={REDACTED}" in line


def test_tracebacks_are_redacted_too(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise RuntimeError("boom at postgresql://u:tb-secret@h/db")
    except RuntimeError:
        logger.exception("failed")
    output = stream.getvalue()
    assert "Traceback" in output
    assert "tb-secret" not in output


def test_json_lines_are_one_object_per_record_with_redacted_fields(
    capture_json: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture_json
    logger.info("pool %s started", "default", extra={"pool": "default", "kwargs": {"a": 1}})
    logger.debug("not shown at INFO")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["msg"] == "pool default started"
    assert doc["level"] == "INFO"
    assert doc["logger"] == "reproq.test.logs.json"
    assert doc["pool"] == "default"
    assert doc["kwargs"] == REDACTED
    assert doc["ts"].endswith("Z")


def test_json_lines_carry_the_traceback_as_a_field(
    capture_json: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture_json
    try:
        raise ValueError("bad")
    except ValueError:
        logger.error("it broke", exc_info=True)
    doc = json.loads(stream.getvalue())
    assert "ValueError: bad" in doc["exc"]


def test_prose_about_bearer_tokens_is_not_mistaken_for_a_token() -> None:
    line = "metrics on http://127.0.0.1:9090 (bearer token required)"
    assert redact_text(line) == line
