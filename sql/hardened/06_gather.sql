-- Step 06 (hardened): fan-out and fan-in, as sql/single_call/06_gather.sql. create_jobs fans
-- out; a gathering process receives the jobs of one parallel set as a whole, once every job of
-- that set has finished.

-- The batch for a gatherer: the waiting jobs of the best parallel set whose every member
-- finished. hardened: complete sets are looked at in order, and a set another gatherer is
-- claiming right now is passed over (a try-lock per set, the SKIP LOCKED of sets), so two
-- gatherers never receive one set, and an incomplete set hides nothing behind it.
CREATE OR REPLACE FUNCTION claim_set(p_uuid varchar, p_name varchar, p_version varchar) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    candidate integer[];
    batch integer[];
BEGIN
    FOR candidate IN
        SELECT w.job_creater_set_elements
          FROM job_queue w
         WHERE w.job_assigned_process_uuid IS NULL AND w.job_finished IS NULL
           AND w.job_dead_timestamp IS NULL AND w.job_run_after <= clock_timestamp()
           AND w.job_process_name = p_name AND w.job_process_version = p_version
           AND w.job_creater_set_elements IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM job_queue m
                            WHERE m.job_id = ANY (w.job_creater_set_elements)
                              AND m.job_finished IS NOT TRUE)
         GROUP BY w.job_creater_set_elements
         ORDER BY min(w.job_priority), min(w.job_create_timestamp)
    LOOP
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtext('gather set'), hashtext(candidate::text));
        -- a new snapshot: a gatherer that claimed this set and committed a moment ago shows here
        SELECT array_agg(job_id ORDER BY job_id) INTO batch FROM (
            SELECT job_id FROM job_queue
             WHERE job_creater_set_elements = candidate
               AND job_assigned_process_uuid IS NULL AND job_finished IS NULL
               AND job_dead_timestamp IS NULL
               AND job_process_name = p_name AND job_process_version = p_version
             ORDER BY job_id
               FOR UPDATE) waiting;
        EXIT WHEN batch IS NOT NULL;
    END LOOP;
    IF batch IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN lease_jobs(p_uuid, batch);
END $$;
