-- The stress harness (reproq.stress): the execution ledger, snapshots for the checker,
-- fault injection, and the benchmark with its reference claim loop. The ledger and the
-- reference loop's table are created by the harness in the database it runs in; they
-- are not part of reproq's schema.

-- name: stress_create_ledger
CREATE TABLE IF NOT EXISTS reproq_stress_ledger (
    token text PRIMARY KEY,
    result_id bigint NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    pid integer NOT NULL,
    ancestors integer[] NOT NULL DEFAULT '{}',
    kind text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    outcome text
);
-- A ledger left in a --dsn database by an older harness.
ALTER TABLE reproq_stress_ledger ADD COLUMN IF NOT EXISTS ancestors integer[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS reproq_stress_ledger_result_idx ON reproq_stress_ledger (result_id);

-- name: stress_ledger_start
-- The token is chosen by the task, so a retried insert after an unknown commit outcome
-- (connection cut mid-commit) cannot record the execution twice.
INSERT INTO reproq_stress_ledger (
    token, result_id, attempt, worker_id, pid, ancestors, kind, started_at
)
VALUES (
    %(token)s, %(result_id)s, %(attempt)s, %(worker_id)s, %(pid)s, %(ancestors)s, %(kind)s,
    clock_timestamp()
)
ON CONFLICT (token) DO NOTHING;

-- name: stress_ledger_finish
UPDATE reproq_stress_ledger SET finished_at = clock_timestamp(), outcome = %(outcome)s
WHERE token = %(token)s AND finished_at IS NULL;

-- name: stress_max_result_id
SELECT coalesce(max(result_id), 0) AS result_id FROM task_runs;

-- name: stress_now
SELECT clock_timestamp() AS now;

-- name: stress_cancelled_attempts
-- Read in the cancel's own transaction, under its row lock.
SELECT attempts, clock_timestamp() AS now FROM task_runs WHERE result_id = %(result_id)s;

-- name: stress_status_counts
SELECT status, count(*) AS n FROM task_runs WHERE result_id > %(first_id)s GROUP BY status;

-- name: stress_drain_state
SELECT
    count(*) FILTER (WHERE status = 'RUNNING') AS running,
    count(*) FILTER (
        WHERE status = 'READY' AND coalesce(run_after, '-infinity'::timestamptz) <= now()
    ) AS due,
    now() AS now  -- the instant "due" was judged at, so later retries count as pending
FROM task_runs
WHERE result_id > %(first_id)s AND status IN ('READY', 'RUNNING');

-- name: stress_cancel_candidates
SELECT result_id FROM task_runs
WHERE result_id > %(first_id)s AND status IN ('READY', 'RUNNING')
  AND spec_json -> 'kwargs' ->> 'kind' = 'cancellable'
ORDER BY result_id
LIMIT 50;

-- name: stress_snapshot_tasks
SELECT result_id, status, queue_name, attempts, max_attempts, enqueued_at, run_after,
       updated_at, finished_at, lock_key, concurrency_key, concurrency_limit, parent_id,
       workflow_id, wait_count, worker_ids, errors_json, return_json, leased_by,
       cancel_requested,
       spec_json -> 'kwargs' ->> 'kind' AS kind,
       spec_json ->> 'periodic_name' AS periodic_name,
       spec_json ->> 'scheduled_at' AS scheduled_at
FROM task_runs
WHERE result_id > %(first_id)s
ORDER BY result_id;

-- name: stress_snapshot_ledger
SELECT token, result_id, attempt, worker_id, pid, ancestors, kind, started_at, finished_at,
       outcome
FROM reproq_stress_ledger
ORDER BY started_at;

-- name: stress_snapshot_workflows
SELECT workflow_id, expected_count, success_count, failure_count, callback_result_id, status
FROM workflow_runs
WHERE workflow_id IN (
    SELECT DISTINCT workflow_id FROM task_runs
    WHERE result_id > %(first_id)s AND workflow_id IS NOT NULL
);

-- name: stress_insert_schedule
-- First fire time now, so even a short run sees every schedule fire.
INSERT INTO periodic_tasks (
    name, cron_expr, task_path, payload_json, queue_name, priority, max_attempts,
    concurrency_key, concurrency_limit, last_run_at, next_run_at, enabled, created_at, updated_at
) VALUES (
    %(name)s, %(cron_expr)s, %(task_path)s, %(payload_json)s::jsonb, %(queue_name)s, 0,
    %(max_attempts)s, NULL, 0, NULL, now(), true, now(), now()
)
ON CONFLICT (name) DO UPDATE SET
    cron_expr = EXCLUDED.cron_expr, task_path = EXCLUDED.task_path,
    payload_json = EXCLUDED.payload_json, next_run_at = now(), enabled = true,
    updated_at = now();

-- name: stress_force_synchronous_commit
-- Crash restarts must not lose acknowledged commits, whatever the server's default. For
-- sessions opened later in this database. `{name}` is filled with a quoted identifier
-- (psycopg.sql.Identifier), never raw text.
ALTER DATABASE {name} SET synchronous_commit = on;

-- name: stress_database_name
SELECT current_database() AS name, current_setting('synchronous_commit') AS synchronous_commit;

-- name: stress_terminate_clients
-- Every client connection to this database except the harness's own (application_name
-- 'reproq-stress…'): workers, listeners, beats.
SELECT count(pg_terminate_backend(pid)) AS terminated
FROM pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
  AND coalesce(application_name, '') NOT LIKE %(spared)s;

