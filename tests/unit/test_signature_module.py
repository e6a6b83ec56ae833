"""Signatures have their own module: the client no longer imports the ``@task`` module that
imports it back."""

from __future__ import annotations

import subprocess
import sys

import reproq
from reproq.producer import signature, task


def test_signature_is_one_class_reached_from_every_public_name() -> None:
    assert reproq.Signature is signature.Signature is task.Signature


def test_the_client_does_not_import_the_task_module() -> None:
    code = "import sys, reproq.producer.client; print('reproq.producer.task' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
