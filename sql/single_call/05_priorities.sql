-- Step 05 (lesson 05): priorities. find_job already serves the lowest job_priority first, then
-- the oldest job; a job inherits the priority of its pipe job. This step lets an operator
-- change a running request's priority.

-- Change a pipe job's priority and that of its jobs still waiting. Jobs already taken keep
-- theirs (they are running); jobs created later inherit the new one (see create_jobs). The pipe
-- job's row is locked FOR UPDATE first: a worker's hand-over still open (create_jobs) holds it FOR
-- KEY SHARE through its new job's foreign key, which an UPDATE of the priority alone does not wait
-- for; waiting for it, the UPDATE of job_queue below sees that new job too.
CREATE FUNCTION set_pipe_job_priority(p_pipe_job_id integer, p_priority smallint)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
BEGIN
    PERFORM 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id FOR UPDATE;
    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no pipe job %', p_pipe_job_id;
    END IF;
    UPDATE job_queue SET job_priority = p_priority
     WHERE pipe_job_id = p_pipe_job_id
       AND coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;  -- how many waiting jobs were re-prioritised
END $$;
