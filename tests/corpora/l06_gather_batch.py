"""Lesson 06's gather_batch: the waiting jobs of the best parallel set whose every member finished."""

import functools

from pgqueue import check
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant

JUDGE = check.gather_batch

LESSON = labs.step("single-call", "gather").lesson
REFERENCE = str(LESSON["gather_batch"])
COMPLETE = """               -- every member of the parallel set has finished
               AND NOT EXISTS (SELECT 1 FROM job_queue m
                                WHERE m.job_id = ANY (w.job_creater_set_elements)
                                  AND m.job_finished IS NOT TRUE)
"""
ORDER = "ORDER BY min(w.job_priority), min(w.job_create_timestamp)"
GROUP = "             GROUP BY w.job_creater_set_elements\n"


changed = functools.partial(variant, REFERENCE)  # the reference with one change


def condition(new: str) -> str:
    """The reference with another completeness test in the TODO's place."""
    return changed(COMPLETE, new)


WRONG = [
    Wrong("no-completeness-test", condition(""), says="had not finished", also=("while job ",)),
    # written blind: a set ranked by its least urgent job, its newest job, or its lowest id
    Wrong(
        "set-priority-by-its-worst-job",
        changed(ORDER, "ORDER BY max(w.job_priority), min(w.job_create_timestamp)"),
        says="with a complete set whose jobs have priority 50 but one of 1",
    ),
    Wrong(
        "set-age-by-its-newest-job",
        changed(ORDER, "ORDER BY min(w.job_priority), max(w.job_create_timestamp)"),
        says="whose hand-overs interleaved",
    ),
    Wrong(
        "set-age-by-its-lowest-id",
        changed(ORDER, "ORDER BY min(w.job_priority), min(w.job_id)"),
        says="whose hand-overs interleaved",
    ),
    # no member still waits, but one a worker runs has not finished either
    Wrong(
        "no-member-waiting-is-not-every-member-finished",
        condition("""               AND NOT EXISTS (SELECT 1 FROM job_queue m
                                WHERE m.job_id = ANY (w.job_creater_set_elements) AND m.job_finished IS NULL
                                  AND coalesce(m.job_assigned_process_uuid, '') = '')
"""),
        says="whose last member a worker still runs",
    ),
    Wrong(
        "todo-left-as-it-is",
        condition("               -- TODO: AND every member of w.job_creater_set_elements has finished\n"),
        says="had not finished",
    ),
    # the reviewer's case: every fan-out of the old scene had 4 jobs
    Wrong(
        "hard-coded-four",
        variant(condition(""), GROUP, GROUP + "            HAVING count(*) = 4\n"),
        says="so your gather_batch depends on how many jobs the set has (a count of 4?)",
    ),
    # the same constant, counted over the finished members of the creators' set
    Wrong(
        "four-members-finished",
        condition("""               AND (SELECT count(*) FROM job_queue m
                     WHERE m.job_id = ANY (w.job_creater_set_elements) AND m.job_finished) = 4
"""),
        says="so your gather_batch depends on how many jobs the set has (a count of 4?)",
    ),
    # the waiting job's own sibling set (itself, after a one-job hand-over) for the set that made it
    Wrong(
        "own-set-not-creators",
        condition(variant(COMPLETE, "w.job_creater_set_elements", "w.job_set_elements")),
        says="so you look at job_set_elements, each waiting job's own sibling set",
    ),
    Wrong(
        "parents-not-creators",
        condition(variant(COMPLETE, "w.job_creater_set_elements", "w.job_parent_set_elements")),
        says="had not finished",
        also=("of its parallel set {",),
    ),
    # NULL against false: a running member's job_finished is NULL, so `= false` finds none
    Wrong(
        "unfinished-is-false",
        condition(variant(COMPLETE, "IS NOT TRUE", "= false")),
        says="once the checker set it to false your gather_batch held the set back, so it takes only false",
    ),
    Wrong(
        "original-tests-after-limit",
        str(LESSON["gather_batch_original"]),
        says="was complete but you answered NULL",
    ),
    Wrong("no-priority-order", changed(ORDER, "ORDER BY 1"), says="comes first (priority, then age)"),
    Wrong(
        "newest-first",
        changed(ORDER, "ORDER BY min(w.job_priority), max(w.job_create_timestamp) DESC"),
        says="comes first (priority, then age)",
    ),
    # NULL against '': the original marks "no worker" with either
    Wrong(
        "null-only-no-worker",
        changed(
            "WHERE coalesce(w.job_assigned_process_uuid, '') = ''",
            "WHERE w.job_assigned_process_uuid IS NULL",
        ),
        says="job_assigned_process_uuid is ''",
    ),
    # written blind: with no test that a job came from a set, jobs of no set form a group of their
    # own, complete by the NOT EXISTS, and ahead of a real set the answer is NULL
    Wrong(
        "jobs-of-no-set-grouped",
        changed("               AND w.job_creater_set_elements IS NOT NULL\n", ""),
        says="that no fan-out made (job_creater_set_elements NULL): set",
    ),
    # written blind: an empty array for none, which find_job's IS NULL test lets through
    Wrong(
        "empty-array-for-none",
        changed(
            "SELECT array_agg(j.job_id ORDER BY j.job_id)",
            "SELECT coalesce(array_agg(j.job_id ORDER BY j.job_id), '{}')",
        ),
        says="returned {} (an empty array)",
    ),
    Wrong(
        "entry-jobs-too",
        variant(
            changed("AND w.job_creater_set_elements IS NOT NULL\n", ""),
            "WHERE j.job_creater_set_elements = (",
            "WHERE j.job_creater_set_elements IS NOT DISTINCT FROM (",
        ),
        says="an entry job",
    ),
    Wrong(
        "any-process",
        variant(
            changed("AND j.job_process_name = p_name AND j.job_process_version = p_version\n", ""),
            "AND w.job_process_name = p_name AND w.job_process_version = p_version\n",
            "",
        ),
        says="which waits for",
    ),
    Wrong(
        "hard-coded-gatherer",
        variant(
            changed(
                "= p_name AND w.job_process_version = p_version",
                "= 'movemonitor' AND w.job_process_version = '1.0.0'",
            ),
            "= p_name AND j.job_process_version = p_version",
            "= 'movemonitor' AND j.job_process_version = '1.0.0'",
        ),
        says="which waits for",
    ),
    # every complete set's jobs at once: no grouping down to one set
    Wrong(
        "every-complete-set-at-once",
        """
CREATE FUNCTION gather_batch(p_name varchar, p_version varchar) RETURNS integer[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(w.job_id ORDER BY w.job_id)
      FROM job_queue w
     WHERE coalesce(w.job_assigned_process_uuid, '') = '' AND w.job_finished IS NULL
       AND w.job_process_name = p_name AND w.job_process_version = p_version
       AND w.job_creater_set_elements IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM job_queue m
                        WHERE m.job_id = ANY (w.job_creater_set_elements) AND m.job_finished IS NOT TRUE)
$$;
""",
        says="which mixes the jobs of",
    ),
    Wrong(
        "returns-text",
        variant(
            changed("RETURNS integer[]", "RETURNS text"),
            "SELECT array_agg(j.job_id ORDER BY j.job_id)",
            "SELECT array_to_string(array_agg(j.job_id ORDER BY j.job_id), ',')",
        ),
        says="must return integer[]",
    ),
]

