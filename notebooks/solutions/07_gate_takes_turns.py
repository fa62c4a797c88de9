# Solution: lock the request's pipe jobs before checking them, so finishers take turns.
# Under READ COMMITTED each statement of the trigger sees what committed before it started:
# the second finisher waits for the first one's lock, then sees its pipe job finished.
from pgqueue import labs, races, single_call

labs.reset("single-call", upto="order_gating")
with labs.connect("single-call") as conn:
    conn.execute(labs.step("single-call", "pipelines").example_sql)
    conn.execute("""
CREATE OR REPLACE FUNCTION pipe_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    this_order smallint;
    waiting pipe_job_queue;
BEGIN
    SELECT pipe_order INTO this_order FROM pipelines WHERE pipe_id = NEW.pipe_id;
    IF TG_OP = 'INSERT' THEN
        IF NEW.pipe_job_finished THEN
            RAISE EXCEPTION 'pipe job % is inserted already finished', NEW.pipe_job_id;
        END IF;
        IF this_order <= 1 THEN
            CALL create_entry_job(NEW.pipe_job_id, NEW.pipe_id, NEW.pipe_job_priority, to_jsonb(NEW));
        END IF;
        RETURN NULL;
    END IF;
    IF NOT NEW.pipe_job_finished OR OLD.pipe_job_finished OR this_order = 0 THEN
        RETURN NULL;
    END IF;
    -- the fix: one finisher of a request at a time (always in the same order: no deadlock)
    PERFORM 1 FROM pipe_job_queue WHERE request_id = NEW.request_id ORDER BY pipe_job_id FOR UPDATE;
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
""")

report = single_call.submit(pipe_id=4, request_id=50)
one, two = single_call.submit(pipe_id=2, request_id=50), single_call.submit(pipe_id=2, request_id=50)
race = races.order_gate_race(one, two, waiting=report)
print(race)
assert race.started