-- name: stress_worker_backends
-- The server processes of a worker's control connections (application_name
-- 'reproq-worker <id>', cut at PostgreSQL's 63 bytes).
SELECT pid
FROM pg_stat_activity
WHERE datname = current_database()
  AND backend_type = 'client backend'
  AND application_name = left(%(application_name)s, 63);

-- name: stress_lock_task_runs
-- Blocks every writer of task_runs (claims, heartbeats, completions, enqueues) while
-- readers go on; held until the surrounding transaction ends.
LOCK TABLE task_runs IN SHARE ROW EXCLUSIVE MODE;

-- name: stress_lock_running_rows
-- Blocks heartbeats and completions of these rows while the transaction lasts.
SELECT result_id FROM task_runs
WHERE status = 'RUNNING'
ORDER BY result_id
LIMIT %(limit)s
FOR UPDATE;

-- name: stress_sleep
SELECT pg_sleep(%(seconds)s);

-- name: stress_server_info
SELECT version() AS version, current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num;

-- name: stress_server_settings
SELECT name, current_setting(name) AS setting FROM pg_settings
WHERE name = ANY(%(names)s::text[]) ORDER BY name;

-- name: stress_bench_counts
SELECT
    count(*) FILTER (WHERE status = 'SUCCESSFUL') AS done,
    count(*) FILTER (WHERE status = 'FAILED') AS failed,
    count(*) AS total,
    min(started_at) AS first_started,
    max(finished_at) AS last_finished,
    min(enqueued_at) AS first_enqueued
FROM task_runs
WHERE result_id > %(first_id)s;

-- name: stress_bench_done_count
SELECT count(*) AS n FROM task_runs
WHERE result_id > %(first_id)s AND status IN ('SUCCESSFUL', 'FAILED');

-- name: stress_bench_pickup
-- Pickup latency: from the row's commit-time clock (enqueued_at) to the claim (started_at).
SELECT
    count(*) AS n,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - enqueued_at)) AS p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - enqueued_at)) AS p95,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - enqueued_at)) AS p99,
    max(extract(epoch FROM started_at - enqueued_at)) AS max
FROM task_runs
WHERE result_id > %(first_id)s AND started_at IS NOT NULL;

-- name: stress_bench_insert_finished
-- Finished history, inserted set-wise: SUCCESSFUL rows with distinct spec hashes.
INSERT INTO task_runs (
    backend_alias, queue_name, priority, run_after, spec_json, spec_hash, task_path,
    status, enqueued_at, started_at, last_attempted_at, finished_at, attempts, max_attempts,
    timeout_seconds, lock_key, concurrency_key, concurrency_limit, worker_ids, return_json,
    errors_json, metadata_json, wait_count, created_at, updated_at, cancel_requested
)
SELECT
    'default', 'default', 0, NULL,
    jsonb_build_object('v', 1, 'task_path', 'reproq.stress.tasks.noop', 'args', jsonb_build_array(g),
                       'kwargs', '{}'::jsonb),
    encode(sha256(('reproq-bench-history-' || g::text)::bytea), 'hex'),
    'reproq.stress.tasks.noop',
    'SUCCESSFUL', now() - interval '1 hour', now() - interval '1 hour',
    now() - interval '1 hour', now() - interval '1 hour', 1, 3, 900, NULL, NULL, 0,
    '["bench-history"]'::jsonb, 'null'::jsonb, '[]'::jsonb, '{}'::jsonb, 0, now(), now(), false
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g;

