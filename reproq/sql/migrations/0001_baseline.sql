-- The reproq-worker baseline schema, shared with reproq-django (see reference/schema.md).
-- Written to be applied to an empty database AND to upgrade one created by reproq-django
-- (same columns, no defaults) or by old installs (text[] arrays, an enum status): every
-- statement is idempotent and no row is dropped.

CREATE TABLE IF NOT EXISTS task_runs (
    result_id bigserial PRIMARY KEY,
    backend_alias text NOT NULL DEFAULT 'default',
    queue_name text NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,
    run_after timestamptz,
    spec_json jsonb NOT NULL,
    spec_hash char(64) NOT NULL,
    task_path text,
    status text NOT NULL DEFAULT 'READY',
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    last_attempted_at timestamptz,
    finished_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3,
    timeout_seconds integer NOT NULL DEFAULT 900,
    lock_key text,
    concurrency_key text,
    concurrency_limit integer NOT NULL DEFAULT 0,
    worker_ids jsonb NOT NULL DEFAULT '[]'::jsonb,
    return_json jsonb,
    errors_json jsonb NOT NULL DEFAULT '[]'::jsonb,
    metadata_json jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_error text,
    failed_at timestamptz,
    leased_until timestamptz,
    leased_by text,
    logs_uri text,
    artifacts_uri text,
    expires_at timestamptz,
    parent_id bigint REFERENCES task_runs (result_id) ON DELETE SET NULL,
    workflow_id uuid,
    wait_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    cancel_requested boolean NOT NULL DEFAULT false
);

-- Old installs: worker_ids as text[] -> jsonb; status as an enum -> text.
DO $$
DECLARE
    idx record;
BEGIN
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'task_runs'
          AND column_name = 'worker_ids') = 'ARRAY' THEN
        ALTER TABLE task_runs ALTER COLUMN worker_ids DROP DEFAULT;
        ALTER TABLE task_runs ALTER COLUMN worker_ids TYPE jsonb
            USING coalesce(to_jsonb(worker_ids), '[]'::jsonb);
    END IF;
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'task_runs'
          AND column_name = 'status') = 'USER-DEFINED' THEN
        -- Partial indexes compare status with enum literals and cannot survive the type
        -- change; they are recreated below with text predicates.
        FOR idx IN
            SELECT indexname FROM pg_indexes
            WHERE schemaname = current_schema() AND tablename = 'task_runs'
              AND indexdef ILIKE '%status%'
        LOOP
            EXECUTE format('DROP INDEX IF EXISTS %I', idx.indexname);
        END LOOP;
        ALTER TABLE task_runs ALTER COLUMN status DROP DEFAULT;
        ALTER TABLE task_runs ALTER COLUMN status TYPE text USING status::text;
    END IF;
END
$$;

-- A table created by reproq-django has the columns but no database defaults.
ALTER TABLE task_runs
    ALTER COLUMN backend_alias SET DEFAULT 'default',
    ALTER COLUMN queue_name SET DEFAULT 'default',
    ALTER COLUMN priority SET DEFAULT 0,
    ALTER COLUMN status SET DEFAULT 'READY',
    ALTER COLUMN enqueued_at SET DEFAULT now(),
    ALTER COLUMN attempts SET DEFAULT 0,
    ALTER COLUMN max_attempts SET DEFAULT 3,
    ALTER COLUMN timeout_seconds SET DEFAULT 900,
    ALTER COLUMN concurrency_limit SET DEFAULT 0,
    ALTER COLUMN worker_ids SET DEFAULT '[]'::jsonb,
    ALTER COLUMN errors_json SET DEFAULT '[]'::jsonb,
    ALTER COLUMN metadata_json SET DEFAULT '{}'::jsonb,
    ALTER COLUMN wait_count SET DEFAULT 0,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now(),
    ALTER COLUMN cancel_requested SET DEFAULT false;

CREATE OR REPLACE FUNCTION reproq_task_runs_fill_task_path() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.task_path := NEW.spec_json ->> 'task_path';
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS task_runs_fill_task_path ON task_runs;
-- The WHEN clause keeps the trigger free for rows that already carry their task_path.
CREATE TRIGGER task_runs_fill_task_path
    BEFORE INSERT OR UPDATE ON task_runs
    FOR EACH ROW
    WHEN (NEW.task_path IS NULL OR NEW.task_path = '')
    EXECUTE FUNCTION reproq_task_runs_fill_task_path();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'task_runs_task_path_not_empty') THEN
        ALTER TABLE task_runs ADD CONSTRAINT task_runs_task_path_not_empty
            CHECK (task_path IS NOT NULL AND task_path <> '') NOT VALID;
    END IF;
END
$$;

