-- What kit processes send about heartbeats and kill switches (both queue designs).

-- name: send_heartbeat
-- A procedure, as in the original: CALL, not SELECT.
CALL send_heartbeat(%(uuid)s, %(server)s, %(name)s, %(version)s);

-- name: kill_switch
SELECT process_kill_switch FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: set_kill_switch
UPDATE process_heartbeats SET process_kill_switch = %(on)s WHERE process_uuid = %(uuid)s
RETURNING process_uuid;

-- name: mark_stopped
-- A process that exits cleanly says so (not in the original): `stopped` instead of alive, then
-- stale. Its next heartbeat, if it ever beats again, clears it.
UPDATE process_heartbeats SET process_stopped_timestamp = clock_timestamp(), process_busy = false
 WHERE process_uuid = %(uuid)s;

-- name: states
-- state: killed, stopped, stale or alive (see process_states); exited: it said it stopped.
SELECT process_uuid, process_name, process_version, server_name,
       round(extract(epoch FROM beat_age)::numeric, 1)::float8 AS beat_age_s,
       process_busy, process_kill_switch, exited, state
  FROM process_states(%(stale_after)s);
