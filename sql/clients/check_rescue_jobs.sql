-- Lesson 12's rescue checker (pgqueue/check/rescue.py): leases made through the real find_job
-- of a scratch hardened lab, then the learner's rescue_jobs called as every find_job calls it.

-- name: requests
-- New requests of pipeline 2 (a plain chain), each starting one first_process job, until
-- `count` such jobs wait (the examples' request 50 has one already).
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT (SELECT coalesce(max(request_id), 0) FROM pipe_job_queue) + n, 2
  FROM generate_series(1, %(count)s - (SELECT count(*) FROM job_queue
                                        WHERE job_process_name = 'first_process'
                                          AND job_process_version = '1.9.2'
                                          AND job_assigned_process_uuid IS NULL
                                          AND job_finished IS NULL)) AS n
RETURNING pipe_job_id;

-- name: rescue
SELECT rescue_jobs();

-- name: job
-- One job as the checker judges it, and its latest attempt.
SELECT j.job_id, j.job_assigned_process_uuid AS holder, j.job_finished IS TRUE AS finished,
       j.job_dead_timestamp IS NOT NULL AS dead, j.job_error AS error, j.job_attempts AS attempts,
       a.process_uuid AS tried_by, a.attempt_ended IS NULL AS running, a.outcome
  FROM job_queue j
  LEFT JOIN LATERAL (SELECT * FROM job_attempts a WHERE a.job_id = j.job_id
                      ORDER BY a.attempt_id DESC LIMIT 1) a ON true
 WHERE j.job_id = %(job_id)s;

-- name: wake_channel
SELECT wake_channel(%(name)s, %(version)s);

-- name: beat_age
-- How long ago a worker last beat, in seconds.
SELECT round(extract(epoch FROM clock_timestamp() - last_beat_timestamp)::numeric, 1)::float8
  FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: forget_worker
-- A worker whose heartbeat row is gone (deleted by hand, say): its jobs are held by nobody known.
DELETE FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: pipe_job
-- A pipe job of pipeline 2 for a new request, which the forced schedule's jobs belong to.
INSERT INTO pipe_job_queue (request_id, pipe_id)
VALUES ((SELECT coalesce(max(request_id), 0) + 1 FROM pipe_job_queue), 2)
RETURNING pipe_job_id;

-- name: place_job
-- One waiting job of `name` `version`, with priority `p` (lower first).
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version, job_priority)
VALUES (%(pipe_job_id)s, 2, %(name)s, %(version)s, %(p)s);

-- name: install_pause
-- The kit's clock for one rescuer: functions named as PostgreSQL's clocks, in a schema that the
-- rescuer alone puts before pg_catalog on its search_path. The first reading of any of them in a
-- transaction of a session the judge armed (core.Hold.arm: pgqueue.hold_slot) waits for the lock
-- of its slot, as the kit's hold trigger does (sql/kit/check.sql): the rescue is held within the
-- statement that reads the clock, after that statement took its snapshot.
CREATE SCHEMA pgqueue_pause;
CREATE FUNCTION pgqueue_pause.hold() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    slot text := current_setting('pgqueue.hold_slot', true);
BEGIN
    IF coalesce(slot, '') <> '' AND coalesce(current_setting('pgqueue.held', true), '') = '' THEN
        PERFORM set_config('pgqueue.held', 'yes', true);
        PERFORM pg_advisory_xact_lock(hashtext('pgqueue kit hold'), slot::integer);
    END IF;
END $$;
-- the four clocks alike: each waits at the hold, then reads PostgreSQL's own
DO $do$
DECLARE
    clock text;
BEGIN
    FOREACH clock IN ARRAY ARRAY['clock_timestamp', 'now', 'statement_timestamp', 'transaction_timestamp'] LOOP
        EXECUTE format('CREATE FUNCTION pgqueue_pause.%1$I() RETURNS timestamptz LANGUAGE plpgsql AS '
                       '$f$ BEGIN PERFORM pgqueue_pause.hold(); RETURN pg_catalog.%1$I(); END $f$', clock);
    END LOOP;
END $do$;

-- current_timestamp is no function, so its arithmetic is held instead: - and + of a timestamptz
-- and an interval, found on the search_path before pg_catalog's
CREATE FUNCTION pgqueue_pause.minus(t timestamptz, i interval) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgqueue_pause.hold();
    RETURN t OPERATOR(pg_catalog.-) i;
END $$;
CREATE FUNCTION pgqueue_pause.plus(t timestamptz, i interval) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgqueue_pause.hold();
    RETURN t OPERATOR(pg_catalog.+) i;
END $$;
CREATE OPERATOR pgqueue_pause.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = pgqueue_pause.minus);
CREATE OPERATOR pgqueue_pause.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = pgqueue_pause.plus);

-- name: pause_on
-- This session reads the kit's clock (pgqueue_pause before pg_catalog): armed, it is held at its first reading.
SELECT set_config('search_path', 'pgqueue_pause, pg_catalog, ' || current_setting('search_path'), false);

-- name: session_advisory_locks
-- Advisory locks held by sessions of this database, backend `pid` aside, that are in no transaction:
-- idle ones, and this autocommit session between its statements. Each lasts until its session
-- unlocks it or ends (the kit's hold aside).
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
 WHERE l.pid <> %(pid)s AND l.granted AND l.locktype = 'advisory'
   AND (a.state = 'idle' OR a.pid = pg_backend_pid())
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND NOT (l.classid = hashtext('pgqueue kit hold')::oid AND l.objsubid = 2);

-- name: lock_timeout
-- A rescuer, or a worker beside it, that has to wait for a lock gives up after `ms`.
SELECT set_config('lock_timeout', %(ms)s, false);

-- name: ended_attempts
-- Every attempt that has ended, whole: a rescue leaves each of these rows as it was.
SELECT a.* FROM job_attempts a WHERE a.attempt_ended IS NOT NULL ORDER BY a.attempt_id;

-- name: rescued_attempts
-- How many of a job's attempts a rescue ended.
SELECT count(*) FROM job_attempts WHERE job_id = %(job_id)s AND outcome = 'rescued';

-- name: clock
SELECT clock_timestamp();

-- name: ended_before
-- The jobs of `ids` whose attempt the rescue ended ('rescued') with a time before `since`, when it ran.
SELECT coalesce(array_agg(DISTINCT job_id ORDER BY job_id), '{}') FROM job_attempts
 WHERE job_id = ANY (%(ids)s) AND outcome = 'rescued' AND attempt_ended < %(since)s;
