-- Statements of the `reproq up` runtime itself: health checks of its monitoring
-- connection. Queue, limit and schedule syncing go through admin.py and beat.py.

-- name: runtime_ping
SELECT 1 AS ok;

-- name: runtime_statement_timeout
-- Session-level, so a slow monitoring query can never hold a scrape or a health check
-- for long. set_config() instead of SET because SET takes no parameters.
SELECT set_config('statement_timeout', %(timeout)s, false) AS statement_timeout;
