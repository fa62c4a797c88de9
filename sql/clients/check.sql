-- What the kit's checkers (pgqueue.check) read and set while they try a learner's SQL.

-- name: heartbeat_row
SELECT * FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: heartbeat_rows
SELECT count(*) FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: mark_busy_stopped
-- As a worker's row looks after it took a job, then said it stopped.
UPDATE process_heartbeats SET process_busy = true, process_stopped_timestamp = clock_timestamp()
 WHERE process_uuid = %(uuid)s;

-- Lesson 04's checker (pgqueue/check/find_job.py): jobs placed by hand around a learner's find_job.

-- name: find_job_pipe_job
-- A pipe job for pipeline 4 (order 2): at step 04 it starts nothing, so the checker places
-- every job itself.
INSERT INTO pipe_job_queue (request_id, pipe_id) VALUES (%(request_id)s, 4) RETURNING pipe_job_id;

-- name: find_job_place
-- One job of the scene: whose it is, its priority, finished or taken, and how old (seconds).
INSERT INTO job_queue (pipe_job_id, pipe_id, job_process_name, job_process_version, job_priority,
                       job_finished, job_assigned_process_uuid, job_create_timestamp)
VALUES (%(pipe_job_id)s, 4, %(name)s, %(version)s, %(priority)s, %(finished)s, %(taken_by)s,
        clock_timestamp() - make_interval(secs => %(age)s))
RETURNING job_id;

-- name: find_job_call
SELECT find_job(%(uuid)s, 'checker', %(name)s, %(version)s);

-- name: find_job_taker
SELECT job_assigned_process_uuid FROM job_queue WHERE job_id = %(job_id)s;

-- name: find_job_finished_false
-- A probe the checker rolls back: waiting jobs marked job_finished = false instead of NULL, to see
-- whether a pick that found none of them looks for false.
UPDATE job_queue SET job_finished = false WHERE job_id = ANY (%(job_ids)s);

-- Lesson 05's checker (pgqueue/check/priorities.py).

-- name: priority_pipe_job
-- A pipe job of request `request_id` for pipeline `pipe_id`: for an order-1 pipeline its trigger
-- makes the entry job, which waits; an order-2 one waits with no job.
INSERT INTO pipe_job_queue (request_id, pipe_id, pipe_job_priority)
VALUES (%(request_id)s, %(pipe_id)s, 100) RETURNING pipe_job_id;

-- name: priority_job_set
-- Give job `job_id` priority `priority` (a finished job that an earlier change left at it).
UPDATE job_queue SET job_priority = %(priority)s WHERE job_id = %(job_id)s;

-- name: priority_place
-- A job of the first step of the pipe job's pipeline: taken by `taken_by` or finished, as asked.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_priority, job_process_name, job_process_version,
                       job_finished, job_assigned_process_uuid)
SELECT pj.pipe_job_id, pj.pipe_id, 100, pp.process_name, pp.process_version, %(finished)s, %(taken_by)s
  FROM pipe_job_queue pj
  JOIN pipeline_processes pp ON pp.pipe_id = pj.pipe_id AND pp.process_order = 1
 WHERE pj.pipe_job_id = %(pipe_job_id)s
RETURNING job_id;

-- name: priority_rows
-- Every pipe job and job, whole, to compare before and after a change: its pipe job, request,
-- priority, and every other column.
SELECT 'pipe job' AS kind, pj.pipe_job_id AS id, pj.pipe_job_id, pj.request_id,
       pj.pipe_job_priority AS priority, to_jsonb(pj) - 'pipe_job_priority' AS rest
  FROM pipe_job_queue pj
UNION ALL
SELECT 'job', j.job_id, j.pipe_job_id, pj.request_id, j.job_priority, to_jsonb(j) - 'job_priority'
  FROM job_queue j JOIN pipe_job_queue pj ON pj.pipe_job_id = j.pipe_job_id
 ORDER BY kind DESC, id;

-- name: priority_of_pipe_job
SELECT pipe_job_priority FROM pipe_job_queue WHERE pipe_job_id = %(pipe_job_id)s;

