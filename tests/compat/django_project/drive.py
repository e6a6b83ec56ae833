"""Drives the project from the tests: `python drive.py enqueue|read|schedule|periodic FILE`.

enqueue: creates a user, enqueues the tasks through Django's Tasks API and writes their
ids (and spec hashes) as JSON. read: reads every result back through Django's Tasks API
and prints it as JSON. schedule: creates a due periodic task through reproq-django's
model. periodic: prints that schedule's row and the results of its runs as JSON.
"""

import datetime as dt
import json
import os
import sys
import uuid
from decimal import Decimal


def enqueue(path):
    from compatapp import tasks
    from django.contrib.auth.models import User
    from reproq_django.models import TaskRun

    user = User.objects.create(pk=42, username="ada")
    when = dt.datetime(2025, 5, 5, 1, 2, 3, 456789, tzinfo=dt.UTC)
    results = {
        "add": tasks.add.enqueue(2, 3),
        "describe": tasks.describe.enqueue(
            when,
            Decimal("12.340"),
            uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
            dt.timedelta(hours=3),
            dt.date(2025, 5, 5),
            dt.time(1, 2, 3, 456789),
            user,
        ),
        "boom": tasks.boom.enqueue("bad input"),
        "shout": tasks.shout.enqueue("hi"),
        "cancelled": tasks.add.enqueue(40, 2),
    }
    out = {}
    for name, result in results.items():
        run = TaskRun.objects.get(result_id=result.id)
        out[name] = {"id": result.id, "spec_hash": run.spec_hash, "spec": run.spec_json}
    with open(path, "w") as handle:
        json.dump(out, handle)


def read(path):
    from django.tasks import task_backends

    with open(path) as handle:
        ids = json.load(handle)
    out = {}
    for name, entry in ids.items():
        backend = task_backends["oneshot" if name == "boom" else "default"]
        result = backend.get_result(entry["id"])
        try:
            value = result.result
        except RuntimeError as exc:
            value = f"no result: {exc}"[:40]
        out[name] = {
            "status": result.status.name,
            "raw_status": result.raw_status,
            "attempts": result.attempts,
            "result": value,
            "errors": result.errors,
            "logs_uri": result.data.logs_uri,
            "leased_by": result.data.leased_by,
            "last_error": result.data.last_error,
        }
    json.dump(out, sys.stdout, default=str)


def schedule(name):
    from django.utils import timezone
    from reproq_django.models import PeriodicTask

    PeriodicTask.objects.update_or_create(
        name=name,
        defaults={
            "cron_expr": "* * * * *",
            "task_path": "compatapp.tasks.add",
            "queue_name": "default",
            "payload_json": {"args": [20, 22], "kwargs": {}},
            "next_run_at": timezone.now(),
            "enabled": True,
        },
    )


def periodic(name):
    from django.tasks import task_backends
    from reproq_django.models import PeriodicTask, TaskRun

    row = PeriodicTask.objects.get(name=name)
    runs = TaskRun.objects.filter(task_path=row.task_path, spec_json__periodic_name=name)
    backend = task_backends["default"]
    results = [backend.get_result(str(run.result_id)).wait(timeout=60) for run in runs]
    out = {
        "last_run_at": row.last_run_at,
        "next_run_at": row.next_run_at,
        "runs": [{"status": r.status.name, "result": r.result} for r in results],
    }
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compatproj.settings")
    import django

    django.setup()
    commands = {"enqueue": enqueue, "read": read, "schedule": schedule, "periodic": periodic}
    commands[sys.argv[1]](sys.argv[2])
