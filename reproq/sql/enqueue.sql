-- name: enqueue_one
-- Every NOT NULL column is named: a table created by reproq-django has no defaults.
INSERT INTO task_runs (
    backend_alias, queue_name, priority, run_after, spec_json, spec_hash, task_path,
    status, enqueued_at, attempts, max_attempts, timeout_seconds, lock_key,
    concurrency_key, concurrency_limit, worker_ids, errors_json, metadata_json,
    expires_at, parent_id, workflow_id, wait_count, created_at, updated_at, cancel_requested
) VALUES (
    %(backend_alias)s, %(queue_name)s, %(priority)s, %(run_after)s, %(spec_json)s::jsonb,
    %(spec_hash)s, %(task_path)s, %(status)s, now(), 0, %(max_attempts)s,
    %(timeout_seconds)s, %(lock_key)s, %(concurrency_key)s, %(concurrency_limit)s,
    '[]'::jsonb, '[]'::jsonb, %(metadata_json)s::jsonb, %(expires_at)s, %(parent_id)s,
    %(workflow_id)s, %(wait_count)s, now(), now(), false
)
ON CONFLICT (spec_hash) WHERE status IN ('READY', 'RUNNING') DO NOTHING
RETURNING result_id;

-- name: enqueue_find_active
SELECT result_id, spec_hash FROM task_runs
WHERE spec_hash = ANY(%(hashes)s::char(64)[]) AND status IN ('READY', 'RUNNING');

-- name: enqueue_reserve_ids
-- Shipping a hundred thousand ids costs more than making them: when they came out as one
-- unbroken run (no concurrent enqueue took ids in between), only its ends are returned.
-- now() is the transaction's: the enqueued_at a straight COPY writes (see bulk.py).
-- The sequence is looked up in a scalar subquery, which runs once (an InitPlan): joined
-- in as a FROM item it ran once per id (measured: 5,000 ids in 14.6 ms, now 3.1 ms).
WITH reserved AS (
    SELECT nextval((SELECT pg_get_serial_sequence('task_runs', 'result_id')::regclass)) AS id
    FROM generate_series(1, %(n)s)
)
SELECT min(id) AS first, max(id) AS last,
       CASE WHEN max(id) - min(id) + 1 <> %(n)s THEN array_agg(id ORDER BY id) END AS ids,
       now() AS now
FROM reserved;

-- name: enqueue_bulk_lock
-- Bulk enqueues share this lock, except a call of several batches, which takes it alone
-- (see insert_tasks). Key space "rpq" 3; the worker's keys use 1 and 2.
SELECT CASE WHEN %(exclusive)s
            THEN pg_advisory_xact_lock(1919971587, 0)::text
            ELSE pg_advisory_xact_lock_shared(1919971587, 0)::text
       END AS locked;

-- name: enqueue_copy_rows
-- The straight way of a bulk enqueue (reproq/producer/bulk.py): rows without a repeated
-- spec, in spec_hash order, right into the table. Every NOT NULL column is named, with
-- the values enqueue_from_buffer gives them. An active duplicate makes it fail whole.
COPY task_runs (
    result_id, spec_hash, spec_json, backend_alias, queue_name, priority, run_after,
    task_path, status, max_attempts, timeout_seconds, lock_key, concurrency_key,
    concurrency_limit, expires_at, parent_id, workflow_id, wait_count, metadata_json,
    enqueued_at, created_at, updated_at, attempts, worker_ids, errors_json, cancel_requested
) FROM STDIN;

-- name: enqueue_create_buffer
-- Bulk enqueue streams rows with COPY into this buffer, then moves them with one
-- INSERT ... SELECT so ON CONFLICT can dedup. Dropped at the end of the transaction.
-- Column order is the line order of reproq/producer/staging.py. spec_hash sorts byte by
-- byte (COLLATE "C"): cheaper than a language's rules, and for 64 lowercase hex digits
-- every collation gives the same order, so writers of other versions agree with it.
CREATE TEMP TABLE reproq_enqueue_buffer (
    result_id bigint, spec_hash text COLLATE "C", spec_json jsonb, backend_alias text,
    queue_name text, priority integer, run_after timestamptz, task_path text, status text,
    max_attempts integer, timeout_seconds integer, lock_key text, concurrency_key text,
    concurrency_limit integer, expires_at timestamptz, parent_id bigint, workflow_id uuid,
    wait_count integer, metadata_json jsonb
) ON COMMIT DROP;

-- name: enqueue_copy_buffer
COPY reproq_enqueue_buffer (
    result_id, spec_hash, spec_json, backend_alias, queue_name, priority, run_after,
    task_path, status, max_attempts, timeout_seconds, lock_key, concurrency_key,
    concurrency_limit, expires_at, parent_id, workflow_id, wait_count, metadata_json
) FROM STDIN;

-- name: enqueue_from_buffer
WITH inserted AS (
    INSERT INTO task_runs (
        result_id, backend_alias, queue_name, priority, run_after, spec_json, spec_hash,
        task_path, status, enqueued_at, attempts, max_attempts, timeout_seconds, lock_key,
        concurrency_key, concurrency_limit, worker_ids, errors_json, metadata_json,
        expires_at, parent_id, workflow_id, wait_count, created_at, updated_at, cancel_requested
    )
    SELECT
        result_id, backend_alias, queue_name, priority, run_after, spec_json, spec_hash,
        task_path, status, now(), 0, max_attempts, timeout_seconds, lock_key, concurrency_key,
        concurrency_limit, '[]'::jsonb, '[]'::jsonb, metadata_json, expires_at, parent_id,
        workflow_id, wait_count, now(), now(), false
    FROM reproq_enqueue_buffer
    -- One global order for every writer: a row can wait for a concurrent insert of the
    -- same spec while holding the rows before it, so two batches sharing specs in
    -- opposite orders would deadlock (see insert_rows).
    ORDER BY spec_hash, result_id
    ON CONFLICT (spec_hash) WHERE status IN ('READY', 'RUNNING') DO NOTHING
    RETURNING result_id
)
-- The inserted ids only when some rows were left out (duplicates of active specs).
SELECT count(*) AS n,
       CASE WHEN count(*) <> %(n)s THEN coalesce(array_agg(result_id), '{}') END AS ids
FROM inserted;

-- name: enqueue_drop_buffer
DROP TABLE IF EXISTS reproq_enqueue_buffer;

-- name: enqueue_workflow_run
INSERT INTO workflow_runs (
    workflow_id, expected_count, success_count, failure_count, callback_result_id,
    status, created_at, updated_at
) VALUES (
    %(workflow_id)s, %(expected_count)s, 0, 0, %(callback_result_id)s, 'RUNNING', now(), now()
);