-- name: priority_of_job
SELECT job_priority FROM job_queue WHERE job_id = %(job_id)s;

-- name: priority_waiting
-- The jobs of a pipe job that wait: no worker, not finished.
SELECT job_id FROM job_queue
 WHERE pipe_job_id = %(pipe_job_id)s AND coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL
 ORDER BY job_id;

-- name: priority_take_one
-- A worker takes one waiting job of the pipe job, one that nobody has locked (none, if all are).
UPDATE job_queue SET job_assigned_process_uuid = 'took0its0job', job_assign_timestamp = now()
 WHERE job_id = (SELECT job_id FROM job_queue
                  WHERE pipe_job_id = %(pipe_job_id)s AND coalesce(job_assigned_process_uuid, '') = ''
                    AND job_finished IS NULL
                  ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING job_id;

-- name: priority_lock_one
-- A worker's claim in progress: one waiting job locked, in a transaction left open.
SELECT job_id FROM job_queue WHERE job_id = %(job_id)s FOR UPDATE;

-- name: priority_set
SELECT set_pipe_job_priority(%(pipe_job_id)s, %(priority)s::smallint);

-- Lesson 03's checker (pgqueue.check.heartbeat_answer): the learner's answer_heartbeat.

-- name: answer_placeholder
-- Stands in for the reference answer_heartbeat before the learner's version is installed: the
-- trigger heartbeat_finds_job uses the function, so it cannot be dropped, only replaced. If the
-- learner's SQL replaces nothing, this source is still there, and the checker says so.
CREATE OR REPLACE FUNCTION answer_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'answer_heartbeat has not been written yet';
END $$;

-- name: routine_source
SELECT prosrc FROM pg_proc WHERE proname = %(name)s AND pronamespace = 'public'::regnamespace;

-- name: answer_jobs
-- Jobs for the processes named, in pipeline 1 (request 1), each dated `ages` seconds back and
-- finished or not as `finished` says. The checker draws the ages, so the oldest job is neither
-- the lowest nor the highest id: a pick without ORDER BY job_create_timestamp shows.
INSERT INTO job_queue (request_id, pipe_id, job_creater_process_name, job_process_name, job_process_version,
                       job_create_timestamp, job_finished)
SELECT 1, 1, 'the checker', job.name, job.version, clock_timestamp() - job.age * interval '1 second',
       job.finished
  FROM unnest(%(names)s::varchar[], %(versions)s::varchar[], %(ages)s::integer[], %(finished)s::boolean[])
       WITH ORDINALITY AS job (name, version, age, finished, n)
 ORDER BY job.n;

-- name: answer_job_list
-- Oldest first, as the answer must hand them out.
SELECT job_id, job_process_name, job_process_version, job_assigned_process_uuid, job_finished,
       job_assign_timestamp IS NOT NULL AS assign_dated
  FROM job_queue ORDER BY job_create_timestamp, job_id;

-- name: answer_job_columns
-- job_queue's columns, in order: the keys of a job row sent as JSON.
SELECT attname::text FROM pg_attribute
 WHERE attrelid = 'job_queue'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;

-- name: answer_busy
-- Whether the process is marked busy, as take_job marks the process it gives a job.
SELECT process_busy FROM process_heartbeats WHERE process_uuid = %(uuid)s;

-- name: answer_done
-- A last notification after a beat: notifications of transactions that committed one after the
-- other arrive in that order, so once this one is heard, every answer to the beat is in.
SELECT pg_notify(%(channel)s, %(payload)s);

-- Lesson 08's checker (pgqueue.check.request_flow): a request's flow, per pipe order.

-- name: request_flow
-- The reference answer to lesson 08's exercise: per pipe order of one request, when its first
-- job was created, when its last job finished (of those finished), and how many jobs it made.
SELECT p.pipe_order,
       min(j.job_create_timestamp) AS first_created,
       max(j.job_finish_timestamp) AS last_finished,
       count(*) AS jobs
  FROM job_queue j
  JOIN pipe_job_queue pj USING (pipe_job_id)
  JOIN pipelines p ON p.pipe_id = pj.pipe_id
 WHERE pj.request_id = %(request_id)s
 GROUP BY p.pipe_order
 ORDER BY p.pipe_order;

-- name: flow_requests
-- Every request of a lab that has at least one job: what the checker compares.
SELECT DISTINCT pj.request_id
  FROM pipe_job_queue pj JOIN job_queue j USING (pipe_job_id)
 ORDER BY 1;

-- name: flow_processes
-- Every process a pipeline asks for: the checker plays each one's part in a scratch lab.
SELECT DISTINCT process_name, process_version FROM pipeline_processes ORDER BY 1, 2;

-- Lesson 01's checker (pgqueue.check.next_processes): the learner's next_processes.

-- name: next_step_reference
-- Every step of the pipelines with the step after it in the same pipeline (process_order one
-- more), or NULLs for a pipeline's last step and for a step before a gap in its orders (where the
-- original's create_jobs found no process_order + 1 and raised); later_order is the least later
-- order of the pipeline, NULL after its last step.
SELECT this.pipe_id, this.process_name, this.process_order,
       nxt.process_name AS next_name, nxt.process_version AS next_version,
       (SELECT min(later.process_order) FROM pipeline_processes later
         WHERE later.pipe_id = this.pipe_id AND later.process_order > this.process_order) AS later_order
  FROM pipeline_processes this
  LEFT JOIN pipeline_processes nxt ON nxt.pipe_id = this.pipe_id
                                  AND nxt.process_order = this.process_order + 1
 ORDER BY this.pipe_id, this.process_order;

-- name: next_processes_result
-- What the learner's function returns, as the task declares it: SETOF pipeline_processes.
SELECT CASE prokind WHEN 'p' THEN 'nothing: it is a PROCEDURE' ELSE pg_get_function_result(oid) END
           AS returns,
       prokind = 'f' AND prorettype = 'pipeline_processes'::regtype AND proretset AS whole_rows
  FROM pg_proc
 WHERE proname = 'next_processes' AND pronamespace = 'public'::regnamespace;

-- name: next_processes_call
SELECT n.pipe_id, n.process_name, n.process_version, n.process_order
  FROM next_processes(%(pipe_id)s::integer, %(name)s::varchar) AS n
 ORDER BY n.pipe_id, n.process_order, n.process_name;

-- name: check_time_limit
-- A learner's function that never ends must not hang the lesson.
SET statement_timeout = '5s';

-- name: flow_read_only
-- Lesson 08: the learner's query runs in a transaction that may not write (and is rolled back anyway).
SET TRANSACTION READ ONLY;

-- Lesson 07's checker (pgqueue.check.gate_takes_turns).

-- name: gate_lock_timeout
-- A finisher that waits for a lock twice as long as PostgreSQL waits before it looks for a
-- deadlock (deadlock_timeout) gives up: a lock never released, say. A deadlock is found first.
SELECT set_config('lock_timeout', (2 * setting::integer + 500)::text, false)
  FROM pg_settings WHERE name = 'deadlock_timeout';

-- name: gate_request
-- A request of the checker's own: one pipe job per pipeline in `pipes`, in one statement (so the
-- hardened gate sees the lower orders of an order-2 pipe job), their ids in the order given.
INSERT INTO pipe_job_queue (request_id, pipe_id)
SELECT %(request_id)s, pipe.id FROM unnest(%(pipes)s::integer[]) WITH ORDINALITY AS pipe (id, n)
 ORDER BY pipe.n
