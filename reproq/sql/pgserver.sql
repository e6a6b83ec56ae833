-- Statements for creating and dropping whole databases (reproq.pg.throwaway).
--
-- Database names cannot be bound as parameters, so the DDL blocks below carry
-- `{name}` / `{template}` placeholders that reproq.pg.throwaway fills with
-- psycopg.sql.Identifier (quoted identifiers, never raw text).

-- name: pgserver_create_database
CREATE DATABASE {name}

-- name: pgserver_create_database_from_template
CREATE DATABASE {name} TEMPLATE {template}

-- name: pgserver_drop_database
DROP DATABASE IF EXISTS {name}

-- name: pgserver_drop_database_force
DROP DATABASE IF EXISTS {name} WITH (FORCE)

-- name: pgserver_terminate_connections
SELECT pg_terminate_backend(pid) AS terminated
FROM pg_stat_activity
WHERE datname = %(name)s AND pid <> pg_backend_pid()
