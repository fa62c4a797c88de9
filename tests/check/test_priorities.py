"""Lesson 05's checker accepts the reference priority change and names what each broken one gets wrong."""

import pytest

from pgqueue import check
from pgqueue.queues import labs

REFERENCE = str(labs.step("single-call", "priorities").excerpt("set_pipe_job_priority"))
WAITING = "\n       AND coalesce(job_assigned_process_uuid, '') = '' AND job_finished IS NULL;"
JOBS_UPDATE = (
    "    UPDATE job_queue SET job_priority = p_priority\n     WHERE pipe_job_id = p_pipe_job_id"
    + WAITING
    + "\n"
)
PIPE_UPDATE = (
    "    UPDATE pipe_job_queue SET pipe_job_priority = p_priority WHERE pipe_job_id = p_pipe_job_id;\n"
)


def broken(old: str, new: str) -> str:
    assert old in REFERENCE, old
    return REFERENCE.replace(old, new)


def test_the_reference_priority_change_holds():
    verdict = check.priority_change(REFERENCE)
    assert verdict.holds, str(verdict)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (broken(JOBS_UPDATE, ""), "kept priority 100"),
        (broken(WAITING, ";"), "changed although taken or finished"),
        (
            broken("     WHERE pipe_job_id = p_pipe_job_id\n       AND", "     WHERE"),
            "of another pipe job changed too",
        ),
        # the request's pipe jobs all changed: the scene's request has more than one
        (
            broken(
                "     WHERE pipe_job_id = p_pipe_job_id\n",
                "     WHERE pipe_job_id IN (SELECT pipe_job_id FROM pipe_job_queue WHERE request_id =\n"
                "           (SELECT request_id FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id))\n",
            ),
            ", though of the same request ",
        ),
        (
            broken("        RAISE EXCEPTION 'no pipe job %', p_pipe_job_id;\n", "        RETURN 0;\n"),
            "returned 0: an unknown pipe job must raise",
        ),
        (broken("RETURN changed;", "RETURN 1;"), "returned 1, but pipe job"),
        (
            broken(
                PIPE_UPDATE + "    IF NOT FOUND THEN",
                "    IF NOT EXISTS (SELECT 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id) THEN",
            ),
            "created by create_jobs after the change, got priority 100",
        ),
        (
            broken("RETURNS integer", "RETURNS void").replace("RETURN changed;", "RETURN;"),
            "returned '', but pipe job",
        ),
    ],
    ids=[
        "waiting-kept",
        "running-changed",
        "other-pipe-job",
        "same-request",
        "unknown-passes",
        "wrong-count",
        "pipe-job-kept",
        "returns-nothing",
    ],
)
def test_a_broken_priority_change_is_refused_in_plain_words(change, says):
    # the scene's ids, sizes and new priority are drawn: the sentences are matched without them
    verdict = check.priority_change(change)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
