-- Indexes for the read side (`reproq status`, the TUI, metrics) and for prune, so they
-- stay cheap however many finished rows pile up. All are partial: a row gets an entry
-- only once it is finished (or carries an expiry / a parent), so claiming, which moves
-- rows READY -> RUNNING, never writes to them.

-- Finished rows by time: prune finished, throughput, done-in-window. The included columns
-- let those queries answer from the index alone.
CREATE INDEX IF NOT EXISTS task_runs_finished_at_idx
    ON task_runs (finished_at) INCLUDE (status, queue_name)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

-- Finished rows by queue and status: capped counts per queue, the distinct queues that
-- hold finished rows, "status:failed queue:emails" listings. Equal keys share one entry
-- (B-tree deduplication), so this stays a few MB per million rows.
CREATE INDEX IF NOT EXISTS task_runs_finished_queue_idx
    ON task_runs (queue_name, status)
    WHERE status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

-- prune expired.
CREATE INDEX IF NOT EXISTS task_runs_expires_at_idx
    ON task_runs (expires_at) WHERE expires_at IS NOT NULL;

-- Lineage: the children of a row whatever their state (the baseline index covers only
-- WAITING children).
CREATE INDEX IF NOT EXISTS task_runs_parent_id_idx
    ON task_runs (parent_id) WHERE parent_id IS NOT NULL;
