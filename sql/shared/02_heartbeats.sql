-- Step 02 (lesson 02): heartbeats instead of service discovery.
-- Every running process says "I am alive" now and then; the database therefore knows who runs,
-- where, and which process (name + version) each one is.

CREATE TABLE process_heartbeats (
    -- random per process start; it also names the process's NOTIFY channel, so it is kept to
    -- 12 lowercase hex characters (the original did not check it)
    process_uuid         varchar(12)  PRIMARY KEY CHECK (process_uuid ~ '^[0-9a-f]{12}$'),
    last_beat_timestamp  timestamptz  NOT NULL DEFAULT now(),
    server_name          varchar(100) NOT NULL,
    process_name         varchar(100) NOT NULL,
    process_version      varchar(20)  NOT NULL,
    process_busy         boolean      NOT NULL DEFAULT false,
    -- an operator sets this; the process is answered `kill` the next time it asks for work
    process_kill_switch  boolean      NOT NULL DEFAULT false,
    -- not in the original: when the process said it exits cleanly (the kit's mark_stopped
    -- query); NULL while it runs, and every heartbeat sets it back to NULL
    process_stopped_timestamp timestamptz
);

-- An upsert: the first beat registers the process, later beats refresh its timestamp. A process
-- that beats is asking for work, so it is not busy any more, and it runs, so it is not stopped.
-- As in the original: a procedure, so a worker beats with `CALL send_heartbeat(...)` (and
-- find_job, a function, beats for its caller with CALL too).
CREATE PROCEDURE send_heartbeat(p_uuid varchar, p_server varchar, p_name varchar, p_version varchar)
LANGUAGE sql AS $$
    INSERT INTO process_heartbeats (process_uuid, server_name, process_name, process_version)
    VALUES (p_uuid, p_server, p_name, p_version)
    ON CONFLICT (process_uuid) DO UPDATE
       SET last_beat_timestamp = now(),
           server_name = EXCLUDED.server_name,
           process_busy = false,
           process_stopped_timestamp = NULL;
$$;

-- Who is alive. First match wins:
--   killed  the kill switch is set (whether the process has exited yet or not: see `exited`);
--   stopped the process said it exited cleanly, and has not beaten since (not in the original);
--   stale   its last heartbeat is older than `stale_after`: it died, hangs, or works on a long
--           job (the original could not tell these apart from a clean exit);
--   alive   otherwise.
-- Killed wins over stopped: a killed worker exits, and the operator's switch is the reason
-- worth showing; `exited` tells a killed worker that is gone from one that has not obeyed yet.
CREATE FUNCTION process_states(stale_after interval DEFAULT interval '10 seconds')
RETURNS TABLE (process_uuid varchar, process_name varchar, process_version varchar,
               server_name varchar, beat_age interval, process_busy boolean,
               process_kill_switch boolean, exited boolean, state text)
-- VOLATILE, not STABLE: it reads clock_timestamp(), the time of the call itself, so that a beat
-- age is exact even inside a long transaction (now() would freeze at the transaction's start).
LANGUAGE sql VOLATILE AS $$
    SELECT process_uuid, process_name, process_version, server_name,
           clock_timestamp() - last_beat_timestamp AS beat_age,
           process_busy, process_kill_switch,
           process_stopped_timestamp IS NOT NULL AS exited,
           CASE WHEN process_kill_switch THEN 'killed'
                WHEN process_stopped_timestamp IS NOT NULL THEN 'stopped'
                WHEN clock_timestamp() - last_beat_timestamp > stale_after THEN 'stale'
                ELSE 'alive' END AS state
      FROM process_heartbeats
     ORDER BY process_name, process_version, process_uuid;
$$;
