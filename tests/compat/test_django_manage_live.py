"""A reproq-django project run the way its README says, with reproq as the worker binary.

Nothing but reproq-django's own entry points: Django's ``migrate`` and ``manage.py reproq
migrate-worker`` prepare the database (no ``reproq migrate``), ``manage.py reproq check``
and ``doctor`` find reproq as ``reproq`` on ``PATH``, ``manage.py reproq worker`` is
started *before* anything is enqueued, tasks are enqueued and read back through Django's
Tasks API, ``manage.py reproq beat --once`` runs a schedule made with reproq-django's
model, and stopping the unit as systemd does stops the worker cleanly. Needs
``REPROQ_DJANGO_PYTHON`` (see ``django_python.py``) with reproq's dependencies installed
too, as they are once reproq is installed into the project's virtualenv.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import reproq
from reproq.db import connect
from reproq.pg.migrations import current_version, latest_version
from tests.compat.django_python import django_python
from tests.integration.up_harness import ROOT, clean_env

PROJECT = Path(__file__).resolve().parent / "django_project"


def _run(cmd: list[str], cwd: Path, env: Mapping[str, str]) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _reproq_on_path(python: str, bin_dir: Path, env: Mapping[str, str]) -> None:
    """A ``reproq`` command on PATH that runs this checkout's reproq with *python*, as
    ``pip install reproq`` into the project's virtualenv would provide; skips when that
    interpreter lacks reproq's dependencies."""
    probe = subprocess.run(
        [python, "-c", "import reproq.cli, reproq.engine.worker, yaml, prometheus_client"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{python} cannot run reproq (pip install -e {ROOT} into it): {last}")
    bin_dir.mkdir()
    script = bin_dir / "reproq"
    script.write_text(f'#!/bin/sh\nexec "{python}" -m reproq "$@"\n')
    script.chmod(0o755)


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _registered_workers(dsn: str) -> int:
    with connect(dsn) as conn:
        row = conn.execute("SELECT count(*) AS n FROM reproq_workers").fetchone()
    return int(row["n"]) if row else 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_like_systemd(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """``systemctl stop`` of a unit running ``manage.py reproq worker``: SIGTERM to every
    process of the unit at once (KillMode=control-group), then wait for all of them."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return proc.returncode, err


def test_manage_py_reproq_runs_the_project_with_reproq_as_its_worker(
    empty_dsn: str, tmp_path: Path
) -> None:
    python = django_python()
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    bin_dir = tmp_path / "bin"
    env = clean_env(
        {
            "COMPAT_DSN": empty_dsn,
            # reproq-django builds a URL from DATABASES, which cannot name the test
            # server's socket directory; DATABASE_URL is its other documented source.
            "DATABASE_URL": empty_dsn,
            "DJANGO_SETTINGS_MODULE": "compatproj.settings",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    _reproq_on_path(python, bin_dir, env)

    _run([python, "manage.py", "migrate", "--noinput"], project, env)
    _run([python, "manage.py", "reproq", "migrate-worker"], project, env)
    checked = _run([python, "manage.py", "reproq", "check"], project, env)
    assert f"Worker binary: reproq {reproq.__version__}" in checked
    assert f"Resolved worker binary: {bin_dir / 'reproq'}" in checked
    doctor = _run([python, "manage.py", "reproq", "doctor"], project, env)
    assert f"Worker binary: reproq {reproq.__version__}" in doctor

    logs = tmp_path / "logs"
    worker = subprocess.Popen(
        [python, "manage.py", "reproq", "worker", "--logs-dir", str(logs)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait(lambda: _registered_workers(empty_dsn) or worker.poll() is not None, 120, "start")
        assert worker.poll() is None, worker.communicate()
        with connect(empty_dsn) as conn:
            assert current_version(conn) == latest_version()

        _run([python, "drive.py", "enqueue", "ids.json"], project, env)
        ids = {k: int(v["id"]) for k, v in json.loads((project / "ids.json").read_text()).items()}
        _run([python, "drive.py", "schedule", "answer"], project, env)
        beat = _run([python, "manage.py", "reproq", "beat", "--once"], project, env)
        assert beat.strip().endswith("enqueued 1"), beat
        periodic = json.loads(_run([python, "drive.py", "periodic", "answer"], project, env))
        read = json.loads(_run([python, "drive.py", "read", "ids.json"], project, env))
    finally:
        code, err = _stop_like_systemd(worker)
    # manage.py dies of the signal at once; reproq drains and stops on its own.
    assert code == -signal.SIGTERM, err
    assert "SIGTERM: stopping" in err and "stopped: " in err, err
    assert "Traceback" not in err, err
    _wait(lambda: not _group_alive(worker.pid), 30, "a process of the unit is left")

    assert (read["add"]["status"], read["add"]["result"]) == ("SUCCESSFUL", 5)
    assert read["describe"]["result"]["when"] == "2025-05-05T01:02:03.456Z"
    assert read["describe"]["result"]["user"] == "User:42:ada"
    boom = read["boom"]
    assert (boom["status"], boom["attempts"], boom["last_error"]) == ("FAILED", 1, "bad input")
    assert [e["exception_class"] for e in boom["errors"]] == ["ValueError"]
    assert read["shout"]["result"] == "HI"
    assert read["cancelled"]["result"] == 42
    for name, entry in read.items():
        assert entry["leased_by"] is None, name
        assert entry["logs_uri"] == str(logs / f"task-{ids[name]}-attempt-1.log"), name
    assert periodic["runs"] == [{"status": "SUCCESSFUL", "result": 42}]
    assert periodic["last_run_at"] is not None

    stats = _run([python, "manage.py", "reproq", "stats"], project, env)
    assert "SUCCESSFUL" in stats and "FAILED" in stats
    shown = _run([python, "manage.py", "reproq", "logs", "--id", str(ids["shout"])], project, env)
    assert shown.startswith("STDOUT:") and "err: hi" in shown
