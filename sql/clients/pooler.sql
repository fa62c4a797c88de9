-- Lesson 13 (pgqueue.server.pooler and the lesson): what clients of a transaction-mode pooler send.

-- name: ping
SELECT 1;

-- name: backend
-- The server process this statement ran on: through a pooler, one of the pool's.
SELECT pg_backend_pid();

-- name: server_connections
-- The server's client connections to one database (the pool's, the workers', this one).
SELECT count(*) FROM pg_stat_activity WHERE datname = %(dbname)s AND backend_type = 'client backend';

-- name: connections_by_application
SELECT application_name, count(*) AS connections
  FROM pg_stat_activity
 WHERE datname = %(dbname)s AND backend_type = 'client backend'
 GROUP BY application_name ORDER BY application_name;

-- name: listening_channels
-- The channels the session this statement runs in listens on.
SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM pg_listening_channels() c;

-- name: session_lock
SELECT pg_advisory_lock(%(key)s);

-- name: try_session_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: session_unlock
SELECT pg_advisory_unlock(%(key)s);

-- name: lock_holder
-- Which server process holds the session-level advisory lock `key`, if any.
SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %(key)s AND granted;

-- name: hold_a_transaction
SELECT pg_backend_pid();

-- name: the_same_query
-- Run six times on one connection, psycopg prepares it on the server (prepare_threshold=5: once it
-- has run five times).
SELECT count(*) FROM pg_class WHERE relkind = %(kind)s;

-- name: max_connections
SELECT current_setting('max_connections')::integer,
       current_setting('superuser_reserved_connections')::integer;

-- name: notify
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: xact_lock
SELECT pg_advisory_xact_lock(%(key)s);

-- name: try_xact_lock
SELECT pg_try_advisory_xact_lock(%(key)s);

-- name: beaten
-- How many of these workers have a heartbeat row (they connected and asked for work).
SELECT count(*) FROM process_heartbeats WHERE process_uuid = ANY (%(uuids)s);

-- name: local_lock_timeout
-- For this transaction only: through a pooler, a session setting would stay with the server
-- connection and reach whichever client uses it next.
SELECT set_config('lock_timeout', '2000', true);

-- name: advisory_locks
-- Advisory locks on the lab's database: held (granted) and waited for.
SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)
  FROM pg_locks
 WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database());

-- name: advisory_modes
-- The modes of the advisory locks held on the lab's database: ExclusiveLock for pg_advisory_lock and
-- its siblings, ShareLock for their _shared forms.
SELECT DISTINCT mode FROM pg_locks
 WHERE locktype = 'advisory' AND granted
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY mode;

-- name: shared_xact_lock
-- Waits while the watcher holds the lock alone; many clients can share it once it is free.
SELECT pg_advisory_xact_lock_shared(%(key)s);

-- name: lock_waiters
-- Sessions inside the server waiting for the advisory lock `key`.
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %(key)s AND NOT granted;

-- name: lock_waiters_in
-- Sessions of one database waiting for a lock of any kind (a row, an advisory lock, ...).
SELECT count(*) FROM pg_stat_activity WHERE datname = %(dbname)s AND wait_event_type = 'Lock';

-- name: max_connections_context
-- 'postmaster': the setting changes only when the server restarts.
SELECT context FROM pg_settings WHERE name = 'max_connections';

-- name: connections_by_role
SELECT usename, count(*) FROM pg_stat_activity
 WHERE datname = %(dbname)s AND backend_type = 'client backend'
 GROUP BY usename;

-- name: attempt_outcomes
-- Every attempt at a job of the lab, counted by how it ended (succeeded, failed, rescued).
SELECT outcome::text, count(*) FROM job_attempts GROUP BY outcome ORDER BY outcome;

-- name: session_settings
-- This server connection's settings made for the session (SET, set_config(..., false)), by its pid:
-- what the pool's next client of it would run with.
SELECT pg_backend_pid(), coalesce(jsonb_object_agg(name, setting), '{}') FROM pg_settings
 WHERE source = 'session';