# as many jobs waiting as the set has members, read as every member finished: right only while
# each member makes one job of the next step (written blind too; that learner's member made two)
WRONG.append(
    Wrong(
        "count-equals-cardinality",
        variant(
            condition(""),
            GROUP,
            GROUP + "            HAVING count(*) = cardinality(w.job_creater_set_elements)\n",
        ),
        "one of whose members is not finished, while another made two jobs",
    )
)
RIGHT = [
    Right("reference-not-exists", REFERENCE),
    # as many waiting hand-overs as the set has members: every member finished and handed over
    Right(
        "join-and-bool-and",
        """
CREATE FUNCTION gather_batch(p_name varchar, p_version varchar) RETURNS integer[]
LANGUAGE sql STABLE AS $$
    WITH waiting AS (
        SELECT job_id, job_priority, job_create_timestamp, job_creater_set_elements AS parallel
          FROM job_queue
         WHERE (job_assigned_process_uuid IS NULL OR job_assigned_process_uuid = '')
           AND job_finished IS NULL
           AND job_process_name = p_name AND job_process_version = p_version
           AND job_creater_set_elements IS NOT NULL
    ), best AS (
        SELECT w.parallel
          FROM waiting w JOIN job_queue m ON m.job_id = ANY (w.parallel)
         GROUP BY w.parallel
        HAVING bool_and(coalesce(m.job_finished, false))
         ORDER BY min(w.job_priority), min(w.job_create_timestamp)
         LIMIT 1
    )
    SELECT array_agg(job_id ORDER BY job_id) FROM waiting WHERE parallel = (SELECT parallel FROM best)
$$;
""",
    ),
    Right(
        "plpgsql-loop",
        """
CREATE FUNCTION gather_batch(p_name varchar, p_version varchar) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    candidate integer[];
BEGIN
    FOR candidate IN
        SELECT job_creater_set_elements FROM job_queue
         WHERE nullif(job_assigned_process_uuid, '') IS NULL AND job_finished IS NULL
           AND job_process_name = p_name AND job_process_version = p_version
           AND job_creater_set_elements IS NOT NULL
         GROUP BY job_creater_set_elements
         ORDER BY min(job_priority), min(job_create_timestamp)
    LOOP
        IF (SELECT count(*) FROM job_queue WHERE job_id = ANY (candidate) AND job_finished)
           = cardinality(candidate) THEN
            RETURN (SELECT array_agg(job_id ORDER BY job_id) FROM job_queue
                     WHERE job_creater_set_elements = candidate
                       AND nullif(job_assigned_process_uuid, '') IS NULL AND job_finished IS NULL
                       AND job_process_name = p_name AND job_process_version = p_version);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
""",
    ),
    Right(
        "true-equals-all",
        condition("""               AND true = ALL (SELECT coalesce(m.job_finished, false) FROM job_queue m
                                WHERE m.job_id = ANY (w.job_creater_set_elements))
"""),
    ),
]
