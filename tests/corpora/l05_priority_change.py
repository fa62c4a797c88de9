"""Lesson 05's set_pipe_job_priority: the changes learners write, wrong ones named by their mistake."""

from pgqueue import check
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant

JUDGE = check.priority_change
REFERENCE = str(labs.step("single-call", "priorities").excerpt("set_pipe_job_priority"))
WAITING = "coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL"
HEAD = (
    "CREATE FUNCTION set_pipe_job_priority(p_pipe_job_id integer, p_priority smallint)\n"
    "RETURNS integer LANGUAGE plpgsql AS $$\nDECLARE\n    changed integer;\nBEGIN\n"
)


# the pipe job locked first, so that a hand-over to it still open is waited for
LOCKED = "    PERFORM 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id FOR UPDATE;\n"
UPDATED = "    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;\n"
PIPE = LOCKED + UPDATED
NOWAIT_LOCK = "    PERFORM 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id FOR UPDATE NOWAIT;\n"
UNKNOWN = "    IF NOT FOUND THEN\n        RAISE EXCEPTION 'no pipe job %', p_pipe_job_id;\n    END IF;\n"


def body(
    waiting: str = WAITING,
    *,
    pipe: str = PIPE,
    unknown: str = UNKNOWN,
    which: str = "pipe_job_id = p_pipe_job_id AND ",
    returned: str = "changed",
) -> str:
    """A plpgsql change of the learner's, the reference's shape with one part swapped."""
    return (
        f"{HEAD}{pipe}{unknown}"
        f"    UPDATE job_queue SET job_priority = p_priority\n     WHERE {which}{waiting};\n"
        f"    GET DIAGNOSTICS changed = ROW_COUNT;\n    RETURN {returned};\nEND $$;"
    )