RETURNING pipe_job_id;

-- name: gate_higher_orders
-- Two pipelines more for the gate's scene: a second one of order 2 and one of order 3, each of one
-- step, so that a request's order-2 pipe jobs finishing together start its order 3.
WITH added AS (
    INSERT INTO pipelines (pipe_id, pipe_name, pipe_version, pipe_type, pipe_order) VALUES
        (%(order_2)s, 'weekly summary', '1.0.0', 'report', 2),
        (%(order_3)s, 'monthly digest', '1.0.0', 'report', 3)
    RETURNING pipe_id, pipe_order
)
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order, process_configuration)
SELECT pipe_id, CASE pipe_order WHEN 2 THEN 'summariser' ELSE 'digester' END, '1.0.0', 1, '{}'
  FROM added;

-- name: gate_advisory_locks_held
-- Advisory locks this session still holds: after a commit, only session-level ones can be left.
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted;

-- name: gate_triggers_after_the_gate
-- A trigger calling the learner's function that fires AFTER an update and behind the gate's own
-- (triggers of one kind fire in the order of their names): it locks only once the gate checked.
SELECT min(tgname) FROM pg_trigger
 WHERE tgrelid = 'pipe_job_queue'::regclass AND NOT tgisinternal
   AND tgfoid = 'pipe_job_takes_turn'::regproc
   AND tgtype & 2 = 0 AND tgname > 'pipe_job_starts';  -- not BEFORE: AFTER

