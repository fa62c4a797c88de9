"""Lesson 05's set_pipe_job_priority: the changes learners write, wrong ones named by their mistake."""

from pgqueue import check, labs
from tests.corpora import Right, Wrong

JUDGE = check.priority_change
REFERENCE = str(labs.step("single-call", "priorities").excerpt("set_pipe_job_priority"))
WAITING = "coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL"
HEAD = (
    "CREATE FUNCTION set_pipe_job_priority(p_pipe_job_id integer, p_priority smallint)\n"
    "RETURNS integer LANGUAGE plpgsql AS $$\nDECLARE\n    changed integer;\nBEGIN\n"
)


PIPE = "    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;\n"
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
    Wrong("an-unknown-id-passes-silently", body(unknown=""), "an unknown pipe job must raise"),
    Wrong(
        "pipe-job-left-as-it-was",
        body(
            pipe="",
            unknown="    PERFORM 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id;\n"
            "    IF NOT FOUND THEN RAISE EXCEPTION 'no pipe job %', p_pipe_job_id; END IF;\n",
        ),
        "got priority 100: create_jobs reads",
    ),
    Wrong("returns-one", body(returned="1"), "it must return how many waiting jobs it changed"),
    Wrong(
        "returns-every-job-of-the-pipe-job",
        body(returned="(SELECT count(*) FROM job_queue WHERE pipe_job_id = p_pipe_job_id)"),
        "it must return how many waiting jobs it changed",
    ),
    Wrong(
        "raises-after-changing",
        f"{HEAD}    UPDATE job_queue SET job_priority = p_priority WHERE {WAITING};\n"
        "    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;\n"
        "    IF NOT FOUND THEN RAISE NOTICE 'no pipe job %', p_pipe_job_id; END IF;\n"
        "    RETURN 0;\nEND $$;",
        "an unknown pipe job must raise",
    ),
]

RIGHT = [
    Right("the-lessons-reference", REFERENCE),
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
        f"{HEAD}    IF NOT EXISTS (SELECT FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id) THEN\n"
        "        RAISE EXCEPTION 'pipe job % does not exist', p_pipe_job_id USING ERRCODE = '22023';\n"
        "    END IF;\n"
        "    WITH p AS (UPDATE pipe_job_queue SET pipe_job_priority = p_priority\n"
        "                WHERE pipe_job_id = p_pipe_job_id),\n"
        "         j AS (UPDATE job_queue SET job_priority = p_priority\n"
        f"                WHERE pipe_job_id = p_pipe_job_id AND {WAITING} RETURNING 1)\n"
        "    SELECT count(*) INTO changed FROM j;\n    RETURN changed;\nEND $$;",
    ),
]
