-- The kit's own bookkeeping queries (not part of any queue design).
-- Identifiers in {braces} are filled in with psycopg.sql.Identifier; values are %(name)s parameters.

-- name: server_version
SHOW server_version;

-- name: database_exists
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %(name)s);

-- name: databases_like
SELECT datname FROM pg_database WHERE datname LIKE %(pattern)s ORDER BY datname;

-- name: create_database
CREATE DATABASE {db};

-- name: create_database_from_template
-- A copy of a finished build (PGQUEUE_TEMPLATES=1): faster than running its steps again. It
-- fails while anyone is connected to {template}, so the kit never connects to its templates.
CREATE DATABASE {db} TEMPLATE {template};

-- name: this_database
-- A lab rebuilt under a worker is a new database with a new oid (a restarted server keeps it).
SELECT oid FROM pg_database WHERE datname = current_database();

-- name: database_oid
SELECT oid FROM pg_database WHERE datname = %(name)s;

-- name: drop_database
-- WITH (FORCE) (PostgreSQL 13+) ends the sessions still connected, e.g. a notebook's pool.
DROP DATABASE IF EXISTS {db} WITH (FORCE);

-- name: lock_lab
-- Two resets of the same lab take turns (held until the lab is built again).
SELECT pg_advisory_lock(hashtext(%(name)s));

-- name: try_lock_lab
-- Whether a reset holds the lab, asked in one transaction: the lock, if taken, goes with it
-- (a session-level try and unlock could land on two server connections behind a pooler).
SELECT pg_try_advisory_xact_lock(hashtext(%(name)s));

-- name: unlock_lab
SELECT pg_advisory_unlock(hashtext(%(name)s));

-- name: table_exists
-- A design names the table that marks its lab as set up (pgqueue.queues.designs).
SELECT to_regclass(%(table)s) IS NOT NULL;

-- name: worker_sessions
-- Kit workers name their connections 'pgqueue worker ...' (see labs.WORKER_APPLICATION).
SELECT count(*) FROM pg_stat_activity
 WHERE datname = %(name)s AND application_name LIKE %(pattern)s;

-- name: create_applied_steps
-- Which schema steps of sql/<design>/ this lab database has run: applying one twice is a no-op.
CREATE TABLE IF NOT EXISTS pgqueue_applied_steps (
    step        text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: applied_steps
SELECT step, checksum, applied_at FROM pgqueue_applied_steps ORDER BY step;

-- name: record_step
INSERT INTO pgqueue_applied_steps (step, checksum) VALUES (%(step)s, %(checksum)s);

-- name: roles_like
-- The worker roles labs made (roles belong to the whole server, not to a database).
SELECT rolname FROM pg_roles WHERE rolname LIKE %(pattern)s ORDER BY rolname;

-- name: drop_role
DROP ROLE IF EXISTS {role};