-- name: gate_pipe_job_finished
SELECT pipe_job_finished FROM pipe_job_queue WHERE pipe_job_id = %(id)s;

-- name: gate_drop_trigger
-- The hardened lab comes with its own pipe_job_takes_turn trigger; it goes, with the function,
-- before the learner's version is installed (a no-op in the single-call lab, which has none).
DROP TRIGGER IF EXISTS pipe_job_takes_turn ON pipe_job_queue;

-- name: gate_triggers
-- The triggers on pipe_job_queue that call the learner's function: all, those on INSERT, those
-- on UPDATE (which a finish is), and those fired once per statement (where NEW is NULL).
SELECT count(*) AS calling, count(*) FILTER (WHERE tgtype & 4 = 4) AS on_insert,
       count(*) FILTER (WHERE tgtype & 16 = 16) AS on_update,
       count(*) FILTER (WHERE tgtype & 1 = 0) AS per_statement FROM pg_trigger
 WHERE tgrelid = 'pipe_job_queue'::regclass AND NOT tgisinternal
   AND tgfoid = 'pipe_job_takes_turn'::regproc;

-- name: gate_advisory_locks_of
-- The advisory locks the backend `pid` holds, each as the key it was asked with: one bigint
-- (objsubid 1: its high and low halves) or two integers (objsubid 2), and whether it is shared.
-- The hardened lab's own lock on a pipe job's ends, which making its entry job takes, is left out:
-- it is the kit's, not the learner's.
SELECT key, shared FROM (
    SELECT CASE WHEN objsubid = 1 THEN ARRAY[(classid::bigint << 32) | objid::bigint]
                ELSE ARRAY[classid::bigint - CASE WHEN classid::bigint >= 2147483648 THEN 4294967296 ELSE 0 END,
                           objid::bigint - CASE WHEN objid::bigint >= 2147483648 THEN 4294967296 ELSE 0 END]
           END AS key,
           mode = 'ShareLock' AS shared, classid, objid, objsubid
      FROM pg_locks WHERE locktype = 'advisory' AND pid = %(pid)s AND granted
) held
 WHERE NOT (objsubid = 2 AND key[1] = hashtext('pipe job ends'))
 ORDER BY classid, objid, objsubid;

-- name: gate_hold_keys
-- The checker holds these advisory lock keys (one bigint each) until its transaction ends: a
-- finisher whose trigger asks for one of them must wait, so its lock shows in pg_locks even if
-- the trigger lets go of it before its statement ends.
SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%(keys)s::bigint[]) AS k;

-- name: gate_advisory_lock_wanted
-- The advisory lock the backend `pid` waits for, as the key it was asked with (as above).
SELECT CASE WHEN objsubid = 1 THEN ARRAY[(classid::bigint << 32) | objid::bigint]
            ELSE ARRAY[classid::bigint - CASE WHEN classid::bigint >= 2147483648 THEN 4294967296 ELSE 0 END,
                       objid::bigint - CASE WHEN objid::bigint >= 2147483648 THEN 4294967296 ELSE 0 END]
       END AS key,
       mode = 'ShareLock' AS shared
  FROM pg_locks WHERE locktype = 'advisory' AND pid = %(pid)s AND NOT granted
 LIMIT 1;

