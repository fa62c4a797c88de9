# Solution: the claim that never waits and never doubles. FOR UPDATE locks the row picked until
# the transaction ends, so nobody else can take it; SKIP LOCKED passes over rows another
# transaction has locked instead of waiting for them, so every caller gets the next free job.
from pgqueue import check

my_claim = """
SELECT job_id FROM job_queue
 WHERE coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
   AND job_process_name = %(name)s AND job_process_version = %(version)s
 ORDER BY job_priority, job_create_timestamp
 LIMIT 1
   FOR UPDATE SKIP LOCKED
"""
verdict = check.skip_locked_claim(my_claim)
print(verdict)
assert verdict.holds, verdict
