# Solution: lock the pipe job, change it, then only its jobs that still wait; count those.
from pgqueue import check

my_change = """
CREATE FUNCTION set_pipe_job_priority(p_pipe_job_id integer, p_priority smallint)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
BEGIN
    PERFORM 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id FOR UPDATE;  -- waits for a hand-over still open
    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no pipe job %', p_pipe_job_id;  -- and the UPDATE above is undone
    END IF;
    UPDATE job_queue SET job_priority = p_priority
     WHERE pipe_job_id = p_pipe_job_id
       AND coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END $$;
"""
verdict = check.priority_change(my_change)
print(verdict)
assert verdict.holds, verdict
