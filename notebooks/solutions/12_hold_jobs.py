# Solution: hold_jobs decides, for every hand-over (create_jobs, finish_pipe, fail_jobs), whether
# this worker may finish these jobs. It locks them in id order (FOR UPDATE), so a second finisher
# waits for the first and then reads what it committed, and two finishers never wait in a circle.
# A job this worker already finished with a succeeded attempt makes the call a repeat: false, and
# the caller changes nothing. A job finished by another worker, dead-lettered, or held by anybody
# else (rescued from this worker while it was silent) is refused with 55000, before any change.
from pgqueue import check

my_hold = """
CREATE FUNCTION hold_jobs(what text, p_uuid varchar, ids integer[]) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    j job_queue;
    found_ids integer[] := '{}';
    done_before integer := 0;
BEGIN
    PERFORM check_ids(what, ids);
    IF p_uuid IS NULL OR p_uuid !~ '^[0-9a-f]{12}$' THEN
        PERFORM refuse('22023', format('%s: a process uuid is 12 lowercase hex characters, got %L', what, p_uuid));
    END IF;
    FOR j IN SELECT * FROM job_queue WHERE job_id = ANY (ids) ORDER BY job_id FOR UPDATE LOOP
        found_ids := found_ids || j.job_id;
        IF j.job_finished AND EXISTS (SELECT 1 FROM job_attempts a
                                       WHERE a.job_id = j.job_id AND a.process_uuid = p_uuid
                                         AND a.outcome = 'succeeded') THEN
            done_before := done_before + 1;
        ELSIF j.job_finished THEN
            PERFORM refuse('55000', format('%s: job %s was finished by another worker', what, j.job_id));
        ELSIF j.job_dead_timestamp IS NOT NULL THEN
            PERFORM refuse('55000', format('%s: job %s is dead-lettered (%s)', what, j.job_id, j.job_error));
        ELSIF j.job_assigned_process_uuid IS DISTINCT FROM p_uuid THEN
            PERFORM refuse('55000', format('%s: job %s is not held by %s (held by %s): it was rescued from '
                                           'a silent worker, or never claimed', what, j.job_id, p_uuid,
                                           coalesce(j.job_assigned_process_uuid, 'nobody')));
        END IF;
    END LOOP;
    IF cardinality(found_ids) <> cardinality(ids) THEN
        PERFORM refuse('P0002', format('%s: no job %s', what,
                                       (SELECT array_agg(i) FROM unnest(ids) i WHERE i <> ALL (found_ids))));
    END IF;
    IF (SELECT count(DISTINCT pipe_job_id) FROM job_queue WHERE job_id = ANY (ids)) > 1 THEN
        PERFORM refuse('22023', format('%s: jobs %s belong to more than one pipe job', what, ids));
    END IF;
    IF done_before = cardinality(ids) THEN
        RETURN false;
    ELSIF done_before > 0 THEN
        PERFORM refuse('55000', format('%s: of jobs %s, only some were finished before', what, ids));
    END IF;
    RETURN true;
END $$;
"""
verdict = check.hold_jobs(my_hold)
print(verdict)
assert verdict.holds, verdict
