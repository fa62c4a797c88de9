-- Step 04 (hardened): the single-call queue, hardened. The same tables, columns and calls as
-- sql/single_call/04_find_job.sql, so that `diff` shows what changed; every change is marked
-- `-- hardened:`. A worker still makes one call, find_job(), which beats for it and answers
-- `kill`, `No job found`, or a JSON array of jobs. What is new:
--   * a claim is `FOR UPDATE SKIP LOCKED` on a partial index of waiting jobs, committed at once:
--     the job is leased to the worker's uuid, no transaction stays open while it runs, and a
--     claim costs the same however long the queue is; find_job can claim a batch of N jobs;
--   * a lease lives as long as its worker's heartbeat: every find_job first rescues the jobs of
--     workers silent for longer than `rescue_after` (so a fleet of plain workers recovers from a
--     SIGKILL with nothing else to run), and a job can therefore run twice: finishing a job you
--     no longer hold is refused, finishing it twice is a no-op;
--   * a failed attempt waits (exponential backoff) and is tried again, up to `max_attempts`; then
--     the job is dead-lettered with its error;
--   * job_attempts records every attempt: who, when, and how it ended;
--   * NOTIFY only wakes workers up (a channel per process name and version, the job id as the
--     only payload); a worker polls too, so a lost notification costs a poll, not a job;
--   * every function checks its input and says what was wrong, with the value.

-- hardened: the knobs, one row. A test or a lesson turns them; workers read them.
CREATE TABLE queue_settings (
    only_row      boolean  PRIMARY KEY DEFAULT true CHECK (only_row),
    -- a worker silent for longer than this has lost its jobs; workers beat while they work, at
    -- least twice within it (pgqueue.queues.hardened)
    rescue_after  interval NOT NULL DEFAULT '10 seconds' CHECK (rescue_after > interval '0'),
    max_attempts  smallint NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    -- attempt n waits backoff_base * 2^(n-1) before the next, at most backoff_cap
    backoff_base  interval NOT NULL DEFAULT '1 second' CHECK (backoff_base >= interval '0'),
    backoff_cap   interval NOT NULL DEFAULT '5 minutes' CHECK (backoff_cap >= backoff_base)
);
INSERT INTO queue_settings DEFAULT VALUES;

CREATE TABLE pipe_job_queue (
    pipe_job_id                 serial PRIMARY KEY,
    request_id                  integer     NOT NULL,
    pipe_id                     integer     NOT NULL REFERENCES pipelines,
    pipe_job_priority           smallint    NOT NULL DEFAULT 100,  -- LOWER runs first
    pipe_job_finished           boolean     NOT NULL DEFAULT false,
    pipe_job_create_timestamp   timestamptz NOT NULL DEFAULT clock_timestamp(),
    pipe_job_finish_timestamp   timestamptz
);

CREATE TABLE job_queue (
    job_id                       serial PRIMARY KEY,
    pipe_job_id                  integer      NOT NULL REFERENCES pipe_job_queue,
    pipe_id                      integer      NOT NULL REFERENCES pipelines,
    job_payload                  jsonb        NOT NULL DEFAULT '{}',
    job_priority                 smallint     NOT NULL DEFAULT 100,
    job_finished                 boolean,                           -- NULL = not finished
    job_create_timestamp         timestamptz  NOT NULL DEFAULT clock_timestamp(),
    job_assign_timestamp         timestamptz,
    job_finish_timestamp         timestamptz,
    -- hardened: NULL is the only "nobody" ('' was a second one)
    job_assigned_process_uuid    varchar(12)  CHECK (job_assigned_process_uuid <> ''),
    job_process_name             varchar(100) NOT NULL,
    job_process_version          varchar(20)  NOT NULL,
    job_process_config           jsonb        NOT NULL DEFAULT '{}',
    job_creater_process_uuid     varchar(12),  -- the author's spelling, as in single-call
    job_creater_process_name     varchar(100),
    job_creater_process_version  varchar(20),
    job_set_elements             integer[],
    job_creater_set_elements     integer[],
    job_parent_set_elements      integer[],
    -- hardened: attempts so far, when the next may start, and the end of a job given up on
    job_attempts                 smallint     NOT NULL DEFAULT 0,
    job_run_after                timestamptz  NOT NULL DEFAULT clock_timestamp(),
    job_dead_timestamp           timestamptz,
    job_error                    text
);

