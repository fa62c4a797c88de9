# Solution: a set qualifies only when no member of its parallel set is unfinished. The test sits
# inside the grouping query, before ORDER BY ... LIMIT 1, so an incomplete set in front can no
# longer hide a complete one behind it (the original tested the best set after picking it).
from pgqueue import check

my_gather = """
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
"""
verdict = check.gather_batch(my_gather)
print(verdict)
assert verdict.holds, verdict
