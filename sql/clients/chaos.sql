-- What a chaos round (pgqueue.lab.chaos) plants in the hardened lab, and the invariants it reads back.

-- name: instruments
-- Every beat, kept: process_heartbeats holds only the last one, and whether a rescued worker was
-- alive is a question about the beat before the rescue. And the poison: a job whose hand-over
-- (finish or failure) raises, so that every worker that runs it crashes (a job that kills its
-- workers): only a rescue can end its attempts, and dead-letter it. The trigger
-- functions run as the lab's owner: the workers' calls that fire them are SECURITY DEFINER.
CREATE TABLE chaos_beats (process_uuid varchar(12) NOT NULL, beat_at timestamptz NOT NULL, busy boolean);
CREATE INDEX chaos_beats_of ON chaos_beats (process_uuid, beat_at);
CREATE FUNCTION chaos_beat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_beats VALUES (NEW.process_uuid, NEW.last_beat_timestamp, NEW.process_busy);
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_beat AFTER INSERT OR UPDATE OF last_beat_timestamp ON process_heartbeats
FOR EACH ROW EXECUTE FUNCTION chaos_beat();

CREATE TABLE chaos_poison (job_id integer PRIMARY KEY);
CREATE FUNCTION chaos_poisoned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM chaos_poison WHERE job_id = NEW.job_id) THEN
        RAISE EXCEPTION 'chaos round: job % is poisoned, it kills every worker that runs it', NEW.job_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chaos_poisoned BEFORE UPDATE OF job_finished ON job_queue
FOR EACH ROW WHEN (NEW.job_finished IS TRUE AND OLD.job_finished IS NOT TRUE)
EXECUTE FUNCTION chaos_poisoned();
-- nor may a worker's attempt at it end in any way but a rescue: a handler failing at random must
-- not dead-letter it in the rescue's place
CREATE TRIGGER chaos_poisoned_attempt BEFORE UPDATE OF outcome ON job_attempts
FOR EACH ROW WHEN (NEW.outcome IN ('succeeded', 'failed'))
EXECUTE FUNCTION chaos_poisoned();

-- And every dead-letter, kept: a job's dead-letter timestamp says only when it was last set,
-- and whether a job ran past max_attempts, or after it was dead-lettered, is a question about
-- the first one.
CREATE TABLE chaos_dead_letters (job_id integer NOT NULL, at timestamptz NOT NULL);
CREATE FUNCTION chaos_dead_letter() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_dead_letters VALUES (NEW.job_id, clock_timestamp());
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_dead_letter AFTER UPDATE OF job_dead_timestamp ON job_queue
FOR EACH ROW WHEN (NEW.job_dead_timestamp IS NOT NULL
                   AND NEW.job_dead_timestamp IS DISTINCT FROM OLD.job_dead_timestamp)
EXECUTE FUNCTION chaos_dead_letter();

-- name: instrumented
SELECT to_regclass('chaos_beats') IS NOT NULL AS instrumented;

-- name: poison
-- Poison the first job of pipe job `pipe_job_id` (its entry job, made with the pipe job).
INSERT INTO chaos_poison SELECT min(job_id) FROM job_queue WHERE pipe_job_id = %(pipe_job_id)s
RETURNING job_id;

-- name: hold_a_waiting_job
-- The best waiting job of a process that does not gather, locked as a claim in progress locks it
-- (in a transaction the round keeps open for a while).
SELECT j.job_id, j.job_process_name FROM job_queue j
 WHERE j.job_assigned_process_uuid IS NULL AND j.job_finished IS NULL AND j.job_dead_timestamp IS NULL
   AND j.job_run_after <= clock_timestamp()
   AND NOT (j.job_process_config ? 'gather')
 ORDER BY j.job_priority, j.job_create_timestamp
 LIMIT 1
   FOR UPDATE SKIP LOCKED;

-- name: waiting_on
-- The backends running find_job that wait for a lock the backend `pid` holds.
SELECT count(*) FROM pg_stat_activity
 WHERE %(pid)s = ANY (pg_blocking_pids(pid)) AND query ILIKE '%%find_job%%';

