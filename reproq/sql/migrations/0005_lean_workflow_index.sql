-- The workflow index holds only rows that belong to a workflow. Most rows have none, and
-- in its baseline form every new row version (a claim, a completion) wrote a NULL entry
-- into it that no query reads: every lookup names a workflow_id. The name is kept.
DROP INDEX IF EXISTS task_runs_workflow_idx;
CREATE INDEX task_runs_workflow_idx ON task_runs (workflow_id) WHERE workflow_id IS NOT NULL;
