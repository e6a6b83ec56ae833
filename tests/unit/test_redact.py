"""One redaction for every DSN form libpq accepts, in DSNs and in the messages around them."""

from __future__ import annotations

import pytest

from reproq.db import connect, redact_dsn
from reproq.errors import DatabaseError
from reproq.runtime.logs import redact_text
from tests.dsn_forms import MARK, UNREACHABLE, Server, all_forms

SOCKET = Server(host="/run/postgresql", port=5433, user="app_user", dbname="app_db")
FORMS = all_forms(UNREACHABLE) + [(f"{label}-socket", dsn) for label, dsn in all_forms(SOCKET)]


@pytest.mark.parametrize(("label", "dsn"), FORMS, ids=[label for label, _ in FORMS])
def test_every_form_loses_its_password_and_keeps_the_rest(label: str, dsn: str) -> None:
    redacted = redact_dsn(dsn)
    assert MARK not in redacted
    assert "***" in redacted
    server = SOCKET if label.endswith("-socket") else UNREACHABLE
    for kept in (f":{server.port}", f"port={server.port}", server.dbname, server.user):
        if kept in dsn.replace(MARK, ""):
            assert kept in redacted


@pytest.mark.parametrize(("label", "dsn"), FORMS, ids=[label for label, _ in FORMS])
def test_a_dsn_inside_a_message_is_redacted_too(label: str, dsn: str) -> None:
    for text in (f"cannot connect to {dsn}: refused", f'in URI: "{dsn}"', f"dsn='{dsn}'"):
        assert MARK not in redact_dsn(text)


@pytest.mark.parametrize(("label", "dsn"), FORMS, ids=[label for label, _ in FORMS])
def test_log_lines_use_the_same_redaction(label: str, dsn: str) -> None:
    assert MARK not in redact_text(f"worker w1 started on {dsn}: queues=default")


@pytest.mark.parametrize(
    ("label", "dsn"), all_forms(UNREACHABLE), ids=[label for label, _ in all_forms(UNREACHABLE)]
)
def test_connection_errors_name_the_server_without_its_password(label: str, dsn: str) -> None:
    # libpq quotes pieces of the connection string in its messages (a URI it cannot parse,
    # the host part a password with an unencoded "@" spilled into).
    with pytest.raises(DatabaseError) as caught:
        connect(dsn).close()
    message = str(caught.value)
    assert message.startswith("cannot connect to ")
    assert MARK not in message


def test_text_without_credentials_is_unchanged() -> None:
    for text in (
        "serving http://127.0.0.1:9090/metrics for root@worker-1",
        "postgresql://db.internal:5432/app?sslmode=require",
        "host=db port=5432 user=bob dbname=app",
        "the password is never logged",
        "https://user@example.com/path@x",
    ):
        assert redact_dsn(text) == text


def test_other_url_schemes_with_credentials_are_redacted() -> None:
    assert redact_dsn("amqp://guest:guest-pw@rabbit:5672/") == "amqp://guest:***@rabbit:5672/"


def test_a_quoted_password_is_hidden_whole_up_to_its_closing_quote() -> None:
    dsn = r"host=h password='a \' b c' dbname=app"
    assert redact_dsn(dsn) == "host=h password=*** dbname=app"


def test_an_empty_user_keeps_the_separator() -> None:
    assert redact_dsn("postgresql://:pw-secret@h/db") == "postgresql://:***@h/db"


def test_query_parameters_other_than_passwords_stay() -> None:
    dsn = "postgresql://h/db?user=u&password=pw&sslmode=require&sslpassword=k"
    assert redact_dsn(dsn) == (
        "postgresql://h/db?user=u&password=***&sslmode=require&sslpassword=***"
    )


def test_with_the_dsn_its_password_is_hidden_anywhere_in_a_message() -> None:
    dsn = "postgresql://bob:Pw@host-secret@127.0.0.1:1/app"
    message = "failed to resolve host 'host-secret@127.0.0.1'"
    assert "host-secret" not in redact_dsn(message, dsn=dsn)
    assert redact_dsn(message) == message


def test_a_password_that_is_also_the_user_name_does_not_blank_out_the_message() -> None:
    dsn = "postgresql://postgres:postgres@127.0.0.1:1/postgres"
    message = f"cannot connect to {dsn}: connection to server at 127.0.0.1 failed"
    assert redact_dsn(message, dsn=dsn) == (
        "cannot connect to postgresql://postgres:***@127.0.0.1:1/postgres: "
        "connection to server at 127.0.0.1 failed"
    )