-- hardened: the waiting jobs of a process, in the order find_job serves them. Partial: finished,
-- leased and dead jobs are not in it, so it stays as small as the queue of waiting work.
CREATE INDEX job_queue_waiting
    ON job_queue (job_process_name, job_process_version, job_priority, job_create_timestamp)
 WHERE job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL;

-- hardened: the leased jobs, which every find_job looks through for lost workers
CREATE INDEX job_queue_leased ON job_queue (job_assigned_process_uuid)
 WHERE job_assigned_process_uuid IS NOT NULL AND job_finished IS NULL;

-- hardened: a job's parents, to find what a finished step made (finishing twice returns it)
CREATE INDEX job_queue_parents ON job_queue USING gin (job_parent_set_elements);

-- hardened: every new job asks for its pipe job's first dead job (born_into_a_dead_pipe_job).
-- Without an index of the dead jobs each insert read the whole table: 20,000 jobs made in one
-- INSERT took 26 s, the next 20,000 70 s. With job_id in it, the index answers the question's
-- ORDER BY job_id LIMIT 1 too, so the planner has no reason to walk the primary key instead
-- (with the index on pipe_job_id alone it did: 20,000 jobs made in one INSERT beside a dead job
-- took 30 s, 2 s now). Dead jobs are few: the index stays tiny.
CREATE INDEX job_queue_dead ON job_queue (pipe_job_id, job_id) WHERE job_dead_timestamp IS NOT NULL;

-- hardened: a pipe job's jobs, which a dead job ends (dead_job_ends_pipe_job)
CREATE INDEX job_queue_pipe_job ON job_queue (pipe_job_id);

-- hardened: every attempt at a job. A job rescued from a lost worker and run again shows two
-- attempts, so duplicate executions are visible and countable.
CREATE TABLE job_attempts (
    attempt_id        bigserial   PRIMARY KEY,
    job_id            integer     NOT NULL REFERENCES job_queue,
    process_uuid      varchar(12) NOT NULL,
    attempt_started   timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempt_ended     timestamptz,
    outcome           text        CHECK (outcome IN ('succeeded', 'failed', 'rescued')),
    error             text,
    CHECK ((outcome IS NULL) = (attempt_ended IS NULL))
);
-- at most one attempt of a job runs at a time
CREATE UNIQUE INDEX job_attempts_running ON job_attempts (job_id) WHERE attempt_ended IS NULL;

