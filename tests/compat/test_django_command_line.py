"""`manage.py reproq worker|beat|check|doctor` exec reproq with the Go worker's command line.

The argument vectors and environments below are the ones reproq-django's management
command builds (reproq-django commit e376e7a, version 0.1.529,
``src/reproq_django/management/commands/reproq.py``: ``run_worker_or_beat``,
``run_check`` and ``run_doctor``), kept as data. Each worker vector is run for real
against the test database: the worker must start, run a task and stop cleanly.

reproq-django is not a test dependency: ``tests/compat/site`` holds a stand-in
``reproq_django`` package whose ``executor`` module speaks the executor contract.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

import reproq
from reproq.db import Conn
from tests.integration.worker_harness import (
    ROOT,
    enqueue,
    registered,
    stop_process,
    wait_status,
    wait_until,
)

SITE = Path(__file__).resolve().parent / "site"

# The environment manage.py runs with (and the worker inherits): Django's settings module.
DJANGO_ENV = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}

# `manage.py reproq worker` without a config file: --dsn, --concurrency and --queues are
# always passed; --allowed-task-modules is computed from the project's tasks unless
# ALLOWED_TASK_MODULES is set in the environment.
WORKER_DEFAULT = [
    "worker",
    "--dsn",
    "{dsn}",
    "--concurrency",
    "10",
    "--queues",
    "default",
    "--allowed-task-modules",
    "tests.tasks.",
]
WORKER_ENV_ALLOW_LIST = ["worker", "--dsn", "{dsn}", "--concurrency", "10", "--queues", "default"]
WORKER_ALL_FLAGS = [
    "worker",
    "--dsn",
    "{dsn}",
    "--concurrency",
    "10",
    "--queues",
    "default",
    "--allowed-task-modules",
    "tests.tasks.",
    "--logs-dir",
    "{logs}",
    "--payload-mode",
    "file",
]
# With a config file (--config, $REPROQ_CONFIG or reproq.yaml found in the project): only
# --config, plus the flags given on manage.py's own command line.
WORKER_CONFIG = ["worker", "--config", "{config}"]
WORKER_CONFIG_FLAGS = [
    "worker",
    "--config",
    "{config}",
    "--concurrency",
    "4",
    "--queues",
    "default",
    "--payload-mode",
    "stdin",
]
BEAT_DEFAULT = ["beat", "--dsn", "{dsn}", "--interval", "30s", "--once"]
BEAT_CONFIG = ["beat", "--config", "{config}", "--once"]
VERSION = ["--version"]  # run_check and run_doctor

GO_SHAPED_YAML = """\
dsn: "{dsn}"
worker:
  dsn: ""
  worker_id: "{worker_id}"
  process_role: "worker"
  queues:
    - default
  allowed_task_modules:
    - "tests.tasks."
  concurrency: 2
  poll_min_backoff: "100ms"
  poll_max_backoff: "1s"
  lease_seconds: 300
  heartbeat_seconds: 60
  reclaim_interval_seconds: 60
  python_bin: "{python}"
  executor_module: "reproq_django.executor"
  payload_mode: "stdin"
  max_payload_bytes: 1048576
  max_stdout_bytes: 1048576
  max_stderr_bytes: 1048576
  logs_dir: ""
  exec_timeout: "1h"
  max_attempts_default: 3
  shutdown_timeout: "30s"
  priority_aging_factor: 60
beat:
  dsn: ""
  interval: "30s"
metrics:
  addr: ""
  port: 0
  auth_token: ""
  allow_cidrs: []
  tls_cert: ""
  tls_key: ""
  tls_client_ca: ""
  auth_limit: 30
  auth_window: "1m"
  auth_max_entries: 1000
"""

GO_SHAPED_TOML = """\
dsn = "{dsn}"

