-- Step 05 (hardened): priorities, as sql/single_call/05_priorities.sql. find_job serves the
-- lowest job_priority first, then the oldest job; a job inherits its pipe job's priority.

-- Change a pipe job's priority and that of its jobs still waiting. Jobs already leased keep
-- theirs; jobs created later inherit the new one (see create_jobs). The pipe job's row is locked
-- FOR UPDATE first, so that a hand-over to it still open is waited for and its new job changed too.
-- hardened: the input is checked, and a job waiting for its next attempt counts as waiting.
CREATE FUNCTION set_pipe_job_priority(p_pipe_job_id integer, p_priority smallint)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
BEGIN
    IF p_pipe_job_id IS NULL OR p_priority IS NULL THEN
        PERFORM refuse('22023', format('set_pipe_job_priority: pipe job and priority must be given, got %s and %s',
                                       coalesce(p_pipe_job_id::text, 'NULL'), coalesce(p_priority::text, 'NULL')));
    END IF;
    PERFORM 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id FOR UPDATE;
    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;
    IF NOT FOUND THEN
        PERFORM refuse('P0002', format('set_pipe_job_priority: no pipe job %s', p_pipe_job_id));
    END IF;
    UPDATE job_queue SET job_priority = p_priority
     WHERE pipe_job_id = p_pipe_job_id
       AND job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;  -- how many waiting jobs were re-prioritised
END $$;
