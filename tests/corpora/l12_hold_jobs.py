"""Lesson 12's hold_jobs: holder checks wrong by lock, order, repeat, NULL or SQLSTATE; right ones in other
styles."""

import functools

from pgqueue import check
from pgqueue.lab import chaos
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, cut, uncommented, variant

JUDGE = check.hold_jobs

# the kit's hardened hold_jobs without its comments, cut into the parts wrong answers change
KIT = uncommented(labs.step(chaos.POC, "find_job").excerpt("hold_jobs"))
part = functools.partial(cut, KIT)  # the kit's hold_jobs from one line's start up to another's

# the reference is the kit's but for two things a learner writes otherwise and the judge does not
# read: shorter refusals of a bad uuid and of another holder, and the holder checks' END IF at the
# loop's indent
HEAD = variant(
    "\n" + part("CREATE FUNCTION", "    FOR j IN"), " 12 lowercase hex characters,", " 12 lowercase hex,"
)
LOCK = part("    FOR j IN", "        found_ids")
MINE_BEFORE = part("        found_ids", "        ELSIF j.job_finished THEN")
OTHERS = part("        ELSIF j.job_finished THEN", "        ELSIF j.job_assigned_process_uuid")
HOLDER = """\
        ELSIF j.job_assigned_process_uuid IS DISTINCT FROM p_uuid THEN
            PERFORM refuse('55000', format('%s: job %s is not held by %s (held by %s)', what, j.job_id,
                                           p_uuid, coalesce(j.job_assigned_process_uuid, 'nobody')));
"""
UNKNOWN = "    END IF;\n" + part("    END LOOP;", "    IF (SELECT count(DISTINCT")
PIPE_JOBS = part("    IF (SELECT count(DISTINCT", "    IF done_before =")
TAIL = part("    IF done_before =")
PARTS = {"lock": LOCK, "mine_before": MINE_BEFORE, "others": OTHERS, "holder": HOLDER}


def hold(*, changes=(), **parts: str) -> str:
    """The reference hold_jobs with some of its parts (lock, mine_before, others, holder) written otherwise,
    then (old, new) replacements made."""
    given = {**PARTS, **parts}
    text = HEAD + given["lock"] + given["mine_before"] + given["others"] + given["holder"]
    text += UNKNOWN + PIPE_JOBS + TAIL
    for old, new in changes:
        text = variant(text, old, new)
    return text


REFERENCE = hold()
IN_ORDER_GIVEN = """\
    FOREACH next_id IN ARRAY ids LOOP
        SELECT * INTO j FROM job_queue WHERE job_id = next_id FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
"""

