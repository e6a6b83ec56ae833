-- Read-only queries for `reproq status`, the TUI and metrics. Each one is written to stay
-- cheap on a table with millions of finished rows: active states are counted through
-- their partial indexes, finished rows through the indexes of migration 0004 and with a
-- cap (count at most N, report "N+"), never with a scan of the whole table.

-- name: observe_now
SELECT now() AS now;

-- name: observe_active_counts
-- One branch per active status so each uses its own partial index.
SELECT queue_name,
       count(*) FILTER (WHERE coalesce(run_after, '-infinity'::timestamptz) <= now()) AS ready,
       count(*) FILTER (WHERE run_after > now()) AS scheduled,
       0::bigint AS waiting,
       0::bigint AS running,
       -- When the longest-waiting due row became claimable: a row scheduled for later
       -- only starts waiting at its run_after.
       min(greatest(enqueued_at, run_after))
           FILTER (WHERE coalesce(run_after, '-infinity'::timestamptz) <= now()) AS oldest_ready_at
FROM task_runs WHERE status = 'READY'
GROUP BY queue_name
UNION ALL
SELECT queue_name, 0, 0, count(*), 0, NULL
FROM task_runs WHERE status = 'WAITING'
GROUP BY queue_name
UNION ALL
SELECT queue_name, 0, 0, 0, count(*), NULL
FROM task_runs WHERE status = 'RUNNING'
GROUP BY queue_name;

-- name: observe_finished_queues
-- Distinct queues that hold finished rows, by a loose index scan (one probe per queue)
-- on task_runs_finished_queue_idx instead of reading every finished row.
WITH RECURSIVE found(queue_name) AS (
    (SELECT queue_name FROM task_runs
     WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
     ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT t.queue_name FROM task_runs t
            WHERE t.status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
              AND t.queue_name > f.queue_name
            ORDER BY t.queue_name LIMIT 1)
    FROM found f
    WHERE f.queue_name IS NOT NULL
)
SELECT queue_name FROM found WHERE queue_name IS NOT NULL;

-- name: observe_finished_counts
-- Finished rows per (queue, status), each counted up to %(cap)s rows at most.
SELECT q.queue_name, s.status, c.n
FROM unnest(%(queues)s::text[]) AS q(queue_name)
CROSS JOIN unnest(ARRAY['SUCCESSFUL', 'FAILED', 'CANCELLED']) AS s(status)
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM (
        SELECT 1 FROM task_runs t
        WHERE t.queue_name = q.queue_name AND t.status = s.status
          AND t.status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
        LIMIT %(cap)s
    ) AS capped
) AS c;

-- name: observe_done_in_window
SELECT queue_name,
       count(*) FILTER (WHERE status = 'SUCCESSFUL') AS succeeded,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled
FROM task_runs
WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
  AND finished_at >= now() - %(window)s::interval
GROUP BY queue_name;

-- name: observe_concurrency_in_use
SELECT queue_name, concurrency_key, count(*) AS running, max(concurrency_limit) AS max_limit
FROM task_runs
WHERE status = 'RUNNING' AND concurrency_key IS NOT NULL
GROUP BY queue_name, concurrency_key
ORDER BY queue_name, concurrency_key;

-- name: observe_queue_controls
SELECT queue_name, paused, paused_at, reason FROM reproq_queue_controls ORDER BY queue_name;

-- name: observe_worker_queues
SELECT DISTINCT jsonb_array_elements_text(queues) AS queue_name
FROM reproq_workers WHERE jsonb_typeof(queues) = 'array';

-- name: observe_limits
SELECT key, tokens_per_second, burst_size, current_tokens, last_refilled_at
FROM rate_limits ORDER BY key;

-- name: observe_workers
SELECT w.worker_id, w.hostname, w.concurrency, w.queues, w.started_at, w.last_seen_at,
       w.version,
       w.last_seen_at < now() - %(stale_after)s::interval AS stale,
       coalesce(r.running, 0) AS running,
       now() AS now
FROM reproq_workers w
LEFT JOIN (
    SELECT leased_by, count(*) AS running FROM task_runs
    WHERE status = 'RUNNING' GROUP BY leased_by
) AS r ON r.leased_by = w.worker_id
ORDER BY w.worker_id;

-- name: observe_list_tasks_newest
-- Filters that are NULL are off. Run unprepared, so each call is planned with its own
-- values: disabled filters fold away and the planner chooses between walking result_id
-- (dense matches; active rows sit at the newest end) and an index that serves the filter
-- (status, queue of finished rows, exact task path, ids). A filter no index serves and
-- that matches few rows (worker, task glob, age) walks the table.
SELECT result_id, task_path, queue_name, status, priority, attempts, max_attempts,
       enqueued_at, run_after, started_at, finished_at, leased_by, leased_until,
       left(last_error, 300) AS last_error, cancel_requested, parent_id, workflow_id,
       worker_ids
FROM task_runs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
  AND (%(task_like)s::text IS NULL OR task_path LIKE %(task_like)s::text)
  AND (%(task_exact)s::text IS NULL OR task_path = %(task_exact)s::text)
  AND (%(worker)s::text IS NULL OR leased_by = %(worker)s::text
       OR worker_ids @> jsonb_build_array(%(worker)s::text))
  AND (%(ids)s::bigint[] IS NULL OR result_id = ANY(%(ids)s::bigint[]))
  AND (%(min_age)s::interval IS NULL OR enqueued_at <= now() - %(min_age)s::interval)
  AND (%(max_age)s::interval IS NULL OR enqueued_at >= now() - %(max_age)s::interval)
  AND (%(cursor)s::bigint IS NULL OR result_id < %(cursor)s::bigint)
