-- Step 06 (lesson 06): fan-out and fan-in. create_jobs (step 04) already fans out: N payloads
-- make N parallel jobs sharing one sibling set. Each of them hands one job to the gathering
-- process, and all those jobs carry the same job_creater_set_elements. find_job in multi mode
-- hands a gatherer such a batch as a whole, once every job of the parallel set has finished.

CREATE OR REPLACE FUNCTION find_job(p_uuid varchar, p_server varchar, p_name varchar,
                                    p_version varchar, multi_job boolean DEFAULT false)
RETURNS varchar LANGUAGE plpgsql AS $$
DECLARE
    job job_queue;
    batch integer[];
    jobs json;
BEGIN
    CALL send_heartbeat(p_uuid, p_server, p_name, p_version);
    IF (SELECT process_kill_switch FROM process_heartbeats WHERE process_uuid = p_uuid) THEN
        RETURN 'kill';
    END IF;

    IF NOT multi_job THEN
        SELECT * INTO job FROM job_queue
         WHERE coalesce(job_assigned_process_uuid, '') = ''
           AND job_finished IS NULL
           AND job_process_name = p_name AND job_process_version = p_version
         ORDER BY job_priority, job_create_timestamp
         LIMIT 1
           FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 'No job found';
        END IF;
        batch := ARRAY[job.job_id];
    ELSE
        -- Group this process's waiting jobs by the parallel set that created them; a set's
        -- priority is its best member's. Only sets whose every member finished qualify.
        -- The original took the best group first (LIMIT 1) and tested it afterwards, so one
        -- unfinished set hid every complete set behind it (fixed later in its history).
        -- Entry jobs have no creator set, so a gatherer never receives one.
        SELECT array_agg(j.job_id ORDER BY j.job_id) INTO batch
          FROM job_queue j
         WHERE j.job_creater_set_elements = (
                SELECT w.job_creater_set_elements
                  FROM job_queue w
                 WHERE coalesce(w.job_assigned_process_uuid, '') = ''
                   AND w.job_finished IS NULL
                   AND w.job_process_name = p_name AND w.job_process_version = p_version
                   AND w.job_creater_set_elements IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM job_queue m
                                    WHERE m.job_id = ANY (w.job_creater_set_elements)
                                      AND m.job_finished IS NOT TRUE)
                 GROUP BY w.job_creater_set_elements
                 ORDER BY min(w.job_priority), min(w.job_create_timestamp)
                 LIMIT 1)
           AND coalesce(j.job_assigned_process_uuid, '') = ''
           AND j.job_finished IS NULL
           AND j.job_process_name = p_name AND j.job_process_version = p_version;
        IF batch IS NULL THEN
            RETURN 'No job found';
        END IF;
    END IF;

    -- No row locks in multi mode: two gatherers can pick the same batch. The claim's primary
    -- key lets only one of them through.
    BEGIN
        INSERT INTO job_queue_claim (claimed_job_ids, claimer_uuid) VALUES (batch, p_uuid);
    EXCEPTION WHEN unique_violation THEN
        RETURN 'Retry, I lost the job race';
    END;
    WITH taken AS (
        UPDATE job_queue SET job_assigned_process_uuid = p_uuid,
                             job_assign_timestamp = clock_timestamp()
         WHERE job_id = ANY (batch)
        RETURNING *
    )
    SELECT json_agg(row_to_json(taken) ORDER BY job_id) INTO jobs FROM taken;
    UPDATE process_heartbeats SET process_busy = true WHERE process_uuid = p_uuid;
    RETURN jobs::text;
END $$;