-- Lesson 06's checker (pgqueue.check.gather_batch): fan-outs made with create_jobs, then a gatherer asks.

-- name: gather_request
INSERT INTO pipe_job_queue (request_id, pipe_id, pipe_job_priority)
SELECT coalesce(max(request_id), 0) + 1, %(pipe_id)s, %(priority)s FROM pipe_job_queue
RETURNING pipe_job_id;

-- name: gather_entry_job
SELECT job_id FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s;

-- name: gather_create_jobs
CALL create_jobs(%(job_ids)s, %(payloads)s);

-- name: gather_take
-- As if a gatherer had claimed these jobs already.
UPDATE job_queue SET job_assigned_process_uuid = 'taken', job_assign_timestamp = clock_timestamp()
 WHERE job_id = ANY (%(job_ids)s);

-- name: gather_blank
-- As the original marks "no worker" too: an empty uuid, which waits as NULL does.
UPDATE job_queue SET job_assigned_process_uuid = '' WHERE job_id = ANY (%(job_ids)s);

-- name: gather_loose_job
-- A waiting job of the gatherer's own process that no fan-out made (no creator set), as a pipeline
-- that starts with that process makes one: it belongs to no set, so it is never gathered.
INSERT INTO job_queue (pipe_job_id, pipe_id, job_priority, job_process_name, job_process_version)
SELECT pj.pipe_job_id, pj.pipe_id, %(priority)s, %(name)s, %(version)s
  FROM pipe_job_queue pj WHERE pj.pipe_job_id = %(pipe_job_id)s
RETURNING job_id;

-- name: gather_priorities
-- The jobs a set made, given priorities one by one: as when lesson 05's change lands between two of
-- its members' hand-overs (create_jobs copies the pipe job's priority at each).
UPDATE job_queue j SET job_priority = p.priority
  FROM unnest(%(job_ids)s::integer[], %(priorities)s::smallint[]) AS p(job_id, priority)
 WHERE j.job_id = p.job_id;

-- name: gather_ages
-- The jobs a set made, created these many seconds from now, one by one: hand-overs of two sets that
-- interleave (and a job's timestamp is its transaction's start, whatever order the ids came in).
UPDATE job_queue j SET job_create_timestamp = now() + make_interval(secs => a.seconds)
  FROM unnest(%(job_ids)s::integer[], %(seconds)s::float8[]) AS a(job_id, seconds)
 WHERE j.job_id = a.job_id;

-- name: gather_call
SELECT gather_batch(%(name)s, %(version)s);

-- name: gather_reference
-- What find_job itself hands out in multi mode (the checker rolls it back).
SELECT find_job(%(uuid)s, 'checker', %(name)s, %(version)s, true);

-- name: gather_jobs
SELECT job_id, job_process_name, job_process_version, job_finished,
       coalesce(job_assigned_process_uuid, '') <> '' AS taken, job_creater_set_elements
  FROM job_queue WHERE job_id = ANY (%(job_ids)s) ORDER BY job_id;

-- name: gather_finished_false
-- A probe the checker rolls back: members that have not finished marked false instead of NULL, to
-- see whether an answer that handed out their set takes only false for "not finished".
UPDATE job_queue SET job_finished = false WHERE job_id = ANY (%(job_ids)s);

-- name: gather_own_set_as_creators
-- A probe the checker rolls back: each waiting job's own sibling set (job_set_elements, itself
-- after a one-job hand-over) made the parallel set that created it, to see whether an answer that
-- found no complete set looks at job_set_elements.
UPDATE job_queue SET job_set_elements = job_creater_set_elements WHERE job_id = ANY (%(job_ids)s);

-- name: flow_ready
-- Lesson 08: whether a lab has the tables its query reads (a lab built up to an early step has not).
SELECT to_regclass('job_queue') IS NOT NULL AND to_regclass('pipe_job_queue') IS NOT NULL
       AND to_regclass('pipelines') IS NOT NULL;

