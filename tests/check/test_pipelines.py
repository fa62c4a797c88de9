"""Lesson 01's checker accepts the reference next_processes and names what each broken one gets wrong."""

import runpy

import pytest

from pgqueue import check
from pgqueue.paths import NOTEBOOKS_DIR

HEAD = (
    "CREATE FUNCTION next_processes(p_pipe_id integer, p_process_name varchar)\n"
    "RETURNS SETOF pipeline_processes LANGUAGE sql STABLE AS $$\n"
)
JOIN = "    SELECT nxt.* FROM pipeline_processes this JOIN pipeline_processes nxt ON "
WHERE = "\n     WHERE this.pipe_id = p_pipe_id AND this.process_name = p_process_name;\n$$;\n"
SAME_PIPE = "nxt.pipe_id = this.pipe_id AND "


def _reference() -> str:
    solution = NOTEBOOKS_DIR / "solutions" / "01_next_processes.py"
    return runpy.run_path(str(solution), run_name="not_main")["my_next"]


def test_the_reference_holds():
    verdict = check.next_processes(_reference())
    assert verdict.holds, str(verdict)


def test_the_lessons_skeleton_is_not_tried_yet():
    verdict = check.next_processes(HEAD + JOIN + "-- TODO: the same pipeline, one step later" + WHERE)
    assert not verdict.holds
    assert "still has a TODO" in str(verdict), str(verdict)


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        # the original view's mistake in another form: steps of all pipelines in one list
        (
            HEAD + JOIN + "nxt.process_order = this.process_order + 1" + WHERE,
            "after `first_process` in pipeline 1 you answered second_process (step 2 of pipeline 1), "
            "report_process (step 2 of pipeline 2) and step_",
        ),
        (
            HEAD + JOIN + SAME_PIPE + "nxt.process_order = this.process_order - 1" + WHERE,
            "after `first_process` in pipeline 1 you answered no row; the next step is second_process",
        ),
        (
            HEAD + JOIN + SAME_PIPE + "nxt.process_order = this.process_order" + WHERE,
            "does not come after it",
        ),
        (
            HEAD + JOIN + SAME_PIPE + "nxt.process_order > this.process_order" + WHERE,
            "only the step one after it, not every later step",
        ),
        # the least later step: right while the orders count 1, 2, 3; the drawn pipeline skips one
        (
            HEAD
            + JOIN
            + SAME_PIPE
            + "nxt.process_order > this.process_order"
            + WHERE.replace(";\n$$", "\n     ORDER BY nxt.process_order LIMIT 1;\n$$"),
            "has no step at process_order ",
        ),
        # the step asked about is found in every pipeline: second_process is in both
        (
            HEAD + JOIN + SAME_PIPE + "nxt.process_order = this.process_order + 1\n"
            "     WHERE this.process_name = p_process_name;\n$$;\n",
            "after `second_process` in pipeline 1 you answered third_process (step 3 of pipeline 1) and "
            "report_process (step 2 of pipeline 2); the next step is third_process; report_process "
            "(step 2 of pipeline 2) is the step after `second_process` in its own pipeline, not in "
            "pipeline 1: your answer does not keep to the pipeline asked about",
        ),
        # wraps around: the last step hands work back to the first
        (
            HEAD + "    SELECT * FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_order = "
            "coalesce((SELECT max(nxt.process_order) FROM pipeline_processes this "
            "JOIN pipeline_processes nxt "
            "ON nxt.pipe_id = this.pipe_id AND nxt.process_order = this.process_order + 1 "
            "WHERE this.pipe_id = p_pipe_id AND this.process_name = p_process_name), 1);\n$$;\n",
            "it is the pipeline's last step, so the answer is no row",
        ),
        (
            HEAD.replace("SETOF pipeline_processes", "SETOF varchar")
            + "    SELECT nxt.process_name FROM pipeline_processes this JOIN pipeline_processes nxt ON "
            + SAME_PIPE
            + "nxt.process_order = this.process_order + 1"
            + WHERE,
            "your next_processes returns SETOF character varying; the task asks for",
        ),
        (
            HEAD.replace("p_pipe_id integer", "p_pipe_id text")
            + JOIN
            + SAME_PIPE
            + "nxt.process_order = this.process_order + 1"
            + WHERE.replace("this.pipe_id = p_pipe_id", "this.pipe_id::text = p_pipe_id"),
            "next_processes(1, 'first_process') failed: function next_processes(integer, character varying) "
            "does not exist",
        ),
        # asked about a process that is no step, it answers the first step anyway
        (
            HEAD
            + JOIN
            + SAME_PIPE
            + "nxt.process_order = this.process_order + 1"
            + WHERE.removesuffix(";\n$$;\n")
            + "\n UNION ALL SELECT * FROM pipeline_processes WHERE NOT EXISTS "
            "(SELECT 1 FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_name = p_process_name)"
            " AND process_order = 1;\n$$;",
            "but pipeline 1 has no step `no_such_",
        ),
        (HEAD + "    SELECT * FROM pipeline_processes WHERE;\n$$;\n", "PostgreSQL refused your SQL"),
        (
            "CREATE PROCEDURE next_processes(p_pipe_id integer, p_process_name varchar)\n"
            "LANGUAGE sql AS $$ SELECT 1 $$;",
            "your next_processes returns nothing: it is a PROCEDURE; the task asks for",
        ),
    ],
    ids=[
        "any-pipeline",
        "previous",
        "itself",
        "every-later",
        "least-later-across-a-gap",
        "step-of-any-pipeline",
        "wraps-around",
        "names-only",
        "text-argument",
        "unknown-step",
        "syntax-error",
        "procedure",
    ],
)
def test_a_broken_next_processes_is_refused_in_plain_words(broken, says):
    verdict = check.next_processes(broken)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