[worker]
dsn = ""
worker_id = "{worker_id}"
process_role = "worker"
queues = ["default"]
allowed_task_modules = ["tests.tasks."]
concurrency = 2
poll_min_backoff = "100ms"
poll_max_backoff = "1s"
lease_seconds = 300
heartbeat_seconds = 60
reclaim_interval_seconds = 60
python_bin = "{python}"
executor_module = "reproq_django.executor"
payload_mode = "stdin"
max_payload_bytes = 1048576
max_stdout_bytes = 1048576
max_stderr_bytes = 1048576
logs_dir = ""
exec_timeout = "1h"
max_attempts_default = 3
shutdown_timeout = "30s"
priority_aging_factor = 60

[beat]
dsn = ""
interval = "30s"

[metrics]
addr = ""
port = 0
auth_token = ""
allow_cidrs = []
tls_cert = ""
tls_key = ""
tls_client_ca = ""
"""


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    scrubbed = ("DATABASE_URL", "REPROQ_DSN", "WORKER_ID", "REPROQ_CONFIG", "ALLOWED_TASK_MODULES")
    env = {k: v for k, v in os.environ.items() if k not in scrubbed}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(SITE)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _argv(vector: Sequence[str], **values: str) -> list[str]:
    return [sys.executable, "-m", "reproq", *(part.format(**values) for part in vector)]


def _run_worker_until_a_task_ran(
    conn: Conn, argv: list[str], env: Mapping[str, str], cwd: Path
) -> tuple[dict[str, object], str]:
    """Start the worker, run one probe task through it, stop it; (task return, stderr)."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        rid = enqueue(conn, "tests.tasks.probe.how_run")
        done = wait_status(conn, rid, ("SUCCESSFUL", "FAILED"), timeout=60)
    finally:
        code, err = stop_process(proc, signal.SIGTERM)
    assert done["status"] == "SUCCESSFUL", (done["errors_json"], err)
    assert code == 0, err
    return done["return_json"], err


def test_version_is_what_check_and_doctor_ask_for() -> None:
    for vector in (VERSION, ["version"]):
        out = subprocess.run(
            _argv(vector), env=_env({}), capture_output=True, text=True, check=True
        ).stdout
        assert out.strip() == f"reproq {reproq.__version__}"


