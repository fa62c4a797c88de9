-- Lesson 07's fix (applied only when asked: the lab stays the original otherwise): finishers of
-- one request take turns at the order gate.
--
-- The original gate fails when two pipe jobs of one order finish at the same moment: each
-- trigger looks for unfinished pipe jobs before the other's UPDATE has committed, each sees
-- the other unfinished, and the next order never starts.
--
-- This trigger runs BEFORE the UPDATE that finishes a pipe job and takes a lock on its request
-- that is held until commit. A second finisher of the same request waits here until the first
-- has committed; under READ COMMITTED every statement of the gate's function then takes a new
-- snapshot, so its check sees the first pipe job finished and opens the gate.
--
-- Why not `SELECT ... FOR UPDATE` on the request's pipe jobs inside the gate? The gate runs
-- AFTER its own UPDATE, so each finisher already holds its own row's lock when it asks for
-- the other's: two finishers of one request wait for each other, a deadlock. An advisory lock
-- on the request is one lock that everyone asks for first, so nobody holds half of what it needs.
-- The two-key form keeps these locks apart from any other advisory lock of the database.

CREATE OR REPLACE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pipe_job_finished AND NOT OLD.pipe_job_finished THEN
        PERFORM pg_advisory_xact_lock(hashtext('order gate'), NEW.request_id);
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER pipe_job_takes_turn
BEFORE UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();
