"""reproq-django itself still writes the typed contract vector reproq is tested against."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.compat.django_python import django_python

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def test_reproq_django_writes_the_typed_contract_vector_byte_for_byte(
    empty_dsn: str, tmp_path: Path
) -> None:
    python = django_python()
    done = subprocess.run(
        [python, str(CONTRACTS / "django_vector.py"), empty_dsn, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for name in ("spec_types.json", "spec_types.sha256"):
        assert (tmp_path / name).read_bytes() == (CONTRACTS / name).read_bytes(), name