-- A round on the learner's hardened version (pgqueue.lab.chaos.on_yours).

-- name: revoke_from_public
-- A routine created now may be executed by anyone; step 08 let nobody but the owner.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;

-- Lesson 01's checker: a pipeline drawn anew for each check, so that no answer written for the
-- example pipelines' names, ids or sizes can pass.

-- name: next_drawn_pipeline
INSERT INTO pipelines (pipe_id, pipe_name, pipe_version, pipe_type, pipe_order)
VALUES (%(pipe_id)s, %(pipe_name)s, '1.0.0', 'drawn by the checker', 1);

-- name: next_drawn_steps
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
SELECT %(pipe_id)s, step.name, step.version, step.process_order
  FROM unnest(%(names)s::varchar[], %(versions)s::varchar[], %(orders)s::smallint[])
       AS step (name, version, process_order);

-- Lesson 08's checker: the scratch lab's scene drawn anew, so that no count of the examples passes.

-- name: flow_draw_fan_out
-- Every fan-out of the example pipelines gets a width of 2 to 6, each its own.
UPDATE pipeline_processes
   SET process_configuration = jsonb_set(process_configuration, '{fan_out}', to_jsonb(2 + floor(random() * 5)::int))
 WHERE process_configuration ? 'fan_out'
RETURNING pipe_id, process_name, (process_configuration ->> 'fan_out')::int AS fan_out;

-- name: flow_refresh_job_config
-- The jobs already waiting carry their step's configuration as it is now.
UPDATE job_queue j
   SET job_process_config = pp.process_configuration
  FROM pipeline_processes pp
 WHERE pp.pipe_id = j.pipe_id AND pp.process_name = j.job_process_name
   AND pp.process_version = j.job_process_version;

-- name: flow_pipelines
-- The pipelines a drawn request may go through: each with steps, and its order.
SELECT p.pipe_id, p.pipe_order
  FROM pipelines p
 WHERE EXISTS (SELECT 1 FROM pipeline_processes pp WHERE pp.pipe_id = p.pipe_id)
 ORDER BY p.pipe_id;

-- name: flow_draw_request
INSERT INTO pipe_job_queue (request_id, pipe_id, pipe_job_priority)
SELECT %(request_id)s, pipe_id, 100 FROM unnest(%(pipe_ids)s::integer[]) AS pipe_id;

-- name: flow_draw_pipeline
-- A pipeline of order `pipe_order` with the steps `names` (versions `versions`): the examples have
-- orders 1 and 2 only, and with four orders (0 to 3) a grouping by hashing gives them back in
-- another order than 0, 1, 2, 3 at every hash table size tried (8 to 16384 buckets).
WITH pipe AS (
    INSERT INTO pipelines (pipe_id, pipe_name, pipe_version, pipe_type, pipe_order)
    VALUES (%(pipe_id)s, %(pipe_name)s, '1.0.0', 'drawn by the checker', %(pipe_order)s)
    RETURNING pipe_id
)
INSERT INTO pipeline_processes (pipe_id, process_name, process_version, process_order)
SELECT pipe.pipe_id, step.name, step.version, step.n
  FROM pipe, unnest(%(names)s::varchar[], %(versions)s::varchar[]) WITH ORDINALITY AS step (name, version, n);

-- name: flow_heap_order
-- Every pipeline but `pipe_ids` rewritten in place, so that its new row versions lie after
-- theirs in the table: a query that reads pipelines in the table's order meets those first.
UPDATE pipelines SET pipe_type = pipe_type WHERE pipe_id <> ALL (%(pipe_ids)s::integer[]);

-- name: flow_hash_plan
-- Sorting made dear for the rest of the transaction: PostgreSQL then groups (or removes duplicates)
-- by hashing, as it may choose to on larger tables, and rows come in the hash table's order unless
-- ORDER BY sorts them.
SET LOCAL enable_sort = off;

-- name: flow_unfinished
-- Jobs not finished yet (job_finished is NULL until a job is).
SELECT count(*) FROM job_queue WHERE job_finished IS NOT TRUE;