-- name: backend_pid
SELECT pg_backend_pid();

-- name: hold_finishes
-- Lock a request's order-1 pipe jobs as an update does: their finishes (finish_pipe updates the
-- row) wait, the jobs made for them (a foreign key's KEY SHARE) do not.
SELECT pj.pipe_job_id FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
 WHERE pj.request_id = %(request_id)s AND p.pipe_order = 1
   FOR NO KEY UPDATE OF pj;

-- name: finishers_waiting
-- How many backends wait for the locks the backend `pid` holds.
SELECT count(*) FROM pg_stat_activity WHERE %(pid)s = ANY (pg_blocking_pids(pid));

-- name: holding_workers
-- Who holds which unfinished job of a process that does not gather (a frozen worker's candidates),
-- the poisoned job and the jobs of requests whose finishes the round holds left out (a finisher
-- waiting there keeps its job's row locked, and a rescue rightly passes such a row over).
SELECT j.job_assigned_process_uuid, j.job_id FROM job_queue j JOIN pipe_job_queue pj USING (pipe_job_id)
 WHERE j.job_assigned_process_uuid IS NOT NULL AND j.job_finished IS NULL AND j.job_dead_timestamp IS NULL
   AND NOT (j.job_process_config ? 'gather') AND j.job_attempts < (SELECT max_attempts FROM queue_settings)
   AND j.job_id NOT IN (SELECT job_id FROM chaos_poison) AND pj.request_id <> ALL (%(held_requests)s)
 ORDER BY j.job_id;

-- name: calls_running
-- How many statements of worker `uuid` the server still runs (its connections carry `[uuid]` in
-- application_name): a call a worker sent just before it was frozen ends on the server all the same.
SELECT count(*) FROM pg_stat_activity
 WHERE strpos(application_name, '[' || %(uuid)s || ']') > 0 AND state = 'active';

-- name: job_state
-- Who holds job `job_id`, whether it ended, and how the last attempt of worker `uuid` at it ended.
SELECT j.job_assigned_process_uuid, j.job_finished IS TRUE AS finished, j.job_dead_timestamp IS NOT NULL AS dead,
       (SELECT a.outcome FROM job_attempts a WHERE a.job_id = j.job_id AND a.process_uuid = %(uuid)s
         ORDER BY a.attempt_id DESC LIMIT 1) AS outcome
  FROM job_queue j WHERE j.job_id = %(job_id)s;

-- name: beat_as
-- A heartbeat of the round's own stand-in worker, as find_job sends it.
CALL send_heartbeat(%(uuid)s, %(server)s, %(name)s, %(version)s);

-- name: lease_to
-- Lease job `job_id` to the stand-in worker, as a claim does; the job, as find_job answers.
SELECT lease_jobs(%(uuid)s, ARRAY[%(job_id)s]::integer[]);

-- name: asked_since
-- Whether worker `uuid` asked for work after `since` (find_job's beat says it is not busy; a pulse
-- while it works leaves that as it was): a woken worker asks once its hand-over is over.
SELECT EXISTS (SELECT 1 FROM chaos_beats WHERE process_uuid = %(uuid)s AND beat_at > %(since)s AND NOT busy);

-- name: now
SELECT clock_timestamp();

-- name: attempts_of
-- Every attempt, with the worker's last beat before it ended (for a rescued one) and the backoff
-- the job owed before it (after a failed attempt): what the invariants are read from.
SELECT a.attempt_id, a.job_id, a.process_uuid, a.outcome,
       extract(epoch FROM a.attempt_ended - (SELECT max(b.beat_at) FROM chaos_beats b
                                               WHERE b.process_uuid = a.process_uuid
                                                 AND b.beat_at <= a.attempt_ended))::float8 AS silent_s,
       extract(epoch FROM a.attempt_started - lag(a.attempt_ended) OVER w)::float8 AS after_s,
       lag(a.outcome) OVER w AS before,
       -- as fail_jobs owes it, its power bounded as there: a rescue that never dead-letters runs a job
       -- far past max_attempts, and 2^n of a long round overflows an interval
       extract(epoch FROM least(s.backoff_cap,
                                s.backoff_base * power(2, least((row_number() OVER w) - 2, 40))))::float8
           AS backoff_s
  FROM job_attempts a CROSS JOIN queue_settings s
WINDOW w AS (PARTITION BY a.job_id ORDER BY a.attempt_id)
 ORDER BY a.attempt_id;

-- name: overlapping
-- Pairs of attempts at one job whose time ranges overlap: two workers held it at once.
SELECT a.job_id, a.process_uuid AS first, b.process_uuid AS second
  FROM job_attempts a JOIN job_attempts b ON b.job_id = a.job_id AND b.attempt_id > a.attempt_id
 WHERE tstzrange(a.attempt_started, coalesce(a.attempt_ended, 'infinity'))
       && tstzrange(b.attempt_started, coalesce(b.attempt_ended, 'infinity'))
 ORDER BY a.job_id;

-- name: left_behind
-- Leases left at the end: jobs still leased to workers that are gone, and attempts still running
-- at a job that ended (finished or dead-lettered) or of a worker that is gone; and of those
-- attempts, the ones begun at a job after its first dead-letter (a claim took a dead-lettered job);
-- and of those jobs, the ones past max_attempts (never dead-lettered, still run at the end).
SELECT (SELECT count(*) FROM job_queue
         WHERE job_assigned_process_uuid = ANY (%(gone)s) AND job_finished IS NULL
           AND job_dead_timestamp IS NULL) AS jobs,
       (SELECT count(*) FROM job_queue
         WHERE job_assigned_process_uuid = ANY (%(gone)s) AND job_finished IS NULL
           AND job_dead_timestamp IS NULL
           AND job_attempts > (SELECT max_attempts FROM queue_settings)) AS past_max,
       (SELECT count(*) FROM job_attempts a JOIN job_queue j USING (job_id)
         WHERE a.attempt_ended IS NULL
           AND (j.job_finished OR j.job_dead_timestamp IS NOT NULL OR a.process_uuid = ANY (%(gone)s)))
           AS attempts,
       (SELECT count(*) FROM job_attempts a JOIN job_queue j USING (job_id)
         WHERE a.attempt_ended IS NULL AND j.job_dead_timestamp IS NOT NULL
           AND a.attempt_started > coalesce((SELECT min(d.at) FROM chaos_dead_letters d WHERE d.job_id = a.job_id),
                                            j.job_dead_timestamp)) AS after_dead;

-- name: first_dead_letters
-- Each dead-lettered job's first dead-letter (its timestamp, for a job dead-lettered before the
-- instruments were): how many attempts had begun by then, how the last of them ended (the call
-- that ended it dead-lettered the job: 'rescued' a rescue, 'failed' a failure) and how many
-- attempts began after it.
WITH kept AS (
    SELECT job_id, min(at) AS at FROM chaos_dead_letters GROUP BY job_id
), first AS (
    SELECT job_id, at FROM kept
    UNION ALL
    SELECT j.job_id, j.job_dead_timestamp FROM job_queue j
     WHERE j.job_dead_timestamp IS NOT NULL AND j.job_id NOT IN (SELECT job_id FROM kept)
)
SELECT f.job_id,
       (SELECT count(*) FROM job_attempts a WHERE a.job_id = f.job_id AND a.attempt_started <= f.at)
           AS attempts_before,
       (SELECT a.outcome FROM job_attempts a WHERE a.job_id = f.job_id AND a.attempt_started <= f.at
         ORDER BY a.attempt_id DESC LIMIT 1) AS ended_by,
       (SELECT count(*) FROM job_attempts a WHERE a.job_id = f.job_id AND a.attempt_started > f.at)
           AS attempts_after
  FROM first f ORDER BY f.job_id;
