# Solution: the hardened claim. The WHERE repeats the partial index job_queue_waiting's own
# conditions (IS NULL, not coalesce), so the planner can walk that index straight to this
# process's best jobs however long the queue; job_run_after keeps a failed job waiting out its
# backoff. ORDER BY serves the lowest priority, then the oldest; LIMIT batch_size takes a batch.
# FOR UPDATE SKIP LOCKED locks each job picked and passes over any job another caller is
# claiming, so no caller waits and no job goes to two; lease_jobs marks the lease and the attempt.
from pgqueue import check

my_claim = """
CREATE FUNCTION claim_jobs(p_uuid varchar, p_name varchar, p_version varchar, batch_size integer)
RETURNS json LANGUAGE sql AS $$
    SELECT lease_jobs(p_uuid, ARRAY(
        SELECT job_id FROM job_queue
         WHERE job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL
           AND job_process_name = p_name AND job_process_version = p_version
           AND job_run_after <= clock_timestamp()
         ORDER BY job_priority, job_create_timestamp
         LIMIT batch_size
           FOR UPDATE SKIP LOCKED))
$$;
"""
verdict = check.claim_jobs(my_claim)
print(verdict)
assert verdict.holds, verdict
