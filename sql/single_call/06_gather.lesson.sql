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