def test_the_default_worker_command_runs_tasks_through_reproq_django_executor(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    returned, err = _run_worker_until_a_task_ran(
        conn, _argv(WORKER_DEFAULT, dsn=dsn), _env(DJANGO_ENV), tmp_path
    )
    assert returned == {"main": "reproq_django.executor", "python": sys.executable}
    assert f"executor: subprocess ({sys.executable} -m reproq_django.executor" in err
    assert "DJANGO_SETTINGS_MODULE" in err


def test_the_allow_list_from_the_environment_is_used(dsn: str, conn: Conn, tmp_path: Path) -> None:
    env = _env({**DJANGO_ENV, "ALLOWED_TASK_MODULES": "tests.tasks."})
    returned, _ = _run_worker_until_a_task_ran(
        conn, _argv(WORKER_ENV_ALLOW_LIST, dsn=dsn), env, tmp_path
    )
    assert returned["main"] == "reproq_django.executor"


def test_logs_dir_and_payload_mode_flags_take_effect(dsn: str, conn: Conn, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    returned, _ = _run_worker_until_a_task_ran(
        conn, _argv(WORKER_ALL_FLAGS, dsn=dsn, logs=str(logs)), _env(DJANGO_ENV), tmp_path
    )
    assert returned["main"] == "reproq_django.executor"
    assert list(logs.glob("task-*-attempt-1.log"))


def test_without_django_the_default_command_runs_tasks_in_threads(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    returned, err = _run_worker_until_a_task_ran(
        conn, _argv(WORKER_DEFAULT, dsn=dsn), _env({}), tmp_path
    )
    assert returned["main"] == "reproq.__main__"
    assert "executor: thread" in err


@pytest.mark.parametrize(
    ("template", "name"),
    [(GO_SHAPED_YAML, "reproq.yaml"), (GO_SHAPED_TOML, "reproq.toml")],
    ids=["yaml", "toml"],
)
@pytest.mark.parametrize("vector", [WORKER_CONFIG, WORKER_CONFIG_FLAGS], ids=["config", "flags"])
def test_a_go_shaped_config_file_runs_the_worker(  # noqa: PLR0917 - fixtures and parameters
    dsn: str, conn: Conn, tmp_path: Path, template: str, name: str, vector: list[str]
) -> None:
    worker_id = f"go-shaped-{name}-{len(vector)}"
    config = tmp_path / name
    config.write_text(template.format(dsn=dsn, worker_id=worker_id, python=sys.executable))
    check = subprocess.run(
        _argv(["config", "check", str(config)]),
        env=_env({}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    returned, _ = _run_worker_until_a_task_ran(
        conn, _argv(vector, config=str(config)), _env(DJANGO_ENV), tmp_path
    )
    assert returned["main"] == "reproq_django.executor"
    assert registered(conn, worker_id)


@pytest.mark.parametrize("vector", [BEAT_DEFAULT, BEAT_CONFIG], ids=["dsn", "config"])
def test_the_beat_command_lines_run_one_tick(
    dsn: str, conn: Conn, tmp_path: Path, vector: list[str]
) -> None:
    config = tmp_path / "reproq.yaml"
    config.write_text(GO_SHAPED_YAML.format(dsn=dsn, worker_id="w", python=sys.executable))
    conn.execute(
        "INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name, "
        "priority, max_attempts, enabled, next_run_at, created_at, updated_at, "
        "concurrency_limit) VALUES ('every-minute', '* * * * *', 'tests.tasks.sample.noop', "
        "'{}', 'default', 0, 3, true, now() - interval '1 second', now(), now(), 0)"
    )
    proc = subprocess.run(
        _argv(vector, dsn=dsn, config=str(config)),
        env=_env(DJANGO_ENV),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "enqueued 1"
    wait_until(
        lambda: conn.execute(
            "SELECT count(*) AS n FROM task_runs WHERE task_path = 'tests.tasks.sample.noop'"
        ).fetchone()
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_metrics_flags_serve_health_and_metrics_from_the_worker(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    port = _free_port()
    vector = [
        *WORKER_DEFAULT,
        "--metrics-addr",
        f"127.0.0.1:{port}",
        "--metrics-auth-token",
        "s3cret",
        "--metrics-allow-cidrs",
        "127.0.0.1/32",
    ]
    proc = subprocess.Popen(
        _argv(vector, dsn=dsn),
        cwd=tmp_path,
        env=_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def get(path: str, token: str | None) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    try:
        wait_until(lambda: get("/healthz", "s3cret") == 200, 30)
        assert get("/metrics", "s3cret") == 200
        assert get("/healthz", None) == 401
    finally:
        code, err = stop_process(proc, signal.SIGTERM)
    assert code == 0, err


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command is needed to make a certificate"
)
def test_the_metrics_tls_flags_serve_https_from_the_worker(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = _free_port()
    vector = [
        *WORKER_DEFAULT,
        "--metrics-addr",
        f"127.0.0.1:{port}",
        "--metrics-tls-cert",
        str(cert),
        "--metrics-tls-key",
        str(key),
    ]
    proc = subprocess.Popen(
        _argv(vector, dsn=dsn),
        cwd=tmp_path,
        env=_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    context = ssl.create_default_context(cafile=str(cert))

    def status() -> int:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/healthz", timeout=5, context=context
            ) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    try:
        wait_until(lambda: status() == 200, 30)
    finally:
        code, err = stop_process(proc, signal.SIGTERM)
    assert code == 0, err


def test_a_tls_certificate_flag_without_its_key_is_a_one_line_error(
    dsn: str, tmp_path: Path
) -> None:
    vector = [*WORKER_DEFAULT, "--metrics-addr", "127.0.0.1:0", "--metrics-tls-cert", "c.pem"]
    proc = subprocess.run(
        _argv(vector, dsn=dsn),
        cwd=tmp_path,
        env=_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("reproq: error: metrics.tls_cert: needs metrics.tls_key too"), last
    assert "--metrics-tls-cert" in proc.stderr
