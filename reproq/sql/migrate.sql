-- name: migrate_lock
SELECT pg_advisory_lock(%(lock_id)s);

-- name: migrate_unlock
SELECT pg_advisory_unlock(%(lock_id)s);

-- name: migrate_create_version_table
CREATE TABLE IF NOT EXISTS reproq_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrate_applied_versions
SELECT version FROM reproq_schema_migrations ORDER BY version;

-- name: migrate_record_version
INSERT INTO reproq_schema_migrations (version, name, applied_at)
VALUES (%(version)s, %(name)s, now());

-- name: migrate_version_table_exists
SELECT to_regclass('reproq_schema_migrations') IS NOT NULL AS present;
