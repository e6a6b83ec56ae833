-- Statements of the `reproq up` runtime itself: health checks of its monitoring
-- connection and the gauges observe.py does not provide. Queue, limit and schedule syncing go through admin.py and beat.py.

-- name: runtime_ping
SELECT 1 AS ok;

-- name: runtime_statement_timeout
-- Session-level, so a slow monitoring query can never hold a scrape or a health check
-- for long. set_config() instead of SET because SET takes no parameters.
SELECT set_config('statement_timeout', %(timeout)s, false) AS statement_timeout;

-- name: runtime_concurrency_blocked
-- Reproq Worker's reproq_concurrency_blocked_tasks: READY rows whose concurrency key
-- already runs at its limit. Only keys at their limit join, so with no key saturated the
-- READY side is never read. Cached with the rest of a scrape.
WITH running AS (
    SELECT concurrency_key, count(*) AS running
    FROM task_runs
    WHERE status = 'RUNNING' AND concurrency_key IS NOT NULL
    GROUP BY concurrency_key
)
SELECT count(*) AS blocked
FROM task_runs t
JOIN running r ON r.concurrency_key = t.concurrency_key
WHERE t.status = 'READY'
  AND t.concurrency_limit > 0
  AND r.running >= t.concurrency_limit;
