-- Operator writes: replay, cancel, retry, queue pause, rate limits, prune, schedules.
-- Every statement that changes a task run states the status it expects in its WHERE
-- clause, so a row that moved on since it was read is left alone.

-- name: admin_replay_source_by_id
SELECT result_id, status, spec_json, spec_hash, task_path, queue_name, priority,
       lock_key, concurrency_key, concurrency_limit, max_attempts, timeout_seconds,
       metadata_json, backend_alias
FROM task_runs WHERE result_id = %(result_id)s;

-- name: admin_replay_source_by_hash
-- The newest run of that spec: the one an operator most likely means.
SELECT result_id, status, spec_json, spec_hash, task_path, queue_name, priority,
       lock_key, concurrency_key, concurrency_limit, max_attempts, timeout_seconds,
       metadata_json, backend_alias
FROM task_runs WHERE spec_hash = %(spec_hash)s
ORDER BY result_id DESC LIMIT 1;

-- name: admin_lock_task
SELECT result_id, status, spec_hash, workflow_id, cancel_requested
FROM task_runs WHERE result_id = %(result_id)s FOR UPDATE;

-- name: admin_request_cancel
UPDATE task_runs SET cancel_requested = true, updated_at = now()
WHERE result_id = %(result_id)s AND status = 'RUNNING';

-- name: admin_cancel_now
-- The row itself and every WAITING row that can only run after it: chain children
-- (parent_id) and, for a chord member, the chord's callback, transitively.
WITH RECURSIVE doomed(result_id) AS (
    SELECT %(result_id)s::bigint
    UNION
    SELECT n.result_id
    FROM doomed d
    CROSS JOIN LATERAL (
        SELECT t.result_id FROM task_runs t
        WHERE t.parent_id = d.result_id AND t.status = 'WAITING'
        UNION ALL
        SELECT w.callback_result_id
        FROM task_runs m
        JOIN workflow_runs w ON w.workflow_id = m.workflow_id
        JOIN task_runs cb ON cb.result_id = w.callback_result_id AND cb.status = 'WAITING'
        WHERE m.result_id = d.result_id AND w.callback_result_id <> m.result_id
    ) AS n
)
UPDATE task_runs t SET
    status = 'CANCELLED',
    finished_at = now(),
    last_error = CASE WHEN t.result_id = %(result_id)s THEN 'cancelled by operator'
                      ELSE 'cancelled by operator (upstream task ' || %(result_id)s::text
                           || ' was cancelled)' END,
    leased_until = NULL,
    leased_by = NULL,
    cancel_requested = true,
    updated_at = now()
FROM doomed d
WHERE t.result_id = d.result_id
  AND (t.status = 'WAITING' OR (t.result_id = %(result_id)s AND t.status = 'READY'))
RETURNING t.result_id, t.workflow_id;

-- name: admin_fail_workflows
-- A group or chord that lost a member (or its callback) to a cancel can never succeed.
UPDATE workflow_runs SET
    status = 'FAILED',
    failure_count = failure_count + 1,
    updated_at = now()
WHERE workflow_id = ANY(%(workflow_ids)s::uuid[]) AND status IN ('RUNNING', 'WAITING_CALLBACK');

-- name: admin_retry
-- The same row back to READY: attempts start over, the error history stays.
UPDATE task_runs SET
    status = 'READY',
    attempts = 0,
    run_after = NULL,
    failed_at = NULL,
    finished_at = NULL,
    last_error = NULL,
    leased_until = NULL,
    leased_by = NULL,
    cancel_requested = false,
    updated_at = now()
WHERE result_id = %(result_id)s AND status = 'FAILED'
RETURNING result_id;

-- name: admin_find_active_twin
SELECT result_id FROM task_runs
WHERE spec_hash = %(spec_hash)s AND status IN ('READY', 'RUNNING') AND result_id <> %(result_id)s
LIMIT 1;

-- name: admin_revive_chain
-- Chain descendants the worker failed only because this row failed go back to waiting.
WITH RECURSIVE chain(result_id) AS (
    SELECT t.result_id FROM task_runs t
    WHERE t.parent_id = %(result_id)s AND t.status = 'FAILED'
      AND t.errors_json -> -1 ->> 'kind' = 'workflow_failed'
    UNION
    SELECT t.result_id FROM chain c
    JOIN task_runs t ON t.parent_id = c.result_id AND t.status = 'FAILED'
      AND t.errors_json -> -1 ->> 'kind' = 'workflow_failed'
)
UPDATE task_runs t SET
    status = 'WAITING',
    wait_count = 1,
    attempts = 0,
    run_after = NULL,
    failed_at = NULL,
    finished_at = NULL,
    last_error = NULL,
    updated_at = now()
FROM chain c
WHERE t.result_id = c.result_id
RETURNING t.result_id;

