-- Step 07 (lesson 07): pipelines chained by order. When a pipe job finishes and every pipe job
-- of the same request and the same order has finished, the request's pipe jobs of the next
-- order get their entry jobs. Order 0 is for work fed in from outside: it never chains.
-- Orders must be consecutive: a request with orders 1 and 3 stalls after order 1.

CREATE OR REPLACE FUNCTION pipe_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    this_order smallint;
    waiting pipe_job_queue;
BEGIN
    SELECT pipe_order INTO this_order FROM pipelines WHERE pipe_id = NEW.pipe_id;

    IF TG_OP = 'INSERT' THEN
        IF NEW.pipe_job_finished THEN
            RAISE EXCEPTION 'pipe job % is inserted already finished: nothing would ever run it',
                NEW.pipe_job_id;
        END IF;
        IF this_order <= 1 THEN
            CALL create_entry_job(NEW.pipe_job_id, NEW.pipe_id, NEW.pipe_job_priority, to_jsonb(NEW));
        END IF;
        RETURN NULL;
    END IF;

    -- an UPDATE that finished this pipe job
    IF NOT NEW.pipe_job_finished OR OLD.pipe_job_finished OR this_order = 0 THEN
        RETURN NULL;
    END IF;
    -- Faithful to the original, and as its author noted, not safe: two pipe jobs of one order
    -- finishing at the same moment can each still see the other unfinished (neither commit is
    -- visible to the other), and then the next order never starts.
    IF EXISTS (SELECT 1 FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
                WHERE pj.request_id = NEW.request_id AND p.pipe_order = this_order
                  AND NOT pj.pipe_job_finished) THEN
        RETURN NULL;
    END IF;
    FOR waiting IN
        SELECT pj.* FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
         WHERE pj.request_id = NEW.request_id AND p.pipe_order = this_order + 1
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
