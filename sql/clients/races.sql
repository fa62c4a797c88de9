-- What the race experiments read to know where each worker is.

-- name: wait_event
-- 'Lock' while that backend waits for a row lock another transaction holds.
SELECT wait_event_type FROM pg_stat_activity WHERE pid = %(pid)s;

-- name: owner
SELECT job_assigned_process_uuid FROM job_queue
 WHERE job_process_name = %(name)s AND job_process_version = %(version)s
 ORDER BY job_id LIMIT 1;

-- name: finish_pipe_job
-- Finish a pipe job the way finish_pipe does for its last job (the trigger runs on this update).
UPDATE pipe_job_queue SET pipe_job_finished = true, pipe_job_finish_timestamp = clock_timestamp()
 WHERE pipe_job_id = %(pipe_job_id)s;

-- name: entry_job_of
SELECT count(*) FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s;

-- name: gate_trial
-- A fresh request for the order-gate trials: the next-order pipe job first (so it is there
-- when the gate opens), then two pipe jobs of the order before. Returns them in that order.
WITH request AS (SELECT coalesce(max(request_id), 0) + 1 AS id FROM pipe_job_queue)
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT request.id, pipe.id FROM request, unnest(ARRAY[%(next_pipe)s, %(pipe)s, %(pipe)s]::integer[])
       WITH ORDINALITY AS pipe (id, n)
 ORDER BY pipe.n
RETURNING pipe_job_id;

-- name: late_trial
-- A fresh request with one pipe job of `pipe` (its only pipe job of that order), for the race
-- of its finisher against a pipe job of the next order inserted at the same moment.
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT coalesce(max(request_id), 0) + 1, %(pipe)s FROM pipe_job_queue
RETURNING pipe_job_id, request_id;

-- name: late_pipe_job
-- A pipe job of the next order arrives for a request already under way.
INSERT INTO pipe_job_queue (request_id, pipe_id) VALUES (%(request_id)s, %(pipe)s)
RETURNING pipe_job_id;

-- name: gate_row_locks
-- Lesson 07's first idea, which deadlocks: lock the request's pipe jobs before the gate's check.
-- A BEFORE UPDATE row trigger runs once the UPDATE holds its own row's lock, so two finishers
-- of one request each hold one row and wait for the other's.
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pipe_job_finished AND NOT OLD.pipe_job_finished THEN
        PERFORM 1 FROM pipe_job_queue WHERE request_id = NEW.request_id
          ORDER BY pipe_job_id FOR UPDATE;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER pipe_job_takes_turn
BEFORE UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();

-- name: lock_timeout
-- A race that should not wait ends in an error after `ms` instead of hanging a test.
SELECT set_config('lock_timeout', %(ms)s, false);

-- name: install_gate_hold
-- A kit trigger that holds a finisher right after its UPDATE has locked its own pipe job's row,
-- before any later BEFORE trigger runs (triggers of one kind fire in name order, and `_` sorts
-- before lowercase letters), until the trials' coordinator lets go. It holds only sessions that
-- set pgqueue.gate_hold: the coordinator releases both finishers once both are held, so every
-- trial meets the schedule free trials meet only sometimes: both finishers holding their own
-- row before either asks for more.
CREATE OR REPLACE FUNCTION _hold_after_row_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pipe_job_finished AND NOT OLD.pipe_job_finished
       AND current_setting('pgqueue.gate_hold', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock_shared(hashtext('pgqueue gate hold'));
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER _hold_after_row_lock
BEFORE UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION _hold_after_row_lock();

-- name: gate_hold_on
SELECT set_config('pgqueue.gate_hold', 'on', false);

-- name: close_gate_hold
-- The coordinator's lock (session-level): held finishers wait for it, sharing it once it is free.
SELECT pg_advisory_lock(hashtext('pgqueue gate hold'));

-- name: open_gate_hold
SELECT pg_advisory_unlock(hashtext('pgqueue gate hold'));

-- name: install_rescue_pause
-- A kit hook for the rescue's forced schedule: a condition that holds a rescuer (only a session
-- that set pgqueue.rescue_pause) after its statement took its snapshot and before it locks a
-- row, until the coordinator lets go of its lock.
CREATE FUNCTION _rescue_pause() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF current_setting('pgqueue.rescue_pause', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock_shared(hashtext('pgqueue rescue pause'));
    END IF;
    RETURN true;
END $$;

-- name: rescue_pause_on
SELECT set_config('pgqueue.rescue_pause', 'on', false);

-- name: close_rescue_pause
SELECT pg_advisory_lock(hashtext('pgqueue rescue pause'));

-- name: open_rescue_pause
SELECT pg_advisory_unlock(hashtext('pgqueue rescue pause'));

-- name: rescue
SELECT rescue_jobs();

-- name: hardened_ask
-- One job for a hardened worker (its own find_job: a heartbeat, a lease, an attempt).
SELECT find_job(%(uuid)s, %(server)s, %(name)s, %(version)s, false, 1);

-- name: lock_job_row
-- What a worker finishing its job holds until it commits: the job's row lock.
SELECT job_id FROM job_queue WHERE job_id = %(job_id)s FOR UPDATE;

-- name: job_holder
SELECT job_assigned_process_uuid FROM job_queue WHERE job_id = %(job_id)s;

-- name: children_of
-- The jobs a hand-over of `job_id` created.
SELECT count(*) FROM job_queue WHERE %(job_id)s = ANY (job_parent_set_elements);

-- Lesson 10's races for a job (pgqueue.lab.race_for_a_job)

-- name: race_attempts_of
-- hardened: the attempts recorded for one job: one per execution.
SELECT count(*) FROM job_attempts WHERE job_id = %(job_id)s;

-- name: race_entry_jobs_of
-- The entry jobs a pipe job got: 0 while its order waits, 1 once started, 2 if started twice.
SELECT count(*) FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s AND job_creater_process_uuid IS NULL;

-- name: race_pipe_job_finished
SELECT pipe_job_finished FROM pipe_job_queue WHERE pipe_job_id = %(pipe_job_id)s;
