-- Step 04 (lesson 04): the single-call queue. A worker makes one call, find_job(), which beats
-- for it and answers `kill`, `No job found`, `Retry, I lost the job race`, or a JSON array of
-- jobs. Steps 05-07 add priorities, gathering, and the chaining of pipelines by order.

-- A request for one pipeline. The pipe jobs of one request share its request_id.
CREATE TABLE pipe_job_queue (
    pipe_job_id                 serial PRIMARY KEY,
    request_id                  integer     NOT NULL,
    pipe_id                     integer     NOT NULL REFERENCES pipelines,
    pipe_job_priority           smallint    NOT NULL DEFAULT 100,  -- LOWER runs first
    pipe_job_finished           boolean     NOT NULL DEFAULT false,
    -- not in the original: when it was made and finished (lesson 07 and `demo` show the gates)
    pipe_job_create_timestamp   timestamptz NOT NULL DEFAULT clock_timestamp(),
    pipe_job_finish_timestamp   timestamptz
);

CREATE TABLE job_queue (
    job_id                       serial PRIMARY KEY,
    pipe_job_id                  integer      NOT NULL REFERENCES pipe_job_queue,
    pipe_id                      integer      NOT NULL REFERENCES pipelines,
    job_payload                  jsonb        NOT NULL DEFAULT '{}',
    job_priority                 smallint     NOT NULL DEFAULT 100,  -- from its pipe job
    job_finished                 boolean,                           -- NULL = not finished
    job_create_timestamp         timestamptz  NOT NULL DEFAULT clock_timestamp(),
    job_assign_timestamp         timestamptz,
    job_finish_timestamp         timestamptz,
    job_assigned_process_uuid    varchar(12),                       -- NULL or '' = available
    job_process_name             varchar(100) NOT NULL,             -- who must run it ...
    job_process_version          varchar(20)  NOT NULL,
    job_process_config           jsonb        NOT NULL DEFAULT '{}',  -- ... and how
    -- who created it, in the author's spelling (job_creater_*): his 2019 worker reads
    -- job_creater_process_name from each job find_job returns
    job_creater_process_uuid     varchar(12),                       -- NULL for an entry job
    job_creater_process_name     varchar(100),
    job_creater_process_version  varchar(20),
    -- the ids of the jobs created together with this one, itself included (its sibling set):
    -- one id for a hand-over, N for a fan-out
    job_set_elements             integer[],
    -- the sibling set of the job that created this one (the original's spelling): the jobs
    -- of one parallel batch each create a job carrying the same array, which is how a
    -- gathering process recognises a batch
    job_creater_set_elements     integer[],
    -- the jobs whose completion created this job: one, or the whole batch a gatherer took
    job_parent_set_elements      integer[]
);

-- Every claim: a set of job ids and who took them. Inserting the same set twice violates the
-- primary key, which is how a worker finds out it lost a race, without SERIALIZABLE.
CREATE TABLE job_queue_claim (
    claimed_job_ids   integer[]   PRIMARY KEY,
    claimer_uuid      varchar(12) NOT NULL,
    claim_timestamp   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The first job of a pipe job: for the pipeline's process_order 1, carrying the pipe job itself
-- as payload. Its sibling set is itself; it has no creator.
-- As in the original: a procedure (the pipe-job trigger CALLs it).
CREATE PROCEDURE create_entry_job(p_pipe_job_id integer, p_pipe_id integer, p_priority smallint,
                                  p_payload jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    first pipeline_processes;
    new_id integer;
BEGIN
    SELECT * INTO first FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_order = 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % has no process with process_order 1', p_pipe_id;
    END IF;
    INSERT INTO job_queue (pipe_job_id, pipe_id, job_payload, job_priority,
                           job_process_name, job_process_version, job_process_config)
    VALUES (p_pipe_job_id, p_pipe_id, p_payload, p_priority,
            first.process_name, first.process_version, first.process_configuration)
    RETURNING job_id INTO new_id;
    UPDATE job_queue SET job_set_elements = ARRAY[new_id] WHERE job_id = new_id;
END $$;

-- A new pipe job starts at once when its pipeline has order 0 or 1. Higher orders wait for
-- their request's lower order (step 07 adds that part).
CREATE FUNCTION pipe_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    this_order smallint;
BEGIN
    IF NEW.pipe_job_finished THEN
        RAISE EXCEPTION 'pipe job % is inserted already finished: nothing would ever run it',
            NEW.pipe_job_id;
    END IF;
    SELECT pipe_order INTO this_order FROM pipelines WHERE pipe_id = NEW.pipe_id;
    IF this_order <= 1 THEN
        CALL create_entry_job(NEW.pipe_job_id, NEW.pipe_id, NEW.pipe_job_priority, to_jsonb(NEW));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER pipe_job_starts
AFTER INSERT ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_changed();

-- Mark jobs finished, refusing ids that do not exist, are finished, or span pipe jobs.
CREATE FUNCTION finish_jobs(job_ids integer[]) RETURNS SETOF job_queue LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF job_ids IS NULL OR cardinality(job_ids) = 0 THEN
        RAISE EXCEPTION 'no job ids given';
    END IF;
    RETURN QUERY
        UPDATE job_queue SET job_finished = true, job_finish_timestamp = clock_timestamp()
         WHERE job_id = ANY (job_ids) AND job_finished IS NULL
        RETURNING *;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> cardinality(job_ids) THEN
        RAISE EXCEPTION 'jobs % are not all existing, unfinished jobs (% of % were)',
            job_ids, n, cardinality(job_ids);
    END IF;
    IF (SELECT count(DISTINCT pipe_job_id) FROM job_queue WHERE job_id = ANY (job_ids)) > 1 THEN
        RAISE EXCEPTION 'jobs % belong to more than one pipe job', job_ids;
    END IF;
END $$;

-- A worker finished `job_ids` and hands work to the next process: one new job per element of
-- the JSON array `payloads` (one element: a hand-over; N: a fan-out to N parallel jobs).
-- Raises, finishing nothing, on bad input or when there is no next process.
-- As in the original: a procedure, called `CALL create_jobs(ARRAY[ids], payloads)`. Not in the
-- original: the trailing INOUT parameter, which comes back as the CALL's result row: the new ids.
CREATE PROCEDURE create_jobs(job_ids integer[], payloads jsonb, INOUT new_job_ids integer[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    done job_queue;
    next pipeline_processes;
BEGIN
    IF payloads IS NULL OR jsonb_typeof(payloads) <> 'array' THEN
        RAISE EXCEPTION 'payloads must be a JSON array, got %', coalesce(jsonb_typeof(payloads), 'NULL');
    END IF;
    IF jsonb_array_length(payloads) = 0 THEN
        RAISE EXCEPTION 'payloads is an empty array: no job to create';
    END IF;
    SELECT * INTO done FROM finish_jobs(job_ids) ORDER BY job_id LIMIT 1;

    SELECT pp.* INTO next
      FROM pipeline_processes this
      JOIN pipeline_processes pp ON pp.pipe_id = this.pipe_id
                                AND pp.process_order = this.process_order + 1
     WHERE this.pipe_id = done.pipe_id AND this.process_name = done.job_process_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % has no process after %: the last step calls finish_pipe',
            done.pipe_id, done.job_process_name;
    END IF;

    WITH made AS (
        INSERT INTO job_queue (pipe_job_id, pipe_id, job_payload, job_priority,
                               job_process_name, job_process_version, job_process_config,
                               job_creater_process_uuid, job_creater_process_name,
                               job_creater_process_version,
                               job_creater_set_elements, job_parent_set_elements)
        SELECT done.pipe_job_id, done.pipe_id, element, pj.pipe_job_priority,
               next.process_name, next.process_version, next.process_configuration,
               done.job_assigned_process_uuid, done.job_process_name, done.job_process_version,
               done.job_set_elements, (SELECT array_agg(j ORDER BY j) FROM unnest(job_ids) j)
          FROM jsonb_array_elements(payloads) WITH ORDINALITY AS p(element, n)
          -- the pipe job's priority now, not the finished job's: a priority changed while
          -- the request runs (lesson 05) holds for its later steps too
          JOIN pipe_job_queue pj ON pj.pipe_job_id = done.pipe_job_id
         ORDER BY n
        RETURNING job_id
    )
    SELECT array_agg(job_id ORDER BY job_id) INTO new_job_ids FROM made;
    UPDATE job_queue SET job_set_elements = new_job_ids WHERE job_id = ANY (new_job_ids);
END $$;

-- The last process of a pipeline: finish its jobs and the pipe job itself.
-- As in the original: a procedure, called `CALL finish_pipe(ARRAY[ids], 'pipe_job_id')`.
CREATE PROCEDURE finish_pipe(job_ids integer[], p_pipe_job_id integer)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM job_queue WHERE job_id = ANY (job_ids)
                                         AND pipe_job_id <> p_pipe_job_id) THEN
        RAISE EXCEPTION 'jobs % do not all belong to pipe job %', job_ids, p_pipe_job_id;
    END IF;
    PERFORM finish_jobs(job_ids);
    UPDATE pipe_job_queue
       SET pipe_job_finished = true, pipe_job_finish_timestamp = clock_timestamp()
     WHERE pipe_job_id = p_pipe_job_id AND NOT pipe_job_finished;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipe job % does not exist or is already finished', p_pipe_job_id;
    END IF;
END $$;

-- The one call a worker makes. multi_job = true is for a gathering process (step 06).
CREATE FUNCTION find_job(p_uuid varchar, p_server varchar, p_name varchar, p_version varchar,
                         multi_job boolean DEFAULT false)
RETURNS varchar LANGUAGE plpgsql AS $$
DECLARE
    job job_queue;
BEGIN
    CALL send_heartbeat(p_uuid, p_server, p_name, p_version);
    IF (SELECT process_kill_switch FROM process_heartbeats WHERE process_uuid = p_uuid) THEN
        RETURN 'kill';
    END IF;
    IF multi_job THEN
        RAISE EXCEPTION 'gathering (multi_job) arrives in step 06';
    END IF;

    -- The oldest of the best-priority jobs for this process. FOR UPDATE (without SKIP LOCKED)
    -- makes every other caller queue behind this row's lock; once this transaction commits,
    -- PostgreSQL re-checks the row, finds it taken, and hands the next caller the next row of
    -- its sort. (Every call reads the whole of job_queue, finished jobs included, and sorts
    -- this process's waiting rows: lesson 04 shows the plan and measures it.)
    SELECT * INTO job FROM job_queue
     WHERE coalesce(job_assigned_process_uuid, '') = ''
       AND job_finished IS NULL
       AND job_process_name = p_name AND job_process_version = p_version
     ORDER BY job_priority, job_create_timestamp
     LIMIT 1
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'No job found';
    END IF;

    BEGIN
        INSERT INTO job_queue_claim (claimed_job_ids, claimer_uuid) VALUES (ARRAY[job.job_id], p_uuid);
    EXCEPTION WHEN unique_violation THEN
        RETURN 'Retry, I lost the job race';
    END;
    UPDATE job_queue SET job_assigned_process_uuid = p_uuid, job_assign_timestamp = clock_timestamp()
     WHERE job_id = job.job_id
    RETURNING * INTO job;
    UPDATE process_heartbeats SET process_busy = true WHERE process_uuid = p_uuid;
    RETURN json_build_array(row_to_json(job))::text;
END $$;