-- name: admin_revive_chord
-- A retried chord member revives the chord's callback when no other member is still
-- FAILED or CANCELLED; the callback waits for every member not yet SUCCESSFUL.
WITH wf AS (
    SELECT w.workflow_id, w.callback_result_id
    FROM task_runs m
    JOIN workflow_runs w ON w.workflow_id = m.workflow_id
    WHERE m.result_id = %(result_id)s AND w.status = 'FAILED'
      AND w.callback_result_id IS NOT NULL AND w.callback_result_id <> m.result_id
      AND NOT EXISTS (
          SELECT 1 FROM task_runs o
          WHERE o.workflow_id = w.workflow_id AND o.result_id <> w.callback_result_id
            AND o.status IN ('FAILED', 'CANCELLED')
      )
),
callback AS (
    UPDATE task_runs t SET
        status = 'WAITING',
        wait_count = (
            SELECT count(*) FROM task_runs o
            WHERE o.workflow_id = wf.workflow_id AND o.result_id <> wf.callback_result_id
              AND o.status <> 'SUCCESSFUL'
        ),
        attempts = 0,
        run_after = NULL,
        failed_at = NULL,
        finished_at = NULL,
        last_error = NULL,
        updated_at = now()
    FROM wf
    WHERE t.result_id = wf.callback_result_id AND t.status = 'FAILED'
      AND t.errors_json -> -1 ->> 'kind' = 'workflow_failed'
    RETURNING t.result_id, t.workflow_id
),
flow AS (
    UPDATE workflow_runs w SET
        status = 'RUNNING',
        failure_count = 0,
        updated_at = now()
    FROM callback c
    WHERE w.workflow_id = c.workflow_id
    RETURNING w.workflow_id
)
SELECT c.result_id FROM callback c;

-- name: admin_failed_ids
-- Candidates for "retry all": FAILED rows, oldest failure first, optionally narrowed.
SELECT result_id FROM task_runs
WHERE status = 'FAILED'
  AND (%(queue)s::text IS NULL OR queue_name = %(queue)s::text)
  AND (%(task_like)s::text IS NULL OR task_path LIKE %(task_like)s::text)
ORDER BY failed_at NULLS FIRST, result_id
LIMIT %(limit)s;

-- name: admin_pause_queue
INSERT INTO reproq_queue_controls (queue_name, paused, paused_at, reason, created_at, updated_at)
VALUES (%(queue)s, true, now(), %(reason)s, now(), now())
ON CONFLICT (queue_name) DO UPDATE SET
    paused = true,
    -- Pausing a paused queue again keeps the moment it was first paused.
    paused_at = CASE WHEN reproq_queue_controls.paused THEN reproq_queue_controls.paused_at
                     ELSE now() END,
    reason = EXCLUDED.reason,
    updated_at = now()
RETURNING queue_name, paused, paused_at, reason;

-- name: admin_resume_queue
INSERT INTO reproq_queue_controls (queue_name, paused, paused_at, reason, created_at, updated_at)
VALUES (%(queue)s, false, NULL, NULL, now(), now())
ON CONFLICT (queue_name) DO UPDATE SET
    paused = false, paused_at = NULL, reason = NULL, updated_at = now()
RETURNING queue_name, paused, paused_at, reason;

-- name: admin_set_limit
-- A new bucket starts full; a changed one keeps its tokens, capped at the new burst.
INSERT INTO rate_limits (key, tokens_per_second, burst_size, current_tokens, last_refilled_at)
VALUES (%(key)s, %(rate)s, %(burst)s, %(burst)s, now())
ON CONFLICT (key) DO UPDATE SET
    tokens_per_second = EXCLUDED.tokens_per_second,
    burst_size = EXCLUDED.burst_size,
    current_tokens = least(rate_limits.current_tokens, EXCLUDED.burst_size)
RETURNING key, tokens_per_second, burst_size, current_tokens, last_refilled_at;

-- name: admin_reset_global_limit
-- The seeded global row stays: rate 0 means "no limit".
UPDATE rate_limits SET tokens_per_second = 0, burst_size = 1, current_tokens = 0,
    last_refilled_at = now()
WHERE key = 'global'
RETURNING key;

-- name: admin_delete_limit
DELETE FROM rate_limits WHERE key = %(key)s RETURNING key;

-- name: admin_count_expired
SELECT count(*) AS n FROM task_runs
WHERE expires_at < now() AND status <> 'RUNNING';

-- name: admin_prune_expired
DELETE FROM task_runs WHERE result_id IN (
    SELECT result_id FROM task_runs
    WHERE expires_at < now() AND status <> 'RUNNING'
    ORDER BY expires_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
);

-- name: admin_prune_cutoff
SELECT now() - %(older_than)s::interval AS cutoff;

-- name: admin_count_finished
-- The literal status list lets the planner use the partial index on finished rows.
SELECT count(*) AS n FROM task_runs
WHERE status = ANY(%(statuses)s::text[])
  AND status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
  AND finished_at < %(cutoff)s;

-- name: admin_prune_finished
DELETE FROM task_runs WHERE result_id IN (
    SELECT result_id FROM task_runs
    WHERE status = ANY(%(statuses)s::text[])
      AND status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
      AND finished_at < %(cutoff)s
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
);

-- name: admin_count_stale_workers
SELECT count(*) AS n FROM reproq_workers
WHERE last_seen_at < now() - %(older_than)s::interval;

-- name: admin_prune_workers
DELETE FROM reproq_workers WHERE last_seen_at < now() - %(older_than)s::interval;

-- name: admin_set_schedule_enabled
UPDATE periodic_tasks SET enabled = %(enabled)s, updated_at = now()
WHERE name = %(name)s
RETURNING name, enabled;

-- name: admin_get_schedule
SELECT name, task_path, payload_json, queue_name, priority, max_attempts,
       concurrency_key, concurrency_limit
FROM periodic_tasks WHERE name = %(name)s;

-- name: admin_task_state
SELECT result_id, status, spec_hash FROM task_runs WHERE result_id = %(result_id)s;
