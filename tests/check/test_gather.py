"""Lesson 06's checker accepts the reference gather_batch and names what each broken one gets wrong."""

import pytest

from pgqueue import check
from pgqueue.queues import labs

REFERENCE = labs.step("single-call", "gather").lesson["gather_batch"]
CONDITION = """               AND NOT EXISTS (SELECT 1 FROM job_queue m
                                WHERE m.job_id = ANY (w.job_creater_set_elements)
                                  AND m.job_finished IS NOT TRUE)
"""
# the original's order: the best set first (LIMIT 1), tested for completeness afterwards
ORIGINAL = labs.step("single-call", "gather").lesson["gather_batch_original"]


def test_the_reference_holds():
    assert CONDITION in REFERENCE
    verdict = check.gather_batch(REFERENCE)
    assert verdict.holds, str(verdict)
    assert len(verdict.held) == 12  # eleven situations, and the fan-out sizes they were built with


def test_the_skeleton_with_its_todo_is_judged_on_what_it_does():
    # a TODO no longer refuses an answer by itself: this one hands out incomplete sets, and that is said
    verdict = check.gather_batch(
        REFERENCE.replace(CONDITION, "               -- TODO: every member finished\n")
    )
    assert not verdict.holds and "had not finished" in str(verdict), str(verdict)


@pytest.mark.parametrize("sizes", [[2, 7], [6, 3, 5]])
def test_the_fan_out_sizes_vary_and_are_said(sizes):
    verdict = check.gather_batch(REFERENCE, sizes=sizes)
    assert verdict.holds, str(verdict)
    shown = sorted(sizes)
    assert f"the fan-outs had {', '.join(map(str, shown[:-1]))} and {shown[-1]} jobs" in str(verdict)


def test_a_size_that_is_no_fan_out_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 jobs, got \\[1\\]"):
        check.gather_batch(REFERENCE, sizes=[1])


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        (REFERENCE.replace(CONDITION, ""), "while job "),
        (
            REFERENCE.replace(
                CONDITION, CONDITION.replace("w.job_creater_set_elements", "w.job_parent_set_elements")
            ),
            "of its parallel set {",
        ),
        (ORIGINAL, "was complete but you answered NULL"),
        (
            REFERENCE.replace("ORDER BY min(w.job_priority), min(w.job_create_timestamp)", "ORDER BY 1"),
            "comes first (priority, then age)",
        ),
        (
            REFERENCE.replace("AND w.job_creater_set_elements IS NOT NULL\n", "").replace(
                "WHERE j.job_creater_set_elements = (",
                "WHERE j.job_creater_set_elements IS NOT DISTINCT FROM (",
            ),
            "an entry job",
        ),
        (
            REFERENCE.replace(
                "AND j.job_process_name = p_name AND j.job_process_version = p_version\n", ""
            ).replace("AND w.job_process_name = p_name AND w.job_process_version = p_version\n", ""),
            "which waits for",
        ),
        (
            REFERENCE.replace("RETURNS integer[]", "RETURNS text").replace(
                "SELECT array_agg(j.job_id ORDER BY j.job_id)",
                "SELECT array_to_string(array_agg(j.job_id ORDER BY j.job_id), ',')",
            ),
            "must return integer[]",
        ),
        (
            "CREATE FUNCTION gather_batch(p_name varchar, p_version varchar) RETURNS integer[] "
            "LANGUAGE sql AS $$ SELECT job_id FROM no_such_table $$;",
            "PostgreSQL refused your SQL",
        ),
    ],
    ids=[
        "no-condition",
        "parents-not-set",
        "original-limit-first",
        "no-priority",
        "entry-jobs",
        "other-process",
        "not-an-array",
        "no-table",
    ],
)
def test_a_broken_gather_is_refused_in_plain_words(broken, says):
    verdict = check.gather_batch(broken)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
