-- Step 03 (lesson 03): the notify/listen queue. A worker never asks for a job: it beats, and a
-- trigger on its heartbeat answers on the worker's own channel, `channel_<uuid>`, with
-- `kill`, `No job found`, or the job itself as JSON.

-- One job = one step of one pipeline for one request.
CREATE TABLE job_queue (
    job_id                        serial PRIMARY KEY,
    request_id                    integer      NOT NULL,
    pipe_id                       integer      NOT NULL REFERENCES pipelines,
    job_payload                   jsonb        NOT NULL DEFAULT '{}',
    job_finished                  boolean      NOT NULL DEFAULT false,
    job_create_timestamp          timestamptz  NOT NULL DEFAULT clock_timestamp(),
    job_finished_timestamp        timestamptz,
    -- who made the job: a process (uuid, name, version) or an outside caller by name only; spelled
    -- as the author's later single-call lab spells it (his notify-listen worker reads none of it)
    job_creater_process_uuid      varchar(12),
    job_creater_process_name      varchar(100) NOT NULL,
    job_creater_process_version   varchar(20),
    -- which process (name + version) must run it, with that step's configuration
    job_process_name              varchar(100) NOT NULL,
    job_process_version           varchar(20)  NOT NULL,
    job_process_config            jsonb        NOT NULL DEFAULT '{}',
    -- which running process took it, and when; NULL = still waiting
    job_assigned_process_uuid     varchar(12),
    job_assign_timestamp          timestamptz
);

-- Failures the workers report (see create_job below for why the worker records them).
CREATE TABLE jobs_failed (
    failure_id     serial PRIMARY KEY,
    job_id         integer     NOT NULL,
    request_id     integer,
    error_message  text        NOT NULL,
    failed_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Not in the original: a job must fit in one NOTIFY. The heartbeat's trigger (below) sends the
-- whole job row as JSON, and a NOTIFY payload must be shorter than 8000 bytes: measured on
-- PostgreSQL 15 and 18, 7999 bytes are sent and 8000 raise "payload string too long" (22023),
-- counted in bytes, not characters. That raise fails the heartbeat, so a bigger row would
-- kill every worker of its process, at every restart, and block every job behind it.
-- create_first_job and create_job therefore refuse such a job where it is made. A row inserted
-- into job_queue by hand still gets through: the original's poisoned queue stays reproducible.

-- The size of a job's row as NOTIFY will send it: row_to_json, once take_job has filled in a
-- 12-character assignee uuid and an assign timestamp. row_to_json prints a timestamp with as
-- few fractional digits as it needs, so this one is given all six (the longest it can print);
-- its offset, +hh:mm, is as long in the worker's time zone as in ours (true of every zone in
-- use today). A row measured here is therefore never longer when the trigger sends it.
CREATE FUNCTION job_notify_bytes(j job_queue) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    j.job_assigned_process_uuid := repeat('0', 12);
    j.job_assign_timestamp := date_trunc('second', clock_timestamp()) + interval '0.999999 second';
    RETURN octet_length(row_to_json(j)::text);
END $$;

-- Raise, naming the size and the limit, when a job could not travel over NOTIFY.
CREATE FUNCTION check_job_fits_notify(j job_queue) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    size integer := job_notify_bytes(j);
BEGIN
    IF size > 7999 THEN
        RAISE EXCEPTION 'the job for % % would be % bytes as NOTIFY sends it, and NOTIFY carries at most 7999 bytes: make its payload smaller',
            j.job_process_name, j.job_process_version, size;
    END IF;
END $$;

-- The first job of a pipeline, made by someone outside the queue (the original's example:
-- a website). Raises when the pipeline has no step 1, or when the job is too big for NOTIFY
-- (the raise rolls the insert back).
CREATE FUNCTION create_first_job(p_request_id integer, p_pipe_id integer, p_payload jsonb,
                                 p_creator varchar DEFAULT 'TheWebsite')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    first pipeline_processes;
    made job_queue;
BEGIN
    SELECT * INTO first FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_order = 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % has no process with process_order 1', p_pipe_id;
    END IF;
    INSERT INTO job_queue (request_id, pipe_id, job_payload, job_creater_process_name,
                           job_process_name, job_process_version, job_process_config)
    VALUES (p_request_id, p_pipe_id, p_payload, p_creator,
            first.process_name, first.process_version, first.process_configuration)
    RETURNING * INTO made;
    PERFORM check_job_fits_notify(made);
    RETURN made.job_id;
END $$;

