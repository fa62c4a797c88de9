# Solution: rescue_jobs gives the jobs of silent workers back, so plain workers recover from a crash.
# A job is lost when its worker's last heartbeat is older than rescue_after, or the worker said it
# stopped. The first statement locks those jobs with SKIP LOCKED, passing over a job its worker is
# finishing right now; the second re-reads them under the lock, ends each open attempt 'rescued',
# gives the job back (or dead-letters it once out of attempts) and wakes the workers of its process.
from pgqueue import check

my_rescue = """
CREATE FUNCTION rescue_jobs() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s queue_settings;
    candidates integer[];
    freed integer;
    notified integer;
BEGIN
    SELECT * INTO s FROM queue_settings;
    -- Two statements, on purpose. The first locks the candidates (SKIP LOCKED: a job its worker
    -- is finishing right now is not lost). Its snapshot may be older than a lease committed a
    -- moment ago: re-checked under the lock, a row taken by a live worker since would fail the
    -- outer join and look like a job of nobody. So the second statement, whose snapshot is
    -- taken once the rows are ours, reads their latest state and rescues only those still lost.
    SELECT array_agg(job_id) INTO candidates FROM (
        SELECT j.job_id FROM job_queue j
          LEFT JOIN process_heartbeats h ON h.process_uuid = j.job_assigned_process_uuid
         WHERE j.job_assigned_process_uuid IS NOT NULL AND j.job_finished IS NULL
           AND (h.process_uuid IS NULL
                OR h.last_beat_timestamp < clock_timestamp() - s.rescue_after
                OR h.process_stopped_timestamp IS NOT NULL)
           FOR UPDATE OF j SKIP LOCKED) c;
    IF candidates IS NULL THEN
        RETURN 0;
    END IF;
    WITH lost AS (
        SELECT j.job_id FROM job_queue j
          LEFT JOIN process_heartbeats h ON h.process_uuid = j.job_assigned_process_uuid
         WHERE j.job_id = ANY (candidates)
           AND j.job_assigned_process_uuid IS NOT NULL AND j.job_finished IS NULL
           AND (h.process_uuid IS NULL
                OR h.last_beat_timestamp < clock_timestamp() - s.rescue_after
                OR h.process_stopped_timestamp IS NOT NULL)
    ), ended AS (
        UPDATE job_attempts a
           SET attempt_ended = clock_timestamp(), outcome = 'rescued',
               error = 'its worker went silent'
          FROM lost
         WHERE a.job_id = lost.job_id AND a.attempt_ended IS NULL
    ), back AS (
        UPDATE job_queue j
           SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL,
               job_dead_timestamp = CASE WHEN j.job_attempts >= s.max_attempts THEN clock_timestamp() END,
               job_error = CASE WHEN j.job_attempts >= s.max_attempts
                                THEN format('its worker went silent in each of %s attempts', j.job_attempts)
                           END
          FROM lost
         WHERE j.job_id = lost.job_id
        RETURNING j.job_id, j.job_process_name, j.job_process_version, j.job_dead_timestamp
    ), woken AS (
        SELECT pg_notify(wake_channel(job_process_name, job_process_version), min(job_id)::text)
          FROM back WHERE job_dead_timestamp IS NULL
         GROUP BY job_process_name, job_process_version
    )
    -- a plain SELECT in WITH runs only if read: reading `woken` sends the wake-ups
    SELECT (SELECT count(*) FROM back), (SELECT count(*) FROM woken) INTO freed, notified;
    RETURN freed;
END $$;
"""
verdict = check.rescue_jobs(my_rescue)
print(verdict)
assert verdict.holds, verdict