-- hardened: a refusal, with PostgreSQL's code for the kind of mistake, so a caller (and a
-- test) can tell bad input (22023), a missing thing (P0002) and a job in the wrong state
-- (55000) apart.
CREATE FUNCTION refuse(code text, message text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message;
END $$;

-- hardened: the checks every call makes of the ids it is given.
CREATE FUNCTION check_ids(what text, ids integer[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        PERFORM refuse('22023', format('%s: no job ids given', what));
    END IF;
    IF array_position(ids, NULL) IS NOT NULL THEN
        PERFORM refuse('22023', format('%s: job ids %s hold a NULL', what, ids));
    END IF;
    IF cardinality(ids) <> (SELECT count(DISTINCT i) FROM unnest(ids) i) THEN
        PERFORM refuse('22023', format('%s: job ids %s name a job twice', what, ids));
    END IF;
    -- as many as one call can claim (batch_size) or make (payloads): a set is never larger
    IF cardinality(ids) > 1000 THEN
        PERFORM refuse('22023', format('%s: at most 1000 job ids per call, got %s (from %s to %s)', what,
                                       cardinality(ids), (SELECT min(i) FROM unnest(ids) i),
                                       (SELECT max(i) FROM unnest(ids) i)));
    END IF;
END $$;

-- hardened: a process name, version or server name is 1 to `longest` characters with no
-- control character (a tab or a newline would garble every listing of workers). The table's
-- varchar(n) would refuse a long one too, but without saying which value.
CREATE FUNCTION check_name(what text, label text, value varchar, longest integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(value, '') = '' THEN
        PERFORM refuse('22023', format('%s: %s must not be empty, got %L', what, label, value));
    END IF;
    IF char_length(value) > longest THEN
        PERFORM refuse('22023', format('%s: %s is at most %s characters, got %s: %L', what, label, longest,
                                       char_length(value), left(value, 40) || '...'));
    END IF;
    IF value ~ '[[:cntrl:]]' THEN
        -- shown as JSON, so that the control character is seen, escaped
        PERFORM refuse('22023', format('%s: %s holds a control character: %s', what, label,
                                       to_jsonb(value::text)));
    END IF;
END $$;

-- hardened: the channel that wakes the workers of one process name and version. A hash keeps
-- it a plain identifier whatever the names hold (channels are at most 63 bytes).
CREATE FUNCTION wake_channel(p_name varchar, p_version varchar) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 'pgqueue_wake_' || left(md5(p_name || '/' || p_version), 16)
$$;

-- hardened: new jobs wake the workers that may take them: one NOTIFY per process and
-- statement, the lowest new job id as payload (a wake-up, not the job).
CREATE FUNCTION wake_workers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(wake_channel(job_process_name, job_process_version), min(job_id)::text)
       FROM new_jobs
      GROUP BY job_process_name, job_process_version;
    RETURN NULL;
END $$;

CREATE TRIGGER new_jobs_wake_workers
AFTER INSERT ON job_queue REFERENCING NEW TABLE AS new_jobs
FOR EACH STATEMENT EXECUTE FUNCTION wake_workers();

-- The first job of a pipe job, as in the original.
CREATE PROCEDURE create_entry_job(p_pipe_job_id integer, p_pipe_id integer, p_priority smallint,
                                  p_payload jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    first pipeline_processes;
    new_id integer;
BEGIN
    SELECT * INTO first FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_order = 1;
    IF NOT FOUND THEN
        PERFORM refuse('P0002', format('pipeline %s has no process with process_order 1', p_pipe_id));
    END IF;
    INSERT INTO job_queue (pipe_job_id, pipe_id, job_payload, job_priority,
                           job_process_name, job_process_version, job_process_config)
    VALUES (p_pipe_job_id, p_pipe_id, p_payload, p_priority,
            first.process_name, first.process_version, first.process_configuration)
    RETURNING job_id INTO new_id;
    UPDATE job_queue SET job_set_elements = ARRAY[new_id] WHERE job_id = new_id;
END $$;

-- A new pipe job starts at once when its pipeline has order 0 or 1 (step 07 chains the others).
CREATE FUNCTION pipe_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    this_order smallint;
BEGIN
    IF NEW.pipe_job_finished THEN
        PERFORM refuse('22023', format('pipe job %s is inserted already finished: nothing would ever run it',
                                       NEW.pipe_job_id));
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

-- hardened: a new pipe job is checked before it is stored: every column given, and a pipeline
-- that exists with whole steps (1, 2, 3 ... none missing), so that no pipe job waits for a
-- step that is not there. The constraints would refuse some of these too, without the value.
CREATE FUNCTION pipe_job_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orders smallint[];
BEGIN
    IF NEW.pipe_job_id IS NULL OR NEW.request_id IS NULL OR NEW.pipe_id IS NULL
       OR NEW.pipe_job_priority IS NULL OR NEW.pipe_job_finished IS NULL THEN
        PERFORM refuse('22023', format('new pipe job: pipe_job_id, request_id, pipe_id, pipe_job_priority and '
                                       'pipe_job_finished must not be NULL, got %s, %s, %s, %s, %s',
                                       coalesce(NEW.pipe_job_id::text, 'NULL'), coalesce(NEW.request_id::text, 'NULL'),
                                       coalesce(NEW.pipe_id::text, 'NULL'),
                                       coalesce(NEW.pipe_job_priority::text, 'NULL'),
                                       coalesce(NEW.pipe_job_finished::text, 'NULL')));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pipelines WHERE pipe_id = NEW.pipe_id) THEN
        PERFORM refuse('P0002', format('new pipe job: no pipeline %s', NEW.pipe_id));
    END IF;
    SELECT array_agg(process_order ORDER BY process_order) INTO orders
      FROM pipeline_processes WHERE pipe_id = NEW.pipe_id;
    IF orders IS NULL THEN
        PERFORM refuse('P0002', format('new pipe job: pipeline %s has no process with process_order 1',
                                       NEW.pipe_id));
    END IF;
    IF orders <> ARRAY(SELECT generate_series(1, cardinality(orders))::smallint) THEN
        PERFORM refuse('22023', format('new pipe job: pipeline %s has a gap in its process orders %s: its jobs '
                                       'would stop at the missing step', NEW.pipe_id, orders));
    END IF;
    RETURN NEW;
END $$;

-- before pipe_job_takes_turn (step 07): triggers of one kind fire in the order of their names
CREATE TRIGGER pipe_job_checked
BEFORE INSERT ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_checked();

-- hardened: give the jobs of workers that went silent back to the queue. It runs inside every
-- find_job, so no extra process has to. A job past its attempts is dead-lettered instead (a
-- job that kills every worker that runs it must not kill them all). Returns how many it freed.
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

-- hardened: lock jobs `ids` held by `p_uuid` and running, in id order (two callers never wait
-- in a circle); refuse, changing nothing, when one is unknown, not running, or not theirs.
-- Returns false when every one of them already finished with a succeeded attempt of
-- `p_uuid`: the caller finished them before (a repeat after a lost connection), a no-op.
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

-- hardened: jobs `ids` of `p_uuid` end: finished, their attempts succeeded.
CREATE FUNCTION finish_jobs(p_uuid varchar, ids integer[]) RETURNS SETOF job_queue LANGUAGE plpgsql AS $$
BEGIN
    UPDATE job_attempts SET attempt_ended = clock_timestamp(), outcome = 'succeeded'
     WHERE job_id = ANY (ids) AND attempt_ended IS NULL AND process_uuid = p_uuid;
    RETURN QUERY
        UPDATE job_queue SET job_finished = true, job_finish_timestamp = clock_timestamp()
         WHERE job_id = ANY (ids)
        RETURNING *;
END $$;

-- A worker finished `job_ids` and hands work to the next process: one new job per element of
-- the JSON array `payloads`. hardened: the caller names itself, and must hold the jobs; a
-- repeat of a call that succeeded returns the jobs it made then, and changes nothing.
CREATE PROCEDURE create_jobs(p_uuid varchar, job_ids integer[], payloads jsonb,
                             INOUT new_job_ids integer[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    done job_queue;
    next pipeline_processes;
    parents integer[] := (SELECT array_agg(j ORDER BY j) FROM unnest(job_ids) j);
BEGIN
    IF payloads IS NULL OR jsonb_typeof(payloads) <> 'array' THEN
        PERFORM refuse('22023', format('create_jobs: payloads must be a JSON array, got %s',
                                       coalesce(jsonb_typeof(payloads) || ' ' || left(payloads::text, 60),
                                                'NULL')));
    END IF;
    IF jsonb_array_length(payloads) = 0 OR jsonb_array_length(payloads) > 1000 THEN
        PERFORM refuse('22023', format('create_jobs: payloads must hold 1 to 1000 jobs, got %s',
                                       jsonb_array_length(payloads)));
    END IF;
    IF NOT hold_jobs('create_jobs', p_uuid, job_ids) THEN
        SELECT array_agg(job_id ORDER BY job_id) INTO new_job_ids
          FROM job_queue WHERE job_parent_set_elements = parents;
        RETURN;
    END IF;
    SELECT * INTO done FROM job_queue WHERE job_id = parents[1];
    SELECT pp.* INTO next
      FROM pipeline_processes this
      JOIN pipeline_processes pp ON pp.pipe_id = this.pipe_id
                                AND pp.process_order = this.process_order + 1
     WHERE this.pipe_id = done.pipe_id AND this.process_name = done.job_process_name;
    IF NOT FOUND THEN
        PERFORM refuse('55000', format('create_jobs: pipeline %s has no process after %s: the last step '
                                       'calls finish_pipe', done.pipe_id, done.job_process_name));
    END IF;
    PERFORM finish_jobs(p_uuid, job_ids);

    WITH made AS (
        INSERT INTO job_queue (pipe_job_id, pipe_id, job_payload, job_priority,
                               job_process_name, job_process_version, job_process_config,
                               job_creater_process_uuid, job_creater_process_name,
                               job_creater_process_version,
                               job_creater_set_elements, job_parent_set_elements)
        SELECT done.pipe_job_id, done.pipe_id, element, pj.pipe_job_priority,
               next.process_name, next.process_version, next.process_configuration,
               p_uuid, done.job_process_name, done.job_process_version,
               done.job_set_elements, parents
          FROM jsonb_array_elements(payloads) WITH ORDINALITY AS p(element, n)
          JOIN pipe_job_queue pj ON pj.pipe_job_id = done.pipe_job_id
         ORDER BY n
        RETURNING job_id
    )
    SELECT array_agg(job_id ORDER BY job_id) INTO new_job_ids FROM made;
    UPDATE job_queue SET job_set_elements = new_job_ids WHERE job_id = ANY (new_job_ids);
END $$;

-- hardened: refuse, naming it, the first of jobs `ids` that is not of its pipeline's last step:
-- finishing the pipe job there would skip the steps after it (finish_pipe and finish_pipes ask).
CREATE FUNCTION refuse_early_steps(what text, ids integer[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    early record;
BEGIN
    SELECT j.job_id, j.pipe_id, j.job_process_name INTO early
      FROM job_queue j
      JOIN pipeline_processes this ON this.pipe_id = j.pipe_id AND this.process_name = j.job_process_name
     WHERE j.job_id = ANY (ids)
       AND EXISTS (SELECT 1 FROM pipeline_processes later
                    WHERE later.pipe_id = this.pipe_id AND later.process_order > this.process_order)
     ORDER BY j.job_id LIMIT 1;
    IF FOUND THEN
        PERFORM refuse('55000', format('%s: job %s is a job of %s, not of the last step of pipeline %s: '
                                       'it hands over with create_jobs', what, early.job_id,
                                       early.job_process_name, early.pipe_id));
    END IF;
END $$;

-- The last process of a pipeline: finish its jobs and the pipe job itself. hardened: the
-- caller names itself and must hold the jobs; finishing twice is a no-op.
CREATE PROCEDURE finish_pipe(p_uuid varchar, job_ids integer[], p_pipe_job_id integer)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_pipe_job_id IS NULL THEN
        PERFORM refuse('22023', 'finish_pipe: no pipe job id given');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id) THEN
        PERFORM refuse('P0002', format('finish_pipe: no pipe job %s', p_pipe_job_id));
    END IF;
    IF EXISTS (SELECT 1 FROM job_queue WHERE job_id = ANY (job_ids) AND pipe_job_id <> p_pipe_job_id) THEN
        PERFORM refuse('22023', format('finish_pipe: jobs %s do not all belong to pipe job %s',
                                       job_ids, p_pipe_job_id));
    END IF;
    IF NOT hold_jobs('finish_pipe', p_uuid, job_ids) THEN
        RETURN;
    END IF;
    -- hardened: only the last step finishes the pipe job (an earlier one would skip the rest)
    PERFORM refuse_early_steps('finish_pipe', job_ids);
    PERFORM finish_jobs(p_uuid, job_ids);
    UPDATE pipe_job_queue
       SET pipe_job_finished = true, pipe_job_finish_timestamp = clock_timestamp()
     WHERE pipe_job_id = p_pipe_job_id AND NOT pipe_job_finished;
END $$;

-- hardened: the last-step jobs of a batch, of any pipe jobs, finished in one call: what
-- finish_pipe does for each of their pipe jobs, with the same refusals, but set by set: one
-- round trip, one commit and one statement per table for the whole batch. A worker that
-- claimed 50 jobs paid 50 commits to finish them; bench measured its throughput at about the
-- single-job loop's (lesson 14). A repeat of a call that succeeded changes nothing.
CREATE PROCEDURE finish_pipes(p_uuid varchar, job_ids integer[])
LANGUAGE plpgsql AS $$
DECLARE
    j job_queue;
    found_ids integer[] := '{}';
    todo integer[] := '{}';
    mixed integer;
BEGIN
    PERFORM check_ids('finish_pipes', job_ids);
    IF p_uuid IS NULL OR p_uuid !~ '^[0-9a-f]{12}$' THEN
        PERFORM refuse('22023', format('finish_pipes: a process uuid is 12 lowercase hex characters, got %L',
                                       p_uuid));
    END IF;
    -- as hold_jobs: lock in id order (two callers never wait in a circle), refuse on the first
    -- job this caller may not finish; the ones it finished before are left as they are
    FOR j IN SELECT * FROM job_queue WHERE job_id = ANY (job_ids) ORDER BY job_id FOR UPDATE LOOP
        found_ids := found_ids || j.job_id;
        IF j.job_finished THEN
            IF NOT EXISTS (SELECT 1 FROM job_attempts a WHERE a.job_id = j.job_id AND a.process_uuid = p_uuid
                                                          AND a.outcome = 'succeeded') THEN
                PERFORM refuse('55000', format('finish_pipes: job %s was finished by another worker', j.job_id));
            END IF;
        ELSIF j.job_dead_timestamp IS NOT NULL THEN
            PERFORM refuse('55000', format('finish_pipes: job %s is dead-lettered (%s)', j.job_id, j.job_error));
        ELSIF j.job_assigned_process_uuid IS DISTINCT FROM p_uuid THEN
            PERFORM refuse('55000', format('finish_pipes: job %s is not held by %s (held by %s): it was rescued '
                                           'from a silent worker, or never claimed', j.job_id, p_uuid,
                                           coalesce(j.job_assigned_process_uuid, 'nobody')));
        ELSE
            todo := todo || j.job_id;
        END IF;
    END LOOP;
    IF cardinality(found_ids) <> cardinality(job_ids) THEN
        PERFORM refuse('P0002', format('finish_pipes: no job %s', (SELECT array_agg(i) FROM unnest(job_ids) i
                                                                   WHERE i <> ALL (found_ids))));
    END IF;
    -- a pipe job is finished whole or not at all, as by finish_pipe
    SELECT pipe_job_id INTO mixed FROM job_queue WHERE job_id = ANY (job_ids)
     GROUP BY pipe_job_id HAVING bool_or(job_id = ANY (todo)) AND NOT bool_and(job_id = ANY (todo))
     ORDER BY pipe_job_id LIMIT 1;
    IF FOUND THEN
        PERFORM refuse('55000', format('finish_pipes: of the jobs of pipe job %s in %s, only some were finished '
                                       'before', mixed, job_ids));
    END IF;
    IF cardinality(todo) = 0 THEN
        RETURN;
    END IF;
    PERFORM refuse_early_steps('finish_pipes', todo);
    PERFORM finish_jobs(p_uuid, todo);
    -- the order gate's turns (step 07), taken in request order: two batches that share requests
    -- take them in one order, never in a circle
    PERFORM pg_advisory_xact_lock(hashtext('order gate'), request_id)
       FROM (SELECT DISTINCT pj.request_id FROM pipe_job_queue pj
              WHERE pj.pipe_job_id IN (SELECT pipe_job_id FROM job_queue WHERE job_id = ANY (todo))
              ORDER BY pj.request_id) r;
    UPDATE pipe_job_queue
       SET pipe_job_finished = true, pipe_job_finish_timestamp = clock_timestamp()
     WHERE pipe_job_id IN (SELECT pipe_job_id FROM job_queue WHERE job_id = ANY (todo))
       AND NOT pipe_job_finished;
END $$;

-- hardened: the work on `job_ids` failed with `p_error`. Each attempt ends `failed`; a job with
-- attempts left waits backoff_base * 2^(attempts - 1) (at most backoff_cap), then anyone may
-- claim it again; a job out of attempts is dead-lettered with its error. An exception in a
-- worker's handler lands here: a failed attempt, not a dead worker.
CREATE PROCEDURE fail_jobs(p_uuid varchar, job_ids integer[], p_error text)
LANGUAGE plpgsql AS $$
DECLARE
    s queue_settings;
BEGIN
    IF p_error IS NULL OR p_error = '' THEN
        PERFORM refuse('22023', 'fail_jobs: say what went wrong (p_error is empty)');
    END IF;
    IF NOT hold_jobs('fail_jobs', p_uuid, job_ids) THEN
        PERFORM refuse('55000', format('fail_jobs: jobs %s were finished, they cannot fail now', job_ids));
    END IF;
    SELECT * INTO s FROM queue_settings;
    UPDATE job_attempts SET attempt_ended = clock_timestamp(), outcome = 'failed', error = left(p_error, 2000)
     WHERE job_id = ANY (job_ids) AND attempt_ended IS NULL;
    UPDATE job_queue
       SET job_assigned_process_uuid = NULL, job_assign_timestamp = NULL,
           job_error = left(p_error, 2000),
           job_run_after = clock_timestamp()
                           -- a larger power overflows the interval (a job with max_attempts in the
                           -- hundreds); 2^40 times a base of more than a trillionth of the cap is
                           -- past the cap already
                           + least(s.backoff_cap, s.backoff_base * power(2, least(job_attempts - 1, 40))),
           job_dead_timestamp = CASE WHEN job_attempts >= s.max_attempts THEN clock_timestamp() END
     WHERE job_id = ANY (job_ids);
END $$;

-- hardened: lease jobs `ids` to `p_uuid`: assigned, one more attempt each, the attempt
-- recorded. The rows are locked already (claim_jobs, claim_set). The jobs, as find_job answers.
CREATE FUNCTION lease_jobs(p_uuid varchar, ids integer[]) RETURNS json LANGUAGE sql AS $$
    WITH taken AS (
        UPDATE job_queue j
           SET job_assigned_process_uuid = p_uuid, job_assign_timestamp = clock_timestamp(),
               job_attempts = j.job_attempts + 1
         WHERE j.job_id = ANY (ids)
        RETURNING j.*
    ), tried AS (
        INSERT INTO job_attempts (job_id, process_uuid) SELECT job_id, p_uuid FROM taken
    )
    SELECT json_agg(row_to_json(taken) ORDER BY job_priority, job_create_timestamp, job_id) FROM taken
$$;

-- hardened: claim up to `batch_size` waiting jobs of a process, as a lease. SKIP LOCKED passes
-- over a row another caller is claiming instead of waiting for it, and the partial index hands
-- the rows over in order, so a claim costs the same whatever the length of the queue. The
-- claim commits with find_job: no transaction stays open while the jobs run.
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

-- hardened: claim a whole parallel set for a gathering process (step 06 writes it).
CREATE FUNCTION claim_set(p_uuid varchar, p_name varchar, p_version varchar) RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refuse('0A000', 'find_job: gathering (multi_job) arrives in step 06');
END $$;

-- hardened: a dead job ends its pipe job. Its siblings' jobs would otherwise wait forever: a
-- gatherer takes a parallel set only once every member finished, and a dead member never will.
-- So the jobs of that pipe job still waiting are dead-lettered with it, and so is every job a
-- running sibling hands over later. Both sides take one lock per pipe job first, so a
-- hand-over committing while a job dies cannot slip between them.
CREATE FUNCTION dead_job_ends_pipe_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pipe job ends'), NEW.pipe_job_id);
    UPDATE job_queue
       SET job_dead_timestamp = clock_timestamp(),
           job_error = format('job %s of pipe job %s was dead-lettered', NEW.job_id, NEW.pipe_job_id)
     WHERE pipe_job_id = NEW.pipe_job_id AND job_id <> NEW.job_id
       AND job_assigned_process_uuid IS NULL AND job_finished IS NULL AND job_dead_timestamp IS NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER dead_job_ends_pipe_job
AFTER UPDATE OF job_dead_timestamp ON job_queue
FOR EACH ROW WHEN (OLD.job_dead_timestamp IS NULL AND NEW.job_dead_timestamp IS NOT NULL)
EXECUTE FUNCTION dead_job_ends_pipe_job();

CREATE FUNCTION born_into_a_dead_pipe_job() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    dead integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pipe job ends'), NEW.pipe_job_id);
    SELECT job_id INTO dead FROM job_queue
     WHERE pipe_job_id = NEW.pipe_job_id AND job_dead_timestamp IS NOT NULL ORDER BY job_id LIMIT 1;
    IF FOUND THEN
        NEW.job_dead_timestamp := clock_timestamp();
        NEW.job_error := format('job %s of pipe job %s was dead-lettered', dead, NEW.pipe_job_id);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER born_into_a_dead_pipe_job
BEFORE INSERT ON job_queue
FOR EACH ROW EXECUTE FUNCTION born_into_a_dead_pipe_job();

-- The one call a worker makes. multi_job = true is for a gathering process (step 06).
-- hardened: `batch_size` jobs at most per call (single mode); the input is checked; lost
-- workers' jobs are rescued first.
CREATE FUNCTION find_job(p_uuid varchar, p_server varchar, p_name varchar, p_version varchar,
                         multi_job boolean DEFAULT false, batch_size integer DEFAULT 1)
RETURNS varchar LANGUAGE plpgsql AS $$
DECLARE
    jobs json;
BEGIN
    IF p_uuid IS NULL OR p_uuid !~ '^[0-9a-f]{12}$' THEN
        PERFORM refuse('22023', format('find_job: a process uuid is 12 lowercase hex characters, got %L', p_uuid));
    END IF;
    PERFORM check_name('find_job', 'server name', p_server, 100);
    PERFORM check_name('find_job', 'process name', p_name, 100);
    PERFORM check_name('find_job', 'process version', p_version, 20);
    IF multi_job IS NULL OR batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 1000 THEN
        PERFORM refuse('22023', format('find_job: batch_size must be 1 to 1000 and multi_job true or false, '
                                       'got %s and %s', coalesce(batch_size::text, 'NULL'),
                                       coalesce(multi_job::text, 'NULL')));
    END IF;
    CALL send_heartbeat(p_uuid, p_server, p_name, p_version);
    IF (SELECT process_kill_switch FROM process_heartbeats WHERE process_uuid = p_uuid) THEN
        RETURN 'kill';
    END IF;
    PERFORM rescue_jobs();
    IF multi_job THEN
        jobs := claim_set(p_uuid, p_name, p_version);
    ELSE
        jobs := claim_jobs(p_uuid, p_name, p_version, batch_size);
    END IF;
    IF jobs IS NULL THEN
        RETURN 'No job found';
    END IF;
    UPDATE process_heartbeats SET process_busy = true WHERE process_uuid = p_uuid;
    RETURN jobs::text;
END $$;