WRONG = [
    Wrong(
        "no-holder-check",
        hold(holder=""),
        says="called create_jobs, and it was accepted: only the worker that holds a job may hand it over",
    ),
    Wrong(
        "holder-compared-with-not-equal",
        hold(holder=variant(HOLDER, "IS DISTINCT FROM p_uuid", "<> p_uuid")),
        says="which nobody holds since it was rescued",
    ),
    Wrong(
        "repeat-refused-as-the-original-does",
        hold(mine_before="        found_ids := found_ids || j.job_id;\n        IF false THEN\n"),
        says="a repeat after a lost connection must be a no-op",
        also=("which it had just handed over, was refused with 55000 (create_jobs: job",),
    ),
    Wrong(
        "repeat-by-any-worker",
        hold(mine_before=variant(MINE_BEFORE, " AND a.process_uuid = p_uuid", "")),
        says="another worker finished that job: this is no repeat",
    ),
    Wrong(
        "repeat-answered-true",
        hold(changes=[("        RETURN false;", "        RETURN true;")]),
        says="the repeat must make no new job",
    ),
    Wrong(
        "partial-repeat-is-a-no-op",
        hold(changes=[("    IF done_before = cardinality(ids) THEN", "    IF done_before > 0 THEN")]),
        says="only some of them were handed over before",
    ),
    Wrong(
        "no-row-lock",
        hold(lock=variant(LOCK, " FOR UPDATE LOOP", " LOOP")),
        says="not 1: the second call, let go once the first committed, did the work again",
    ),
    Wrong(
        "for-share-in-id-order",
        hold(lock=variant(LOCK, " FOR UPDATE LOOP", " FOR SHARE LOOP")),
        says="each kept a shared lock",
    ),
    Wrong(
        "nowait",
        hold(lock=variant(LOCK, " FOR UPDATE LOOP", " FOR UPDATE NOWAIT LOOP")),
        says="did not wait",
    ),
    Wrong(
        "locks-in-the-order-given",
        hold(
            lock=IN_ORDER_GIVEN, changes=[("    j job_queue;\n", "    j job_queue;\n    next_id integer;\n")]
        ),
        says="each held the job it named first and waited for the other's",
        also=("a deadlock (deadlock detected): each held the job it named first",),
    ),
    Wrong(
        "unknown-id-not-named",
        hold(changes=[(UNKNOWN, "    END IF;\n    END LOOP;\n")]),
        says="which does not exist, and it was refused with 55000",
    ),
    # written blind: refused, but with a ✗ line about IS DISTINCT FROM, which was not their mistake
    Wrong(
        "not-held-raised-without-errcode",
        hold(
            holder="""\
        ELSIF j.job_assigned_process_uuid IS DISTINCT FROM p_uuid THEN
            RAISE EXCEPTION '%: job % is not held by %', what, j.job_id, p_uuid;
"""
        ),
        says="the wrong SQLSTATE (P0001 is what RAISE EXCEPTION raises when no ERRCODE is given); the lesson "
        "asks for 55000 here",
    ),
    Wrong(
        "held-by-nobody-refused-as-unknown",
        hold(
            holder="""\
        ELSIF j.job_assigned_process_uuid IS NULL THEN
            PERFORM refuse('P0002', format('%s: job %s is leased to nobody', what, j.job_id));
        ELSIF j.job_assigned_process_uuid <> p_uuid THEN
            PERFORM refuse('55000', format('%s: job %s is not held by %s', what, j.job_id, p_uuid));
"""
        ),
        says="which nobody holds since it was rescued from it, and it was refused with P0002",
    ),
    Wrong(
        "two-pipe-jobs-in-one-hand-over",
        hold(changes=[(PIPE_JOBS, "")]),
        says="called create_jobs, and it was accepted: one hand-over belongs to one pipe job",
    ),
]

# of these jobs, one the caller may not finish: held by another, finished by another, or dead
NOT_MINE = """\
     WHERE j.job_id = ANY (ids)
       AND (j.job_assigned_process_uuid IS DISTINCT FROM p_uuid OR j.job_finished IS TRUE
            OR j.job_dead_timestamp IS NOT NULL)
       AND NOT (j.job_finished IS TRUE
                AND EXISTS (SELECT 1 FROM job_attempts a WHERE a.job_id = j.job_id
                               AND a.process_uuid = p_uuid AND a.outcome = 'succeeded'))
"""

SET_BASED = (
    """
CREATE FUNCTION hold_jobs(what text, p_uuid varchar, ids integer[]) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    mine_before integer;
BEGIN
    PERFORM check_ids(what, ids);
    IF p_uuid IS NULL OR p_uuid !~ '^[0-9a-f]{12}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
              MESSAGE = format('%s: bad uuid %L', what, p_uuid);
    END IF;
    -- one statement locks them all, in id order; the checks below read what it locked
    PERFORM 1 FROM job_queue WHERE job_id = ANY (ids) ORDER BY job_id FOR NO KEY UPDATE;
    SELECT j.job_id, j.job_assigned_process_uuid AS holder INTO bad
      FROM job_queue j
"""
    + NOT_MINE
    + """     ORDER BY j.job_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
              MESSAGE = format('%s: job %s is not yours (%s has it)', what, bad.job_id,
                               coalesce(bad.holder, 'nobody'));
    END IF;
    IF (SELECT count(*) FROM job_queue WHERE job_id = ANY (ids)) < cardinality(ids) THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found',
              MESSAGE = format('%s: unknown job among %s', what, ids);
    END IF;
    IF (SELECT count(DISTINCT pipe_job_id) FROM job_queue WHERE job_id = ANY (ids)) > 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
              MESSAGE = format('%s: mixed pipe jobs', what);
    END IF;
    SELECT count(*) INTO mine_before FROM job_queue WHERE job_id = ANY (ids) AND job_finished IS TRUE;
    IF mine_before = cardinality(ids) THEN
        RETURN false;
    ELSIF mine_before > 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
              MESSAGE = format('%s: a partial repeat', what);
    END IF;
    RETURN true;
END $$;
"""
)

