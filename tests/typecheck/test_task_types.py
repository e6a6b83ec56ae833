"""Checked by mypy (``[tool.mypy] files``), run by pytest: ``@task`` keeps a function's types.

Each ``assert_type`` must hold, and each ``# type: ignore[...]`` marks a call mypy must
refuse: ``warn_unused_ignores`` (strict mode) fails the check if one is ever accepted.
"""

from __future__ import annotations

from typing import assert_type

from reproq import Client, Signature, Task, task


@task
def send_email(user_id: int, *, welcome: bool = False) -> str:
    """A task declared with the bare decorator."""
    return f"{user_id}:{welcome}"


@task(queue="billing", priority=5, lock_key="invoices")
def invoice(amount: int, client: str) -> int:
    """A task with options, and an argument named ``client``."""
    return amount


def check_decorated_tasks_keep_their_signatures(client: Client) -> None:
    as_task: Task[..., str] = send_email
    assert_type(as_task.path, str)
    assert_type(send_email(1, welcome=True), str)
    assert_type(invoice(10, "ACME"), int)
    assert_type(send_email.sig(1), Signature)
    assert_type(invoice.using(client).enqueue(10, client="ACME"), int)
    assert_type(invoice.options(queue="other").using(client).enqueue(1, "Initech"), int)
    send_email("one")  # type: ignore[arg-type]
    send_email.sig(1, welcome="yes")  # type: ignore[arg-type]
    invoice.using(client).enqueue(10)  # type: ignore[call-arg]
    invoice.options(queue=3)  # type: ignore[arg-type]
    task(queu="typo")  # type: ignore[call-overload]


def test_the_typed_sample_runs() -> None:
    """The sample is also plain Python: the decorated functions still work when called."""
    assert send_email(7, welcome=True) == "7:True"
    assert invoice(3, "ACME") == 3
    assert invoice.defaults.queue == "billing" and invoice.path.endswith(".invoice")
