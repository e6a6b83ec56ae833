-- Beat: leader election and enqueueing due periodic_tasks (reproq.beat).

-- name: beat_keepalive
-- Server-side TCP keepalives on the leader's connection, so PostgreSQL frees the
-- leadership lock within seconds when the leader's host vanishes without closing.
SELECT set_config('tcp_keepalives_idle', '5', false),
       set_config('tcp_keepalives_interval', '2', false),
       set_config('tcp_keepalives_count', '3', false);

-- name: beat_try_lock
SELECT pg_try_advisory_lock(%(lock_id)s) AS acquired;

-- name: beat_unlock
SELECT pg_advisory_unlock(%(lock_id)s) AS released;

-- name: beat_ping
SELECT 1 AS alive;

-- name: beat_leader
-- The backend holding the leadership lock in this database, if any. A bigint advisory
-- key shows in pg_locks as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
SELECT l.pid, a.application_name, a.client_addr::text AS client_addr, a.backend_start
FROM pg_locks AS l
LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.granted
  AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = (%(lock_id)s::bigint >> 32)
  AND l.objid::bigint = (%(lock_id)s::bigint & 4294967295)
LIMIT 1;

-- name: beat_due_schedules
-- Rows another beat is working on are skipped: it moves their next_run_at in the same
-- transaction that enqueues, so once it commits they are no longer due. Keyset paging by
-- name lets one tick walk every due row in batches.
SELECT name, cron_expr, task_path, payload_json, queue_name, priority, max_attempts,
       concurrency_key, concurrency_limit, last_run_at, next_run_at,
       misfire_policy, misfire_limit
FROM periodic_tasks
WHERE enabled AND next_run_at <= %(now)s AND name > %(after_name)s
ORDER BY name
LIMIT %(batch)s
FOR UPDATE SKIP LOCKED;

-- name: beat_advance_schedules
UPDATE periodic_tasks AS p
SET next_run_at = u.next_run_at,
    last_run_at = coalesce(u.last_run_at, p.last_run_at),
    updated_at = now()
FROM unnest(%(names)s::text[], %(next_run_at)s::timestamptz[], %(last_run_at)s::timestamptz[])
    AS u(name, next_run_at, last_run_at)
WHERE p.name = u.name;

-- name: beat_sync_lock
-- Serialises concurrent schedule syncs (two `reproq up` starting together).
SELECT pg_advisory_xact_lock(%(lock_id)s);

-- name: beat_sync_existing
SELECT name, cron_expr, task_path, payload_json, queue_name, priority, max_attempts,
       concurrency_key, concurrency_limit, next_run_at, enabled, misfire_policy, misfire_limit,
       managed_by
FROM periodic_tasks
ORDER BY name
FOR UPDATE;

-- name: beat_sync_insert
-- Every NOT NULL column is named: a table created by reproq-django has no defaults. The
-- row is marked as the config's own (managed_by), so later syncs may change or disable it.
INSERT INTO periodic_tasks (
    name, cron_expr, task_path, payload_json, queue_name, priority, max_attempts,
    concurrency_key, concurrency_limit, last_run_at, next_run_at, enabled,
    misfire_policy, misfire_limit, managed_by, created_at, updated_at
) VALUES (
    %(name)s, %(cron_expr)s, %(task_path)s, %(payload_json)s::jsonb, %(queue_name)s,
    %(priority)s, %(max_attempts)s, %(concurrency_key)s, %(concurrency_limit)s, NULL,
    %(next_run_at)s, %(enabled)s, %(misfire_policy)s, %(misfire_limit)s, %(managed_by)s,
    now(), now()
);

-- name: beat_sync_update
UPDATE periodic_tasks
SET cron_expr = %(cron_expr)s,
    task_path = %(task_path)s,
    payload_json = %(payload_json)s::jsonb,
    queue_name = %(queue_name)s,
    priority = %(priority)s,
    max_attempts = %(max_attempts)s,
    concurrency_key = %(concurrency_key)s,
    concurrency_limit = %(concurrency_limit)s,
    next_run_at = %(next_run_at)s,
    enabled = %(enabled)s,
    misfire_policy = %(misfire_policy)s,
    misfire_limit = %(misfire_limit)s,
    updated_at = now()
WHERE name = %(name)s AND managed_by = %(managed_by)s;

-- name: beat_sync_disable
UPDATE periodic_tasks
SET enabled = false, updated_at = now()
WHERE name = ANY(%(names)s::text[]) AND enabled AND managed_by = %(managed_by)s;
