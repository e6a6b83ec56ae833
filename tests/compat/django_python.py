"""The Python interpreter with reproq-django installed, for the tests that run it.

reproq-django needs Python 3.12+ and Django 6, which reproq's own test environment does
not have to provide. Tests that drive reproq-django itself read the interpreter from
``REPROQ_DJANGO_PYTHON`` and skip, saying why, when it is unset or cannot import
reproq-django.
"""

from __future__ import annotations

import functools
import os
import subprocess

import pytest

ENV_VAR = "REPROQ_DJANGO_PYTHON"


@functools.cache
def _probe(python: str) -> str | None:
    """None if ``python`` imports reproq_django and Django 6, else why not."""
    try:
        done = subprocess.run(
            [python, "-c", "import django, reproq_django; print(django.VERSION[0])"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as exc:
        return f"{ENV_VAR}={python} cannot be run: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{ENV_VAR}={python} cannot import reproq_django: {last}"
    if done.stdout.strip() != "6":
        return f"{ENV_VAR}={python} has Django {done.stdout.strip()}, not 6"
    return None


def django_python() -> str:
    """The interpreter to run reproq-django with; skips the calling test without one."""
    python = os.environ.get(ENV_VAR, "").strip()
    if not python:
        pytest.skip(
            f"{ENV_VAR} is not set: point it at a Python 3.12+ with reproq-django and "
            "Django 6 installed to run reproq-django itself in this test"
        )
    reason = _probe(python)
    if reason is not None:
        pytest.skip(reason)
    return python