WRONG = [
    # written blind: least() lets a priority go down only; every priority the scene drew was below 100
    Wrong(
        "priority-only-ever-lowered",
        body(
            pipe=PIPE.replace("= p_priority", "= least(pipe_job_priority, p_priority)"),
        ).replace("SET job_priority = p_priority", "SET job_priority = least(job_priority, p_priority)"),
        "whether it is above or below the one before (least()?)",
    ),
    # written blind: the count taken after the UPDATE, of the pipe job's jobs at the new priority:
    # a finished job that already had it is counted too
    Wrong(
        "count-of-jobs-at-the-new-priority",
        body(
            returned="(SELECT count(*)::integer FROM job_queue\n"
            "             WHERE pipe_job_id = p_pipe_job_id AND job_priority = p_priority)"
        ),
        "it must return how many waiting jobs it changed",
    ),
    # written blind: the whole job table locked, so that no worker can take a job while it runs
    Wrong(
        "job-table-locked",
        body(pipe="    LOCK TABLE job_queue IN EXCLUSIVE MODE NOWAIT;\n" + PIPE),
        "a worker could not take one of its waiting jobs",
    ),
    # written blind: the plain UPDATE of the pipe job waits for no hand-over (it does not conflict with
    # the FOR KEY SHARE an open hand-over's insert holds), so the job that hand-over makes keeps the
    # old priority
    Wrong(
        "goes-on-beside-an-open-hand-over",
        body(pipe=UPDATED),
        "your function went on beside the hand-over",
    ),
    # written blind: NOWAIT on the pipe job fails whenever a worker's hand-over to it is open
    Wrong(
        "pipe-job-locked-nowait",
        body(pipe=NOWAIT_LOCK + PIPE),
        "the insert holds the pipe job's row FOR KEY SHARE until its commit",
    ),
    # written blind: a LANGUAGE sql change whose error for a missing row is folded when it is planned
    # (PostgreSQL 18 plans a SQL function's statements with its arguments; 15 does not fold it, and
    # the answer, which locks its pipe job, is right there)
    Wrong(
        "sql-error-folded-at-plan-time",
        """CREATE FUNCTION set_pipe_job_priority(p_pipe_job_id integer, p_priority smallint)
RETURNS integer LANGUAGE sql AS $$
    SELECT 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id FOR UPDATE;
    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;
    WITH changed AS (
        UPDATE job_queue SET job_priority = p_priority
         WHERE pipe_job_id = p_pipe_job_id AND coalesce(job_assigned_process_uuid, '') = ''
           AND job_finished IS NULL
        RETURNING 1)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id)
                THEN (SELECT count(*)::integer FROM changed)
                ELSE ('no pipe job ' || p_pipe_job_id)::integer END;
$$;""",
        "it raises whatever the id",
        since=18,
    ),
    Wrong(
        "null-alone-means-nobody",
        body("job_assigned_process_uuid IS NULL AND job_finished IS NULL"),
        "IS NULL alone misses it",
    ),
    Wrong(
        "empty-string-alone-means-nobody",
        body("job_assigned_process_uuid = '' AND job_finished IS NULL"),
        "find_job would still hand them out in the old order",
    ),
    Wrong("running-jobs-changed-too", body("job_finished IS NULL"), "changed although taken or finished"),
    Wrong("taken-and-finished-changed-too", body("true"), "changed although taken or finished"),
    Wrong("every-pipe-jobs-jobs", body(which=""), "of another pipe job changed too"),
    Wrong("an-unknown-id-passes-silently", body(unknown=""), "returned 0: an unknown pipe job must raise"),
    # the jobs found through the request: the same as through the pipe job while a request has one
    Wrong(
        "the-whole-requests-waiting-jobs",
        body(
            which="pipe_job_id IN (SELECT pipe_job_id FROM pipe_job_queue WHERE request_id =\n"
            "         (SELECT request_id FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id)) AND "
        ),
        "not its whole request (match pipe_job_id = p_pipe_job_id, not request_id)",
        also=(", though of the same request ",),
    ),
    Wrong(
        "every-pipe-job-of-the-request",
        f"{HEAD}    UPDATE pipe_job_queue pj SET pipe_job_priority = p_priority FROM pipe_job_queue asked\n"
        "     WHERE asked.pipe_job_id = p_pipe_job_id AND pj.request_id = asked.request_id;\n"
        f"{UNKNOWN}"
        "    UPDATE job_queue j SET job_priority = p_priority FROM pipe_job_queue pj, pipe_job_queue asked\n"
        "     WHERE asked.pipe_job_id = p_pipe_job_id AND pj.request_id = asked.request_id\n"
        f"       AND j.pipe_job_id = pj.pipe_job_id AND {WAITING.replace('job_', 'j.job_')};\n"
        "    GET DIAGNOSTICS changed = ROW_COUNT;\n    RETURN changed;\nEND $$;",
        "and its jobs, not pipe job ",
    ),
    # '' made NULL on the way: the same "nobody", but a column the change was not asked to touch
    Wrong(
        "tidies-the-worker-too",
        variant(
            body(),
            "SET job_priority = p_priority",
            "SET job_priority = p_priority, job_assigned_process_uuid = NULL",
        ),
        "changed more than its priority (job_assigned_process_uuid too)",
    ),
    Wrong(
        "requeues-as-new",
        variant(
            body(),
            "SET job_priority = p_priority",
            "SET job_priority = p_priority, job_create_timestamp = now()",
        ),
        "changed more than its priority (job_create_timestamp too)",
    ),
    Wrong(
        "pipe-job-left-as-it-was",
        body(
            pipe="",
            unknown="    PERFORM 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id;\n"
            "    IF NOT FOUND THEN RAISE EXCEPTION 'no pipe job %', p_pipe_job_id; END IF;\n",
        ),
        "got priority 100: create_jobs reads",
        also=("created by create_jobs after the change, got priority 100",),
    ),
    Wrong(
        "returns-one",
        body(returned="1"),
        "it must return how many waiting jobs it changed",
        also=("returned 1, but pipe job",),
    ),
    # found by a blind learner: the pipe job updated after the jobs, ROW_COUNT read after both
    Wrong(
        "row-count-of-the-pipe-job-update",
        f"{HEAD}    UPDATE job_queue SET job_priority = p_priority\n"
        f"     WHERE pipe_job_id = p_pipe_job_id AND {WAITING};\n{PIPE}{UNKNOWN}"
        "    GET DIAGNOSTICS changed = ROW_COUNT;\n    RETURN changed;\nEND $$;",
        "; 1 is as many as the pipe jobs it updated, the count of its UPDATE of pipe_job_queue",
    ),
    Wrong(
        "returns-every-job-of-the-pipe-job",
        body(returned="(SELECT count(*) FROM job_queue WHERE pipe_job_id = p_pipe_job_id)"),
        "as many as all jobs of pipe job",
    ),
    Wrong(
        "raises-after-changing",
        f"{HEAD}    UPDATE job_queue SET job_priority = p_priority WHERE {WAITING};\n"
        "    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;\n"
        "    IF NOT FOUND THEN RAISE NOTICE 'no pipe job %', p_pipe_job_id; END IF;\n"
        "    RETURN 0;\nEND $$;",
        "an unknown pipe job must raise",
    ),
    Wrong(
        "waiting-jobs-left-as-they-were",
        variant(
            REFERENCE,
            "    UPDATE job_queue SET job_priority = p_priority\n"
            f"     WHERE pipe_job_id = p_pipe_job_id\n       AND {WAITING};\n",
            "",
        ),
        "kept priority 100",
    ),
    Wrong(
        "returns-nothing",
        variant(variant(REFERENCE, "RETURNS integer", "RETURNS void"), "RETURN changed;", "RETURN;"),
        "returned '', but pipe job",
    ),
]

