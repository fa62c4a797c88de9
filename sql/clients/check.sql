-- What the kit's checkers (pgqueue.check) read and set while they try a learner's SQL.

-- name: heartbeat_row
SELECT * FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: heartbeat_rows
SELECT count(*) FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: mark_busy_stopped
-- As a worker's row looks after it took a job, then said it stopped.
UPDATE process_heartbeats SET process_busy = true, process_stopped_timestamp = clock_timestamp()
 WHERE process_uuid = %(uuid)s;
