"""Lesson 05's checker accepts the reference priority change and names what each broken one gets wrong."""

import pytest

from pgqueue import check, labs

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
        (broken(JOBS_UPDATE, ""), "waiting job(s) [1, 3] of pipe job 1 kept priority 100"),
        (broken(WAITING, ";"), "job(s) [4, 5] changed although taken or finished"),
        (
            broken("     WHERE pipe_job_id = p_pipe_job_id\n       AND", "     WHERE"),
            "job 2 of another pipe job changed too",
        ),
        (
            broken("        RAISE EXCEPTION 'no pipe job %', p_pipe_job_id;\n", "        RETURN 0;\n"),
            "set_pipe_job_priority(999, 10) returned 0: an unknown pipe job must raise",
        ),
        (broken("RETURN changed;", "RETURN 1;"), "returned 1, but pipe job 1 had 2 waiting jobs"),
        (
            broken(
                PIPE_UPDATE + "    IF NOT FOUND THEN",
                "    IF NOT EXISTS (SELECT 1 FROM pipe_job_queue WHERE pipe_job_id = p_pipe_job_id) THEN",
            ),
            "job 6, created by create_jobs after the change, got priority 100",
        ),
        (
            broken("RETURNS integer", "RETURNS void").replace("RETURN changed;", "RETURN;"),
            "returned '', but pipe job 1 had 2 waiting jobs",
        ),
    ],
    ids=[
        "waiting-kept",
        "running-changed",
        "other-pipe-job",
        "unknown-passes",
        "wrong-count",
        "pipe-job-kept",
        "returns-nothing",
    ],
)
def test_a_broken_priority_change_is_refused_in_plain_words(change, says):
    verdict = check.priority_change(change)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