# written blind
COUNT = f"    SELECT count(*) INTO changed FROM job_queue WHERE pipe_job_id = p_pipe_job_id AND {WAITING};\n"
IDS = f"    SELECT array_agg(job_id) INTO ids FROM job_queue WHERE pipe_job_id = p_pipe_job_id AND {WAITING}"
BY_IDS = "    UPDATE job_queue SET job_priority = p_priority WHERE job_id = ANY(ids);\n"
WRONG += [
    Wrong(
        "no-worker-alone-means-waiting",
        body("coalesce(job_assigned_process_uuid, '') = ''"),
        "no worker alone does not say a job waits",
    ),
    Wrong(
        "raises-when-no-job-waits",
        f"{HEAD}{PIPE}    UPDATE job_queue SET job_priority = p_priority\n"
        f"     WHERE pipe_job_id = p_pipe_job_id AND {WAITING};\n{UNKNOWN}"
        "    GET DIAGNOSTICS changed = ROW_COUNT;\n    RETURN changed;\nEND $$;",
        "IF NOT FOUND right after the UPDATE of pipe_job_queue, not of job_queue",
    ),
    Wrong(
        "found-as-the-count",
        body(returned="FOUND::int"),
        "is it FOUND, made a number?",
    ),
    Wrong(
        "counts-before-it-changes",
        variant(body(), "    GET DIAGNOSTICS changed = ROW_COUNT;\n", "").replace(
            "    UPDATE job_queue", COUNT + "    UPDATE job_queue"
        ),
        "not what an earlier statement saw",
    ),
    Wrong(
        "changes-the-ids-it-read-first",
        variant(HEAD, "    changed integer;\n", "    ids integer[];\n")
        + f"{PIPE}{UNKNOWN}{IDS};\n{BY_IDS}    RETURN coalesce(cardinality(ids), 0);\nEND $$;",
        "though it was no longer waiting: the UPDATE trusts ids or a count read by an earlier statement",
    ),
]

