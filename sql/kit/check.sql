-- What the kit's checkers run around a learner's SQL (pgqueue.check).

-- name: drop_routine
-- The reference version goes first, so that only the learner's can be there afterwards.
-- Without an argument list: every routine the kit checks has a name of its own.
DROP ROUTINE IF EXISTS {routine};

-- name: routine_exists
SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = %(name)s
                                      AND pronamespace = 'public'::regnamespace);
