# Solution: the oldest of the best-priority waiting jobs of this process and version, locked.
from pgqueue import check

my_pick = """
CREATE FUNCTION find_job(p_uuid varchar, p_server varchar, p_name varchar, p_version varchar,
                         multi_job boolean DEFAULT false)
RETURNS varchar LANGUAGE plpgsql AS $$
DECLARE
    job job_queue;
BEGIN
    CALL send_heartbeat(p_uuid, p_server, p_name, p_version);
    IF (SELECT process_kill_switch FROM process_heartbeats WHERE process_uuid = p_uuid) THEN
        RETURN 'kill';
    END IF;
    IF multi_job THEN
        RAISE EXCEPTION 'gathering (multi_job) arrives in step 06';
    END IF;

    SELECT * INTO job FROM job_queue
     WHERE coalesce(job_assigned_process_uuid, '') = ''       -- nobody has it
       AND job_finished IS NULL                                -- nobody finished it
       AND job_process_name = p_name AND job_process_version = p_version
     ORDER BY job_priority, job_create_timestamp               -- lowest priority, then oldest
     LIMIT 1
       FOR UPDATE;                                             -- other callers queue behind it
    IF NOT FOUND THEN
        RETURN 'No job found';
    END IF;

    BEGIN
        INSERT INTO job_queue_claim (claimed_job_ids, claimer_uuid) VALUES (ARRAY[job.job_id], p_uuid);
    EXCEPTION WHEN unique_violation THEN
        RETURN 'Retry, I lost the job race';
    END;
    UPDATE job_queue SET job_assigned_process_uuid = p_uuid, job_assign_timestamp = clock_timestamp()
     WHERE job_id = job.job_id
    RETURNING * INTO job;
    UPDATE process_heartbeats SET process_busy = true WHERE process_uuid = p_uuid;
    RETURN json_build_array(row_to_json(job))::text;
END $$;
"""
verdict = check.find_job_pick(my_pick)
print(verdict)
assert verdict.holds, verdict
