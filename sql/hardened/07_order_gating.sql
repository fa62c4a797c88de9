-- Step 07 (hardened): pipelines chained by order, as sql/single_call/07_order_gating.sql, with
-- the gate that lesson 07 repairs already repaired: the finishers of one request take turns.

-- hardened: every change to a request's pipe jobs that the gate depends on takes one lock per
-- request first, so the second of two finishers checks after the first has committed (lesson
-- 07: a transaction-level advisory lock, released at commit).
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('order gate'), NEW.request_id);
    RETURN NEW;
END $$;

CREATE TRIGGER pipe_job_takes_turn
BEFORE INSERT OR UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();

-- The request's pipe jobs of the next order start when every pipe job of this order has
-- finished. hardened: a pipe job inserted for an order whose lower order is missing is
-- refused (the original let it wait forever), and one inserted after its lower order has
-- finished starts at once (the original never started it).
CREATE OR REPLACE FUNCTION pipe_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    this_order smallint;
    waiting pipe_job_queue;
BEGIN
    SELECT pipe_order INTO this_order FROM pipelines WHERE pipe_id = NEW.pipe_id;

    IF TG_OP = 'INSERT' THEN
        IF NEW.pipe_job_finished THEN
            PERFORM refuse('22023', format('pipe job %s is inserted already finished: nothing would ever '
                                           'run it', NEW.pipe_job_id));
        END IF;
        IF this_order <= 1 THEN
            CALL create_entry_job(NEW.pipe_job_id, NEW.pipe_id, NEW.pipe_job_priority, to_jsonb(NEW));
            RETURN NULL;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
                        WHERE pj.request_id = NEW.request_id AND p.pipe_order = this_order - 1) THEN
            PERFORM refuse('22023', format('request %s has no pipe job of order %s, so its order-%s pipe '
                                           'job would never start: submit the lower orders first',
                                           NEW.request_id, this_order - 1, this_order));
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
                        WHERE pj.request_id = NEW.request_id AND p.pipe_order = this_order - 1
                          AND NOT pj.pipe_job_finished) THEN
            CALL create_entry_job(NEW.pipe_job_id, NEW.pipe_id, NEW.pipe_job_priority, to_jsonb(NEW));
        END IF;
        RETURN NULL;
    END IF;

    -- an UPDATE that finished this pipe job
    IF NOT NEW.pipe_job_finished OR OLD.pipe_job_finished OR this_order = 0 THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
                WHERE pj.request_id = NEW.request_id AND p.pipe_order = this_order
                  AND NOT pj.pipe_job_finished) THEN
        RETURN NULL;
    END IF;
    FOR waiting IN
        SELECT pj.* FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
         WHERE pj.request_id = NEW.request_id AND p.pipe_order = this_order + 1
           AND NOT EXISTS (SELECT 1 FROM job_queue j WHERE j.pipe_job_id = pj.pipe_job_id)
         ORDER BY pj.pipe_job_id
    LOOP
        CALL create_entry_job(waiting.pipe_job_id, waiting.pipe_id, waiting.pipe_job_priority,
                              to_jsonb(waiting));
    END LOOP;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER pipe_job_starts
AFTER INSERT OR UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_changed();

-- hardened: the gate (above) looks up a request's pipe jobs at every finish. Without this
-- index each look-up read the whole table: `python -m pgqueue bench` measured finish_pipe at
-- 4.0 ms with 2,000 requests queued, 1.0 ms of it the trigger's scan (auto_explain, lesson 14).
CREATE INDEX pipe_job_queue_request ON pipe_job_queue (request_id);