LOOP = (
    "    FOR r IN SELECT job_id FROM job_queue WHERE pipe_job_id = p_pipe_job_id AND "
    + WAITING
    + "\n              FOR UPDATE{how}\n    LOOP\n"
    "        UPDATE job_queue SET job_priority = p_priority WHERE job_id = r.job_id;\n"
    "        changed := changed + 1;\n    END LOOP;\n    RETURN changed;\nEND $$;"
)
LOOPING = variant(HEAD, "    changed integer;\n", "    changed integer := 0;\n    r record;\n")
LOOPING += PIPE + UNKNOWN
WRONG += [
    Wrong(
        "and-or-without-parentheses",
        body("job_assigned_process_uuid IS NULL OR job_assigned_process_uuid = '' AND job_finished IS NULL"),
        "or joined by an OR without parentheses? (AND binds before OR)",
    ),
    # a worker's claim holds a waiting job locked for a moment, then lets go of it
    Wrong("fails-on-a-claimed-job", LOOPING + LOOP.format(how=" NOWAIT"), "a claim ends in a moment"),
    Wrong("passes-over-a-claimed-job", LOOPING + LOOP.format(how=" SKIP LOCKED"), "SKIP LOCKED passes over"),
]

RIGHT = [
    Right("the-lessons-reference", REFERENCE),
    Right("a-loop-over-locked-jobs", LOOPING + LOOP.format(how="")),
    # the ids read first, but locked: no worker takes one before the UPDATE
    Right(
        "locks-the-ids-it-reads-first",
        variant(HEAD, "    changed integer;\n", "    ids integer[];\n")
        + f"{PIPE}{UNKNOWN}    SELECT array_agg(job_id) INTO ids FROM (SELECT job_id FROM job_queue\n"
        f"     WHERE pipe_job_id = p_pipe_job_id AND {WAITING} FOR UPDATE) locked;\n"
        f"{BY_IDS}    RETURN coalesce(cardinality(ids), 0);\nEND $$;",
    ),
    # the waiting jobs found through their pipe job's row, and given the priority it now has
    Right(
        "update-from-the-pipe-job",
        f"{HEAD}{PIPE}{UNKNOWN}"
        "    UPDATE job_queue j SET job_priority = pj.pipe_job_priority FROM pipe_job_queue pj\n"
        "     WHERE pj.pipe_job_id = p_pipe_job_id AND j.pipe_job_id = pj.pipe_job_id\n"
        "       AND (j.job_assigned_process_uuid IS NULL OR j.job_assigned_process_uuid = '')\n"
        "       AND j.job_finished IS NULL;\n"
        "    GET DIAGNOSTICS changed = ROW_COUNT;\n    RETURN changed;\nEND $$;",
    ),
    Right(
        "its-own-sqlstate-and-words",
        body(
            unknown="    IF NOT FOUND THEN\n        RAISE EXCEPTION USING ERRCODE = 'no_data_found',\n"
            "              MESSAGE = format('failed: no pipe job %s', p_pipe_job_id);\n    END IF;\n"
        ),
    ),
    Right(
        "the-originals-is-not-false",
        body("(job_assigned_process_uuid = '') IS NOT FALSE AND job_finished IS NULL"),
    ),
    Right("nullif-is-null", body("nullif(job_assigned_process_uuid, '') IS NULL AND job_finished IS NULL")),
    Right(
        "checks-first-then-one-cte",
        f"{HEAD}{LOCKED}"
        "    IF NOT EXISTS (SELECT FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id) THEN\n"
        "        RAISE EXCEPTION 'pipe job % does not exist', p_pipe_job_id USING ERRCODE = '22023';\n"
        "    END IF;\n"
        "    WITH p AS (UPDATE pipe_job_queue SET pipe_job_priority = p_priority\n"
        "                WHERE pipe_job_id = p_pipe_job_id),\n"
        "         j AS (UPDATE job_queue SET job_priority = p_priority\n"
        f"                WHERE pipe_job_id = p_pipe_job_id AND {WAITING} RETURNING 1)\n"
        "    SELECT count(*) INTO changed FROM j;\n    RETURN changed;\nEND $$;",
    ),
]