-- Dedup: two identical specs can never be READY or RUNNING at the same time.
DO $$
DECLARE
    dup record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_indexes
                   WHERE schemaname = current_schema() AND indexname = 'task_runs_active_spec_hash_uniq') THEN
        SELECT spec_hash, count(*) AS n, min(result_id) AS first_id INTO dup
        FROM task_runs WHERE status IN ('READY', 'RUNNING')
        GROUP BY spec_hash HAVING count(*) > 1 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'cannot create the unique active spec_hash index: % READY/RUNNING rows share spec_hash % (first result_id %); cancel the duplicates, then migrate again',
                dup.n, dup.spec_hash, dup.first_id;
        END IF;
    END IF;
END
$$;

CREATE UNIQUE INDEX IF NOT EXISTS task_runs_active_spec_hash_uniq
    ON task_runs (spec_hash) WHERE status IN ('READY', 'RUNNING');
CREATE INDEX IF NOT EXISTS task_runs_claim_idx
    ON task_runs (queue_name, status, priority DESC, enqueued_at) WHERE status = 'READY';
CREATE INDEX IF NOT EXISTS task_runs_due_idx
    ON task_runs (queue_name, (coalesce(run_after, '-infinity'::timestamptz)), priority DESC, enqueued_at)
    WHERE status = 'READY';
CREATE INDEX IF NOT EXISTS task_runs_lock_key_idx
    ON task_runs (lock_key) WHERE status = 'RUNNING';
CREATE INDEX IF NOT EXISTS task_runs_concurrency_idx
    ON task_runs (concurrency_key, leased_until) WHERE status = 'RUNNING' AND concurrency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS task_runs_parent_idx
    ON task_runs (parent_id) WHERE status = 'WAITING';
CREATE INDEX IF NOT EXISTS task_runs_workflow_idx ON task_runs (workflow_id);
CREATE INDEX IF NOT EXISTS task_runs_failed_at_idx ON task_runs (failed_at) WHERE status = 'FAILED';
CREATE INDEX IF NOT EXISTS task_runs_task_path_idx ON task_runs (task_path);

CREATE TABLE IF NOT EXISTS periodic_tasks (
    name text PRIMARY KEY,
    cron_expr text NOT NULL,
    task_path text NOT NULL,
    payload_json jsonb NOT NULL DEFAULT '{}'::jsonb,
    queue_name text NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3,
    concurrency_key text,
    concurrency_limit integer NOT NULL DEFAULT 0,
    last_run_at timestamptz,
    next_run_at timestamptz NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE periodic_tasks
    ALTER COLUMN payload_json SET DEFAULT '{}'::jsonb,
    ALTER COLUMN queue_name SET DEFAULT 'default',
    ALTER COLUMN priority SET DEFAULT 0,
    ALTER COLUMN max_attempts SET DEFAULT 3,
    ALTER COLUMN concurrency_limit SET DEFAULT 0,
    ALTER COLUMN enabled SET DEFAULT true,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
CREATE INDEX IF NOT EXISTS periodic_tasks_next_run_idx ON periodic_tasks (next_run_at) WHERE enabled;

CREATE TABLE IF NOT EXISTS reproq_queue_controls (
    queue_name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    paused_at timestamptz,
    reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS reproq_workers (
    worker_id text PRIMARY KEY,
    hostname text,
    concurrency integer,
    queues jsonb NOT NULL DEFAULT '[]'::jsonb,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    version text
);
DO $$
BEGIN
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'reproq_workers'
          AND column_name = 'queues') = 'ARRAY' THEN
        ALTER TABLE reproq_workers ALTER COLUMN queues DROP DEFAULT;
        ALTER TABLE reproq_workers ALTER COLUMN queues TYPE jsonb
            USING coalesce(to_jsonb(queues), '[]'::jsonb);
    END IF;
END
$$;
ALTER TABLE reproq_workers
    ALTER COLUMN queues SET DEFAULT '[]'::jsonb,
    ALTER COLUMN started_at SET DEFAULT now(),
    ALTER COLUMN last_seen_at SET DEFAULT now();

CREATE TABLE IF NOT EXISTS rate_limits (
    key text PRIMARY KEY,
    tokens_per_second real NOT NULL,
    burst_size integer NOT NULL,
    current_tokens real NOT NULL,
    last_refilled_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rate_limits (key, tokens_per_second, burst_size, current_tokens, last_refilled_at)
VALUES ('global', 0, 1, 0, now())
ON CONFLICT (key) DO NOTHING;

CREATE TABLE IF NOT EXISTS workflow_runs (
    workflow_id uuid PRIMARY KEY,
    expected_count integer NOT NULL,
    success_count integer NOT NULL DEFAULT 0,
    failure_count integer NOT NULL DEFAULT 0,
    callback_result_id bigint,
    status text NOT NULL DEFAULT 'RUNNING',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
