-- Step 08 (hardened): workers connect as a role that may only call the queue's functions.
-- hardened: the originals' workers could run any SQL on any table (`DELETE FROM job_queue`
-- included). Here the calls a worker makes run as their owner (SECURITY DEFINER, with a fixed
-- search_path so that a caller cannot put its own objects in their way), and the workers' role
-- may execute those calls and nothing else: no table, no other function. Roles belong to the
-- whole server, so the role carries the lab database's name: <database>_worker.

-- What a worker asks once, when it starts: does its process gather sets, how often must it
-- beat while busy, on which channel is it woken, and does any pipeline have a step for it.
CREATE FUNCTION worker_setup(p_name varchar, p_version varchar)
RETURNS TABLE (gathers boolean, rescue_after_s float8, channel text, serves boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce((SELECT bool_or((process_configuration ->> 'gather')::boolean)
                       FROM pipeline_processes
                      WHERE process_name = p_name AND process_version = p_version), false),
           (SELECT extract(epoch FROM rescue_after)::float8 FROM queue_settings),
           wake_channel(p_name, p_version),
           EXISTS (SELECT 1 FROM pipeline_processes
                    WHERE process_name = p_name AND process_version = p_version)
$$;

-- Whether a process is the last step of a pipeline (then it calls finish_pipe).
CREATE FUNCTION is_last_step(p_pipe_id integer, p_name varchar) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT NOT EXISTS (SELECT 1 FROM pipeline_processes later
                         JOIN pipeline_processes this ON this.pipe_id = later.pipe_id
                        WHERE this.pipe_id = p_pipe_id AND this.process_name = p_name
                          AND later.process_order > this.process_order)
$$;

-- A beat while the worker is busy: it keeps its leases (only the timestamp changes; a full
-- heartbeat would also say the worker is idle again).
CREATE PROCEDURE pulse(p_uuid varchar)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE process_heartbeats SET last_beat_timestamp = now() WHERE process_uuid = p_uuid;
$$;

-- A worker that exits cleanly says so (lesson 02).
CREATE PROCEDURE mark_stopped(p_uuid varchar)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE process_heartbeats SET process_stopped_timestamp = clock_timestamp(), process_busy = false
     WHERE process_uuid = p_uuid;
$$;

ALTER FUNCTION find_job(varchar, varchar, varchar, varchar, boolean, integer)
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER PROCEDURE create_jobs(varchar, integer[], jsonb, integer[])
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER PROCEDURE finish_pipe(varchar, integer[], integer) SECURITY DEFINER SET search_path = public, pg_temp;
ALTER PROCEDURE finish_pipes(varchar, integer[]) SECURITY DEFINER SET search_path = public, pg_temp;
ALTER PROCEDURE fail_jobs(varchar, integer[], text) SECURITY DEFINER SET search_path = public, pg_temp;

-- Nobody but the owner may call anything, unless granted below.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL PROCEDURES IN SCHEMA public FROM PUBLIC;

-- The role, made if the lab's owner may make roles (CREATEROLE); without it the lab runs
-- without this separation, and its workers connect as the owner (pgqueue.queues.hardened says so).
DO $$
DECLARE
    worker text := current_database() || '_worker';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = worker) THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RETURN;
        END IF;
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT', worker);
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), worker);
    EXECUTE format('GRANT EXECUTE ON FUNCTION find_job(varchar, varchar, varchar, varchar, boolean, integer), '
                   'worker_setup(varchar, varchar), is_last_step(integer, varchar) TO %I', worker);
    EXECUTE format('GRANT EXECUTE ON PROCEDURE create_jobs(varchar, integer[], jsonb, integer[]), '
                   'finish_pipe(varchar, integer[], integer), finish_pipes(varchar, integer[]), '
                   'fail_jobs(varchar, integer[], text), '
                   'pulse(varchar), mark_stopped(varchar) TO %I', worker);
END $$;
