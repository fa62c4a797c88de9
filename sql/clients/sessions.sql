-- What pgqueue/lab/sessions.py asks the server about the sessions a lesson steps through.

-- name: waiting
-- What session `pid` waits for now, and the sessions whose locks it waits behind.
SELECT wait_event_type, wait_event, pg_blocking_pids(pid) FROM pg_stat_activity WHERE pid = %(pid)s;

-- name: terminate
-- As a worker killed in the middle of a transaction: its connection ends, its transaction rolls back.
SELECT pg_terminate_backend(%(pid)s);
