# Solution: one statement decides between insert and update, so overlapping beats cannot both insert.
from pgqueue import check

my_beat = """
CREATE PROCEDURE send_heartbeat(p_uuid varchar, p_server varchar, p_name varchar, p_version varchar)
LANGUAGE sql AS $$
    INSERT INTO process_heartbeats (process_uuid, server_name, process_name, process_version)
    VALUES (p_uuid, p_server, p_name, p_version)
    ON CONFLICT (process_uuid) DO UPDATE
       SET last_beat_timestamp = now(),          -- the beat itself
           server_name = EXCLUDED.server_name,   -- EXCLUDED: the row this beat tried to insert
           process_busy = false,                 -- a process that beats asks for work
           process_stopped_timestamp = NULL;     -- ... and runs; the kill switch stays as it is
$$;
"""
verdict = check.heartbeat_upsert(my_beat)
print(verdict)
assert verdict.holds, verdict
