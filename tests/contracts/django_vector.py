"""The typed contract vector: one task run enqueued through reproq-django itself.

``spec_types.json`` / ``spec_types.sha256`` are written by running this file with a Python
that has reproq-django installed, against a scratch PostgreSQL database::

    python tests/contracts/django_vector.py postgresql://postgres@127.0.0.1/scratch tests/contracts

It configures a minimal Django project, migrates reproq-django's tables into that
database, enqueues ``contracts.typed_task`` through Django's Tasks API (reproq-django's
backend encodes the arguments and computes the hash), reads the row back and writes its
canonical spec JSON and ``spec_hash``. reproq's tests build the same spec from the same
Python values (:func:`typed_call`) and must reproduce both byte for byte.

This module imports nothing outside the standard library at import time, so reproq's
tests can import :func:`typed_call` without Django.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import types
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

TASK_PATH = "contracts.typed_task"
PRIORITY = 5
LOCK_KEY = "user:123"
CONCURRENCY_KEY = "account:42"
CONCURRENCY_LIMIT = 2
# Microseconds on purpose: the spec's run_after keeps them (it is written with
# isoformat() before the encoder sees it), unlike datetimes among the arguments.
RUN_AFTER = dt.datetime(2025, 5, 5, 1, 2, 3, 456789, tzinfo=dt.UTC)


def typed_call(model: Any, lazy: Any) -> tuple[list[Any], dict[str, Any]]:
    """The task's ``(args, kwargs)``: every type reproq-django's encoder handles.

    ``model`` is a model instance with primary key 42 (``auth.user``) and ``lazy`` a lazy
    translation string of ``"lazy text"``: real Django objects when generating, stand-ins
    in reproq's tests.
    """
    plus2 = dt.timezone(dt.timedelta(hours=2))
    args: list[Any] = [
        dt.datetime(2025, 5, 5, 1, 2, 3, 456789, tzinfo=dt.UTC),  # ms and Z
        dt.datetime(2025, 5, 5, 1, 2, 3, tzinfo=dt.UTC),  # no fraction, Z
        dt.datetime(2025, 5, 5, 3, 2, 3, 456789, tzinfo=plus2),  # ms, offset kept
        dt.datetime(2025, 5, 5, 1, 2, 3, 9),  # naive: ms, no suffix
        dt.date(2025, 5, 5),
        dt.time(1, 2, 3, 456789),
        dt.time(1, 2, 3),
        dt.timedelta(days=1, seconds=2, microseconds=3),
        dt.timedelta(minutes=-5),
        Decimal("12.340"),
        Decimal("1E+3"),
        uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
        model,
        lazy,
        (1, (2.5, "é"), None, True),
    ]
    kwargs: dict[str, Any] = {
        "when": {"at": dt.datetime(2026, 1, 2, 23, 59, 59, 999999, tzinfo=dt.UTC)},
        "items": [{"price": Decimal("0.10"), "wait": dt.timedelta(hours=3)}],
        "owner": model,
        "note": "naïve ☃",
    }
    return args, kwargs


def main(dsn: str, out_dir: Path) -> None:
    """Enqueue the typed task through reproq-django and write the vector files."""
    import django
    from django.conf import settings
    from django.core.management import call_command
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(dsn)
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "reproq_django",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": info.get("dbname", ""),
                "USER": info.get("user", ""),
                "PASSWORD": info.get("password", ""),
                "HOST": info.get("host", ""),
                "PORT": info.get("port", ""),
            }
        },
        TASKS={"default": {"BACKEND": "reproq_django.backend.ReproqBackend"}},
        USE_TZ=True,
        TIME_ZONE="UTC",
    )
    django.setup()
    call_command("migrate", "reproq_django", verbosity=0)

    from django.contrib.auth.models import User
    from django.tasks import task
    from django.utils.translation import gettext_lazy
    from reproq_django.models import TaskRun
    from reproq_django.serialization import canonical_json

    # The task lives in a module named "contracts", as in the first contract vector.
    module = types.ModuleType("contracts")
    sys.modules["contracts"] = module

    def typed_task(*args: Any, **kwargs: Any) -> None:
        """Never run: only enqueued."""

    typed_task.__module__ = "contracts"
    typed_task.__qualname__ = "typed_task"
    module.typed_task = task()(typed_task)  # type: ignore[attr-defined]

    args, kwargs = typed_call(User(pk=42, username="contract"), gettext_lazy("lazy text"))
    result = module.typed_task.using(priority=PRIORITY, run_after=RUN_AFTER).enqueue(
        *args,
        lock_key=LOCK_KEY,
        concurrency_key=CONCURRENCY_KEY,
        concurrency_limit=CONCURRENCY_LIMIT,
        **kwargs,
    )
    row = TaskRun.objects.get(result_id=result.result_id)
    canonical = canonical_json(row.spec_json)
    if hashlib.sha256(canonical.encode("utf-8")).hexdigest() != row.spec_hash:
        raise SystemExit("the stored spec does not hash to its spec_hash")
    row.delete()
    (out_dir / "spec_types.json").write_bytes(canonical.encode("utf-8"))
    (out_dir / "spec_types.sha256").write_text(row.spec_hash)
    print(f"wrote {out_dir / 'spec_types.json'} ({row.spec_hash})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} DSN OUT_DIR")
    main(sys.argv[1], Path(sys.argv[2]))
