-- Queries lesson 06 shows and runs.

-- name: sets_waiting_for
-- What a gatherer sees: its waiting jobs grouped by the parallel set that created them.
SELECT w.job_creater_set_elements AS parallel_set,
       count(*) AS jobs_here,
       min(w.job_priority) AS set_priority,
       NOT EXISTS (SELECT 1 FROM job_queue m
                    WHERE m.job_id = ANY (w.job_creater_set_elements)
                      AND m.job_finished IS NOT TRUE) AS complete
  FROM job_queue w
 WHERE coalesce(w.job_assigned_process_uuid, '') = '' AND w.job_finished IS NULL
   AND w.job_process_name = %(name)s AND w.job_process_version = %(version)s
   AND w.job_creater_set_elements IS NOT NULL
 GROUP BY w.job_creater_set_elements
 ORDER BY min(w.job_priority), min(w.job_create_timestamp);

-- name: original_pick
-- The original's order: take the best set first (LIMIT 1), test whether it is complete after.
SELECT parallel_set, complete
  FROM (SELECT w.job_creater_set_elements AS parallel_set,
               NOT EXISTS (SELECT 1 FROM job_queue m
                            WHERE m.job_id = ANY (w.job_creater_set_elements)
                              AND m.job_finished IS NOT TRUE) AS complete,
               min(w.job_priority) AS p, min(w.job_create_timestamp) AS t
          FROM job_queue w
         WHERE coalesce(w.job_assigned_process_uuid, '') = '' AND w.job_finished IS NULL
           AND w.job_process_name = %(name)s AND w.job_process_version = %(version)s
           AND w.job_creater_set_elements IS NOT NULL
         GROUP BY w.job_creater_set_elements
         ORDER BY p, t
         LIMIT 1) best;

-- name: gather_batch
-- The batch find_job hands a gatherer in multi mode, as a function of its own (the lesson's
-- exercise): the waiting jobs of the best parallel set whose every member has finished, or NULL.
CREATE FUNCTION gather_batch(p_name varchar, p_version varchar) RETURNS integer[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(j.job_id ORDER BY j.job_id)
      FROM job_queue j
     WHERE j.job_creater_set_elements = (
            SELECT w.job_creater_set_elements
              FROM job_queue w
             WHERE coalesce(w.job_assigned_process_uuid, '') = ''
               AND w.job_finished IS NULL
               AND w.job_process_name = p_name AND w.job_process_version = p_version
               AND w.job_creater_set_elements IS NOT NULL
               -- every member of the parallel set has finished
               AND NOT EXISTS (SELECT 1 FROM job_queue m
                                WHERE m.job_id = ANY (w.job_creater_set_elements)
                                  AND m.job_finished IS NOT TRUE)
             GROUP BY w.job_creater_set_elements
             ORDER BY min(w.job_priority), min(w.job_create_timestamp)
             LIMIT 1)
       AND coalesce(j.job_assigned_process_uuid, '') = ''
       AND j.job_finished IS NULL
       AND j.job_process_name = p_name AND j.job_process_version = p_version
$$;

-- name: gather_batch_original
-- The original's order as a function: the best set first (LIMIT 1), tested for completeness
-- only afterwards, so an unfinished set in front hides every complete set behind it.
CREATE FUNCTION gather_batch(p_name varchar, p_version varchar) RETURNS integer[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(j.job_id ORDER BY j.job_id)
      FROM job_queue j
     WHERE j.job_creater_set_elements = (
            SELECT w.job_creater_set_elements
              FROM job_queue w
             WHERE coalesce(w.job_assigned_process_uuid, '') = ''
               AND w.job_finished IS NULL
               AND w.job_process_name = p_name AND w.job_process_version = p_version
               AND w.job_creater_set_elements IS NOT NULL
             GROUP BY w.job_creater_set_elements
             ORDER BY min(w.job_priority), min(w.job_create_timestamp)
             LIMIT 1)
       AND NOT EXISTS (SELECT 1 FROM job_queue m
                        WHERE m.job_id = ANY (j.job_creater_set_elements)
                          AND m.job_finished IS NOT TRUE)
       AND coalesce(j.job_assigned_process_uuid, '') = ''
       AND j.job_finished IS NULL
       AND j.job_process_name = p_name AND j.job_process_version = p_version
$$;
