# Solution: answer the job only to the worker it was really assigned to.
from pgqueue.lab import races
from pgqueue.queues import labs

labs.reset("notify-listen", examples=True)
with labs.connect("notify-listen") as conn:
    conn.execute("""
CREATE OR REPLACE FUNCTION answer_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    channel text := 'channel_' || lower(NEW.process_uuid);
    job job_queue;
BEGIN
    IF NEW.process_kill_switch THEN
        PERFORM pg_notify(channel, 'kill');
        RETURN NULL;
    END IF;
    SELECT * INTO job FROM job_queue
     WHERE job_assigned_process_uuid IS NULL AND NOT job_finished
       AND job_process_name = NEW.process_name AND job_process_version = NEW.process_version
     ORDER BY job_create_timestamp, job_id LIMIT 1;
    IF FOUND THEN
        CALL take_job(job.job_id, NEW.process_uuid, job);  -- fills `job` in
    END IF;
    -- the fix: someone else may have taken it while we waited for its row lock
    IF job.job_id IS NULL OR job.job_assigned_process_uuid <> NEW.process_uuid THEN
        PERFORM pg_notify(channel, 'No job found');
        RETURN NULL;
    END IF;
    PERFORM pg_notify(channel, row_to_json(job)::text);
    RETURN NULL;
END $$;
""")

race = races.heartbeat_race("first_process", "1.0.0", serializable=False)
print(race)
assert not race.double_handout and race.second == "No job found" and race.retries == 0