-- Mark a job taken by a process and the process busy; hand back the job row.
-- As in the original: a procedure. Not in the original: the trailing INOUT parameter, through
-- which the row comes back (the trigger below passes a variable; a bare
-- `CALL take_job(id, uuid)` returns it as a result row).
-- Faithful to the original: the row is handed back even when the UPDATE found the job already
-- taken by someone else (it only assigns jobs that are still unassigned). Under READ
-- COMMITTED, two workers beating at the same moment can therefore both receive one job;
-- the original's answer was to run the heartbeat SERIALIZABLE, which turns the second
-- UPDATE into a serialization failure that the worker retries. Lesson 03 shows both.
CREATE PROCEDURE take_job(p_job_id integer, p_uuid varchar, INOUT job job_queue DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job_queue
       SET job_assigned_process_uuid = p_uuid, job_assign_timestamp = clock_timestamp()
     WHERE job_id = p_job_id AND job_assigned_process_uuid IS NULL;
    UPDATE process_heartbeats SET process_busy = true WHERE process_uuid = p_uuid;
    SELECT * INTO job FROM job_queue WHERE job_id = p_job_id;
END $$;

-- The answer to a heartbeat. NOTIFY is transactional: the worker hears the answer only when
-- the heartbeat commits, and nothing at all if it rolls back.
CREATE FUNCTION answer_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
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
    CALL take_job(job.job_id, NEW.process_uuid, job);  -- fills `job` in
    PERFORM pg_notify(channel, row_to_json(job)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER heartbeat_finds_job
AFTER INSERT OR UPDATE OF last_beat_timestamp ON process_heartbeats
FOR EACH ROW EXECUTE FUNCTION answer_heartbeat();

-- A worker calls this when it finished a job: mark it finished and create the job of the next
-- process of the pipeline, with that process's configuration.
-- As in the original: a procedure, called `CALL create_job(job_id, payload)`. Not in the
-- original: the trailing INOUT parameter, which comes back as the CALL's result row: the new
-- job's id, or NULL when the finished job was the pipeline's last step.
--
-- Where the original differs:
--  * its body did not compile (a missing FROM, missing semicolons, a wrong argument count);
--  * the last process had no successor, so finishing a pipeline always failed: here the
--    chain ends cleanly;
--  * it inserted into jobs_failed and then raised, but the raise rolls that insert back, so
--    nothing was ever recorded. PostgreSQL has no autonomous transactions: here create_job
--    raises (finishing nothing), and the worker records the failure in a new transaction
--    with record_job_failure();
--  * not in the original: it also raises when the new job is too big for NOTIFY (above).
CREATE PROCEDURE create_job(p_job_id integer, p_payload jsonb, INOUT new_job_id integer DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    done job_queue;
    step process_neighbours;
    made job_queue;
BEGIN
    UPDATE job_queue SET job_finished = true, job_finished_timestamp = clock_timestamp()
     WHERE job_id = p_job_id AND NOT job_finished
    RETURNING * INTO done;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist or is already finished', p_job_id;
    END IF;

    SELECT * INTO step FROM process_neighbours
     WHERE pipe_id = done.pipe_id
       AND process_name = done.job_process_name
       AND process_version = done.job_process_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job %: process % % is not a step of pipeline %',
            p_job_id, done.job_process_name, done.job_process_version, done.pipe_id;
    END IF;
    IF step.next_process_order IS NULL THEN
        new_job_id := NULL;
        RETURN;  -- the last step: the request went through the whole pipeline
    END IF;
    IF step.next_process_order <> step.process_order + 1 THEN
        RAISE EXCEPTION 'job %: pipeline % has no process with process_order % (next is %)',
            p_job_id, done.pipe_id, step.process_order + 1, step.next_process_order;
    END IF;

    INSERT INTO job_queue (request_id, pipe_id, job_payload,
                           job_creater_process_uuid, job_creater_process_name,
                           job_creater_process_version,
                           job_process_name, job_process_version, job_process_config)
    SELECT done.request_id, done.pipe_id, p_payload,
           done.job_assigned_process_uuid, done.job_process_name, done.job_process_version,
           pp.process_name, pp.process_version, pp.process_configuration
      FROM pipeline_processes pp
     WHERE pp.pipe_id = done.pipe_id AND pp.process_order = step.next_process_order
    RETURNING * INTO made;
    PERFORM check_job_fits_notify(made);
    new_job_id := made.job_id;
END $$;

CREATE FUNCTION record_job_failure(p_job_id integer, p_message text)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO jobs_failed (job_id, request_id, error_message)
    SELECT p_job_id, (SELECT request_id FROM job_queue WHERE job_id = p_job_id), p_message;
$$;
