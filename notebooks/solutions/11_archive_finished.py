# Solution: move old finished work out of the hot tables in one statement. Each DELETE ...
# RETURNING * hands its rows to an INSERT into the archive, so a job is in exactly one table at
# every moment; the attempts go too, since job_attempts references job_queue (the foreign key is
# checked at the end of the statement, once both are gone).
from pgqueue import check

my_archive = """
WITH old AS (
    SELECT j.job_id FROM job_queue j JOIN pipe_job_queue p USING (pipe_job_id)
     WHERE j.job_finished AND p.pipe_job_finished
       AND p.pipe_job_finish_timestamp <= clock_timestamp() - make_interval(secs => %(seconds)s)
), attempts AS (
    DELETE FROM job_attempts WHERE job_id IN (SELECT job_id FROM old) RETURNING *
), kept_attempts AS (
    INSERT INTO job_attempt_archive SELECT * FROM attempts
), jobs AS (
    DELETE FROM job_queue WHERE job_id IN (SELECT job_id FROM old) RETURNING *
)
INSERT INTO job_archive SELECT * FROM jobs
"""
verdict = check.archive_finished(my_archive)
print(verdict)
assert verdict.holds, verdict
