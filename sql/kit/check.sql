-- What the kit's checkers run around a learner's SQL (pgqueue.check).

-- name: drop_routine
-- The reference version goes first, so that only the learner's can be there afterwards.
-- Without an argument list: every routine the kit checks has a name of its own.
DROP ROUTINE IF EXISTS {routine};

-- name: routine_exists
SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = %(name)s
                                      AND pronamespace = 'public'::regnamespace);

-- The kit's hold (core.Hold): a caller's session stops at a point of its call while the judge
-- holds an advisory lock of its slot; the learner's text is untouched. A session stops only if
-- the judge gave it a slot (pgqueue.hold_slot), at most once per transaction, and only while a
-- routine matching the trigger's argument runs (its name in the call stack), when one is given.

-- name: hold_function
CREATE OR REPLACE FUNCTION _kit_hold() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    slot text := current_setting('pgqueue.hold_slot', true);
    stack text;
BEGIN
    IF coalesce(slot, '') <> '' AND coalesce(current_setting('pgqueue.held', true), '') = '' THEN
        GET DIAGNOSTICS stack = PG_CONTEXT;
        IF TG_NARGS = 0 OR stack ~ TG_ARGV[0] THEN
            PERFORM set_config('pgqueue.held', 'yes', true);
            PERFORM pg_advisory_xact_lock(hashtext('pgqueue kit hold'), slot::integer);
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- name: hold_trigger
CREATE TRIGGER {name} {when} {event} ON {table} FOR EACH {level} EXECUTE FUNCTION _kit_hold({inside});

-- name: hold_at_commit
-- Fires at the commit of a transaction that changed a row, after all its statements ran.
CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON {table} DEFERRABLE INITIALLY DEFERRED
   FOR EACH ROW EXECUTE FUNCTION _kit_hold();

-- name: hold_drop
DROP TRIGGER IF EXISTS {name} ON {table};

-- name: hold_slot
-- For the rest of this session: the slot whose lock stops it at the hold ('' stops it nowhere).
SELECT set_config('pgqueue.hold_slot', %(slot)s, false);

-- name: hold_close
SELECT pg_advisory_lock(hashtext('pgqueue kit hold'), %(slot)s);

-- name: hold_open
SELECT pg_advisory_unlock(hashtext('pgqueue kit hold'), %(slot)s);

-- name: hold_where
-- Where backend `pid` stands: 'held' at the hold, else the kind of lock it waits for
-- ('transactionid', 'tuple', 'advisory', ...); no row while it runs or idles. Read from pg_locks
-- alone: a backend just granted its lock still shows its wait in pg_stat_activity until it wakes.
SELECT CASE WHEN locktype = 'advisory' AND classid = hashtext('pgqueue kit hold')::oid AND objsubid = 2
            THEN 'held' ELSE locktype END
  FROM pg_locks WHERE pid = %(pid)s AND NOT granted;

-- name: advisory_held
-- How many advisory locks backend `pid` holds, the kit's own hold aside.
SELECT count(*) FROM pg_locks
 WHERE pid = %(pid)s AND granted AND locktype = 'advisory'
   AND NOT (classid = hashtext('pgqueue kit hold')::oid AND objsubid = 2);
