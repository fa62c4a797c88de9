# Solution: the heartbeat's answer: kill, else the oldest job for this process (taken), else No job found.
from pgqueue import check

my_answer = """
CREATE OR REPLACE FUNCTION answer_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    channel text := 'channel_' || lower(NEW.process_uuid);
    job job_queue;
BEGIN
    IF NEW.process_kill_switch THEN
        PERFORM pg_notify(channel, 'kill');
        RETURN NULL;
    END IF;
    SELECT * INTO job
      FROM job_queue
     WHERE job_assigned_process_uuid IS NULL
       AND NOT job_finished
       AND job_process_name = NEW.process_name
       AND job_process_version = NEW.process_version
     ORDER BY job_create_timestamp, job_id
     LIMIT 1;
    IF NOT FOUND THEN
        PERFORM pg_notify(channel, 'No job found');
        RETURN NULL;
    END IF;
    CALL take_job(job.job_id, NEW.process_uuid, job);  -- marks it taken and fills `job` in
    PERFORM pg_notify(channel, row_to_json(job)::text);
    RETURN NULL;
END $$;
"""
verdict = check.heartbeat_answer(my_answer)
print(verdict)
assert verdict.holds, verdict