-- name: stress_bench_analyze
ANALYZE task_runs;

-- name: stress_bench_disable_notify
-- Polling-only pickup: the worker no longer hears about new rows.
ALTER TABLE task_runs DISABLE TRIGGER task_runs_notify_insert;

-- name: stress_bench_table_size
SELECT count(*) AS n, pg_total_relation_size('task_runs') AS bytes FROM task_runs;

-- name: stress_bench_registered
SELECT count(*) AS n FROM reproq_workers WHERE worker_id = ANY(%(ids)s::text[]);

-- name: stress_bench_autovacuum_off
-- The empty queue's statistics stay for the whole run: the worst case, and a repeatable
-- one (when autovacuum would analyze a burst depends on its naptime, the server's other
-- databases and where the worker's drain happens to be).
ALTER TABLE task_runs SET (autovacuum_enabled = false);

-- name: stress_bench_last_autoanalyze
SELECT max(last_autoanalyze) AS last FROM pg_stat_user_tables WHERE relname = 'task_runs';

-- name: stress_bench_copy_burst
-- A burst as reproq-django writes its rows: every column named (a table Django created
-- has no defaults), values from the client. Column order: reproq.stress.bench.burst.django_row.
COPY task_runs (
    backend_alias, queue_name, priority, run_after, spec_json, spec_hash, task_path, status,
    enqueued_at, started_at, last_attempted_at, finished_at, attempts, max_attempts,
    timeout_seconds, lock_key, concurrency_key, concurrency_limit, worker_ids, return_json,
    errors_json, metadata_json, last_error, failed_at, leased_until, leased_by, logs_uri,
    artifacts_uri, expires_at, parent_id, workflow_id, wait_count, created_at, updated_at,
    cancel_requested
) FROM STDIN;

-- name: stress_bench_finished_between
SELECT count(*) AS n FROM task_runs
WHERE result_id > %(first_id)s AND finished_at BETWEEN %(since)s AND %(until)s;

-- name: stress_raw_create
-- The reference loop's table (reproq.stress.bench.raw): task_runs' shape where the loop
-- touches it — a JSONB spec, a unique spec hash over active rows, one partial READY index
-- in claim order — and nothing else: no triggers, no other indexes.
CREATE TABLE reproq_bench_raw (
    result_id bigserial PRIMARY KEY,
    queue_name text NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,
    run_after timestamptz NOT NULL DEFAULT now(),
    spec_json jsonb NOT NULL,
    spec_hash char(64) NOT NULL,
    status text NOT NULL DEFAULT 'READY',
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    leased_until timestamptz,
    leased_by text,
    heartbeat_at timestamptz,
    worker_ids jsonb NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX reproq_bench_raw_active_spec_idx ON reproq_bench_raw (spec_hash)
    WHERE status IN ('READY', 'RUNNING');
CREATE INDEX reproq_bench_raw_ready_idx ON reproq_bench_raw (queue_name, priority DESC, enqueued_at)
    WHERE status = 'READY';

-- name: stress_raw_copy
COPY reproq_bench_raw (spec_json, spec_hash) FROM STDIN;

-- name: stress_raw_vacuum_analyze
VACUUM ANALYZE reproq_bench_raw;

-- name: stress_raw_claim
-- The plainest batch claim: lock up to %(batch)s READY rows in claim order, skipping rows
-- another claimer holds, and lease them, in one statement.
UPDATE reproq_bench_raw
SET status = 'RUNNING', started_at = now(), attempts = attempts + 1,
    leased_until = now() + interval '60 seconds', leased_by = %(worker)s, heartbeat_at = now(),
    worker_ids = worker_ids || to_jsonb(%(worker)s::text)
WHERE result_id = ANY(ARRAY(
    SELECT result_id FROM reproq_bench_raw
    WHERE queue_name = %(queue)s AND status = 'READY' AND run_after <= now()
    ORDER BY priority DESC, enqueued_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
))
RETURNING result_id, spec_json, attempts;

-- name: stress_raw_complete
-- Unfenced, unlike reproq's completion: the reference has no lease to lose.
UPDATE reproq_bench_raw
SET status = 'SUCCESSFUL', finished_at = now(), leased_until = NULL, leased_by = NULL
WHERE result_id = ANY(%(ids)s::bigint[]);

-- name: stress_raw_counts
SELECT count(*) FILTER (WHERE status = 'SUCCESSFUL') AS done, count(*) AS total,
       min(started_at) AS first_started, max(finished_at) AS last_finished
FROM reproq_bench_raw;
