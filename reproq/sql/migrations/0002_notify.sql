-- Wake idle workers whenever rows become READY, from any writer (reproq, reproq-django or
-- SQL by hand). Inserts use a statement-level trigger with a transition table, so a bulk
-- insert sends one NOTIFY per queue instead of calling a trigger per row. Updates use a
-- row trigger whose WHEN clause only matches a transition *into* READY (retry, release,
-- lease give-back), so the hot path (claim, heartbeat, complete) never runs it.

CREATE OR REPLACE FUNCTION reproq_notify_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('reproq_tasks', q.queue_name)
    FROM (SELECT DISTINCT queue_name FROM reproq_new_rows WHERE status = 'READY') AS q;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION reproq_notify_ready() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Postgres folds identical notifications within one transaction.
    PERFORM pg_notify('reproq_tasks', NEW.queue_name);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS task_runs_notify_insert ON task_runs;
CREATE TRIGGER task_runs_notify_insert
    AFTER INSERT ON task_runs
    REFERENCING NEW TABLE AS reproq_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION reproq_notify_inserted();

DROP TRIGGER IF EXISTS task_runs_notify_ready ON task_runs;
CREATE TRIGGER task_runs_notify_ready
    AFTER UPDATE OF status ON task_runs
    FOR EACH ROW
    WHEN (NEW.status = 'READY' AND OLD.status IS DISTINCT FROM 'READY')
    EXECUTE FUNCTION reproq_notify_ready();