ORDER BY result_id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: observe_list_tasks_oldest
SELECT result_id, task_path, queue_name, status, priority, attempts, max_attempts,
       enqueued_at, run_after, started_at, finished_at, leased_by, leased_until,
       left(last_error, 300) AS last_error, cancel_requested, parent_id, workflow_id,
       worker_ids
FROM task_runs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
  AND (%(task_like)s::text IS NULL OR task_path LIKE %(task_like)s::text)
  AND (%(task_exact)s::text IS NULL OR task_path = %(task_exact)s::text)
  AND (%(worker)s::text IS NULL OR leased_by = %(worker)s::text
       OR worker_ids @> jsonb_build_array(%(worker)s::text))
  AND (%(ids)s::bigint[] IS NULL OR result_id = ANY(%(ids)s::bigint[]))
  AND (%(min_age)s::interval IS NULL OR enqueued_at <= now() - %(min_age)s::interval)
  AND (%(max_age)s::interval IS NULL OR enqueued_at >= now() - %(max_age)s::interval)
  AND (%(cursor)s::bigint IS NULL OR result_id > %(cursor)s::bigint)
ORDER BY result_id ASC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: observe_get_task
SELECT * FROM task_runs WHERE result_id = %(result_id)s;

-- name: observe_task_refs
SELECT result_id, status, task_path, queue_name FROM task_runs
WHERE result_id = ANY(%(ids)s::bigint[])
ORDER BY result_id;

-- name: observe_children
SELECT result_id, status, task_path, queue_name FROM task_runs
WHERE parent_id = %(result_id)s
ORDER BY result_id
LIMIT %(limit)s;

-- name: observe_workflow
SELECT workflow_id, expected_count, success_count, failure_count, callback_result_id,
       status, created_at, updated_at
FROM workflow_runs WHERE workflow_id = %(workflow_id)s;

-- name: observe_workflow_members
SELECT result_id, status, task_path, queue_name FROM task_runs
WHERE workflow_id = %(workflow_id)s
ORDER BY result_id
LIMIT %(limit)s;

-- name: observe_triage
-- The dead-letter queue, newest failure first (rows without failed_at, written by other
-- tools, sort first: that keeps the walk on the failed_at index).
SELECT result_id, task_path, queue_name, attempts, max_attempts, failed_at, finished_at,
       last_error, errors_json -> -1 ->> 'kind' AS error_kind,
       errors_json -> -1 ->> 'exception_class' AS exception_class
FROM task_runs
WHERE status = 'FAILED'
  AND (%(queue)s::text IS NULL OR queue_name = %(queue)s::text)
ORDER BY failed_at DESC, result_id DESC
LIMIT %(limit)s;

-- name: observe_schedules
SELECT name, cron_expr, task_path, payload_json, queue_name, priority, max_attempts,
       concurrency_key, concurrency_limit, last_run_at, next_run_at, enabled,
       misfire_policy, misfire_limit
FROM periodic_tasks ORDER BY name;

-- name: observe_throughput
-- Finished rows per time bucket over the window, read from task_runs_finished_at_idx
-- alone. date_bin does the per-row bucketing in integer arithmetic; the bucket's index
-- is computed only once per bucket.
WITH bounds AS (
    SELECT now() - %(window)s::interval AS start,
           %(window)s::interval / %(buckets)s AS width
),
counted AS (
    SELECT date_bin(b.width, t.finished_at, b.start) AS bucket,
           count(*) FILTER (WHERE t.status = 'SUCCESSFUL') AS succeeded,
           count(*) FILTER (WHERE t.status = 'FAILED') AS failed
    FROM task_runs t, bounds b
    WHERE t.status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
      AND t.finished_at >= b.start
    GROUP BY 1
),
indexed AS (
    -- A row finished "in the future" (clock skew) lands in the last bucket.
    SELECT least(
               round(extract(epoch FROM c.bucket - b.start) / extract(epoch FROM b.width))::int,
               %(buckets)s - 1
           ) AS i,
           c.succeeded, c.failed
    FROM counted c, bounds b
)
SELECT g.i,
       b.start + b.width * g.i AS bucket_start,
       coalesce(sum(x.succeeded), 0) AS succeeded,
       coalesce(sum(x.failed), 0) AS failed
FROM bounds b
CROSS JOIN generate_series(0, %(buckets)s - 1) AS g(i)
LEFT JOIN indexed x ON x.i = g.i
GROUP BY g.i, b.start, b.width
ORDER BY g.i;

-- name: observe_top_failing
SELECT task_path,
       count(*) AS failures,
       max(failed_at) AS last_failed_at,
       (array_agg(last_error ORDER BY failed_at DESC))[1] AS last_error
FROM task_runs
WHERE status = 'FAILED' AND failed_at >= now() - %(window)s::interval
GROUP BY task_path
ORDER BY failures DESC, task_path
LIMIT %(limit)s;

-- name: observe_next_fire
SELECT name, next_run_at FROM periodic_tasks
WHERE enabled
ORDER BY next_run_at, name
LIMIT 1;
