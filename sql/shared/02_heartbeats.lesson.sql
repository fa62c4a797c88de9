-- Queries lesson 02 shows and runs.

-- name: beat
CALL send_heartbeat(%(uuid)s, %(server)s, %(name)s, %(version)s);

-- name: heartbeats
SELECT process_uuid, process_name, process_version, last_beat_timestamp, process_busy,
       process_kill_switch
  FROM process_heartbeats ORDER BY process_name, process_uuid;

-- name: states
SELECT * FROM process_states(%(stale_after)s);