SQL_FUNCTION = (
    """
CREATE FUNCTION hold_jobs(what text, p_uuid varchar, ids integer[]) RETURNS boolean
LANGUAGE sql AS $$
    SELECT check_ids(what, ids);
    SELECT refuse('22023', format('%s: a process uuid is 12 lowercase hex characters, got %L', what, p_uuid))
     WHERE p_uuid IS NULL OR p_uuid !~ '^[0-9a-f]{12}$';
    -- each statement of a sql function reads the latest commits: once this one has the locks,
    -- the next ones see what a finisher before us committed
    SELECT count(*) FROM (SELECT 1 FROM job_queue WHERE job_id = ANY (ids) ORDER BY job_id FOR UPDATE) locked;
    SELECT refuse('55000', format('%s: job %s is not held by %s', what, min(j.job_id), p_uuid))
      FROM job_queue j
"""
    + NOT_MINE
    + """    HAVING count(*) > 0;
    SELECT refuse('P0002', format('%s: no job %s', what, array_agg(i)))
      FROM unnest(ids) i
     WHERE NOT EXISTS (SELECT 1 FROM job_queue WHERE job_id = i)
    HAVING count(*) > 0;
    SELECT refuse('22023', format('%s: jobs %s belong to more than one pipe job', what, ids))
     WHERE (SELECT count(DISTINCT pipe_job_id) FROM job_queue WHERE job_id = ANY (ids)) > 1;
    SELECT refuse('55000', format('%s: of jobs %s, only some were finished before', what, ids))
      FROM job_queue WHERE job_id = ANY (ids)
    HAVING bool_or(job_finished IS TRUE) AND NOT bool_and(job_finished IS TRUE);
    SELECT NOT bool_and(job_finished IS TRUE) FROM job_queue WHERE job_id = ANY (ids);
$$;
"""
)

# written blind: counts the worker's attempt rows, where one job may have two of them
WRONG.append(
    Wrong(
        "counts-attempt-rows-not-jobs",
        variant(
            REFERENCE,
            "done_before := done_before + 1;",
            "done_before := done_before + (SELECT count(*) FROM job_attempts a\n"
            "        WHERE a.job_id = j.job_id AND a.process_uuid = p_uuid);",
        ),
        "on its second attempt (its first, by the same worker, had failed)",
    )
)

# written blind: advisory locks in place of the rows' locks, which a rescue does not see
WRONG.append(
    Wrong(
        "advisory-locks-instead-of-row-locks",
        variant(
            REFERENCE,
            " ORDER BY job_id FOR UPDATE LOOP",
            " ORDER BY job_id LOOP\n        PERFORM pg_advisory_xact_lock(j.job_id);",
        ),
        "the rescue took the job from under the hand-over",
    )
)

# written blind: a variable named as the skeleton's own alias; PostgreSQL cannot run the refusal
WRONG.append(
    Wrong(
        "a-variable-named-as-an-alias",
        variant(REFERENCE, "    done_before integer := 0;\n", "    done_before integer := 0;\n    i int;\n"),
        "that is PostgreSQL unable to run your hold_jobs on this call, no refusal of yours",
    )
)

RIGHT = [
    Right("reference-loop-in-id-order", REFERENCE),
    Right("for-no-key-update", hold(lock=variant(LOCK, " FOR UPDATE LOOP", " FOR NO KEY UPDATE LOOP"))),
    # every lock of more than one job goes through hold_jobs (rescues and claims skip locked rows),
    # so one order, whichever, is the same for every caller: no two lock the same jobs in turn
    Right("locks-in-descending-order", hold(lock=variant(LOCK, "ORDER BY job_id", "ORDER BY job_id DESC"))),
    Right("set-based-with-condition-names", SET_BASED),
    Right("sql-function-statements", SQL_FUNCTION),
    Right(
        "raise-using-errcode",
        hold(
            holder="""\
        ELSIF j.job_assigned_process_uuid IS DISTINCT FROM p_uuid THEN
            RAISE EXCEPTION '%: job % is not held by %', what, j.job_id, p_uuid USING ERRCODE = '55000';
"""
        ),
    ),
]
