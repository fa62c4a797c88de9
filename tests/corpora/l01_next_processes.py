"""Lesson 01's next_processes: self-joins learners write, wrong ones named by their mistake."""

import ast

from pgqueue import check
from pgqueue.paths import NOTEBOOKS_DIR
from tests.corpora import Right, Wrong, variant

JUDGE = check.next_processes
# the solution's string, read without running the solution (which runs the checker)
_SOLUTION = ast.parse((NOTEBOOKS_DIR / "solutions" / "01_next_processes.py").read_text(encoding="utf-8"))
REFERENCE = next(
    node.value.value
    for node in _SOLUTION.body
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "my_next"
)
HEAD = (
    "CREATE FUNCTION next_processes(p_pipe_id integer, p_process_name varchar)\n"
    "RETURNS SETOF pipeline_processes LANGUAGE sql STABLE AS $$\n"
)
SAME_PIPE = "nxt.pipe_id = this.pipe_id AND "
ONE_LATER = "nxt.process_order = this.process_order + 1"
WHERE = "this.pipe_id = p_pipe_id AND this.process_name = p_process_name"


def join(on: str = SAME_PIPE + ONE_LATER, where: str = WHERE, kind: str = "JOIN") -> str:
    """A self-join of pipeline_processes with the learner's ON and WHERE."""
    return (
        f"{HEAD}    SELECT nxt.* FROM pipeline_processes this {kind} pipeline_processes nxt ON {on}\n"
        f"     WHERE {where};\n$$;\n"
    )


# the example pipelines' answers written out: right for them, for no other pipeline
HARD_CODED = (
    f"{HEAD}    SELECT * FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_name =\n"
    "      CASE p_process_name WHEN 'first_process' THEN 'second_process'\n"
    "           WHEN 'second_process' THEN\n"
    "               CASE p_pipe_id WHEN 1 THEN 'third_process' ELSE 'report_process' END\n"
    "      END;\n$$;\n"
)

WRONG = [
    # written blind: the name matched as a pattern, where '_' is any character and case is ignored
    Wrong(
        "name-matched-with-ilike",
        join(where="this.pipe_id = p_pipe_id AND this.process_name ILIKE p_process_name"),
        "a step whose name only looks like",
    ),
    Wrong(
        "forgets-the-pipeline-in-the-join",
        join(ONE_LATER),
        "a step of another pipeline crept in",
        also=(
            "after `first_process` in pipeline 1 you answered second_process (step 2 of pipeline 1), "
            "report_process (step 2 of pipeline 2) and step_",
        ),
    ),
    Wrong(
        "previous-step",
        join(SAME_PIPE + "nxt.process_order = this.process_order - 1"),
        "after `first_process` in pipeline 1 you answered no row; the next step is second_process",
    ),
    Wrong(
        "every-later-step",
        join(SAME_PIPE + "nxt.process_order > this.process_order"),
        "only the step one after it, not every later step",
    ),
    # also written blind; its join keeps pipe_id, so "match pipe_id too" pointed at the wrong part
    Wrong(
        "ignores-the-pipeline-asked",
        join(where="this.process_name = p_process_name"),
        "after `second_process` in pipeline 1 you answered third_process (step 3 of pipeline 1) and "
        "report_process (step 2 of pipeline 2); the next step is third_process; report_process (step 2 of "
        "pipeline 2) is the step after `second_process` in its own pipeline, not in pipeline 1: your answer "
        "does not keep to the pipeline asked about",
    ),
    # the next four written blind
    Wrong(
        "pipeline-or-name",
        join(where="this.pipe_id = p_pipe_id OR this.process_name = p_process_name"),
        "your answer is the step after every step of pipeline 1, not only after `first_process`",
    ),
    Wrong(
        "or-in-the-join",
        join(SAME_PIPE.replace(" AND ", " OR ") + ONE_LATER),
        "steps of other pipelines and other orders crept in",
    ),
    Wrong(
        "the-step-asked-found-in-any-pipeline",
        join(ONE_LATER, where="nxt.pipe_id = p_pipe_id AND this.process_name = p_process_name"),
        "the step you start from (`second_process`) is not kept to p_pipe_id",
    ),
    Wrong(
        "raises-after-the-last-step",
        "CREATE FUNCTION next_processes(p_pipe_id integer, p_process_name varchar)\n"
        "RETURNS SETOF pipeline_processes LANGUAGE plpgsql STABLE AS $$\nBEGIN\n"
        f"    RETURN QUERY SELECT nxt.* FROM pipeline_processes this JOIN pipeline_processes nxt\n"
        f"      ON {SAME_PIPE}{ONE_LATER} WHERE {WHERE};\n"
        "    IF NOT FOUND THEN RAISE EXCEPTION 'no process after %', p_process_name; END IF;\nEND $$;\n",
        "is answered with no row, not an error",
    ),
    # the examples end at order 3; the drawn pipeline goes on past it
    Wrong(
        "orders-capped-at-the-examples",
        join(where=WHERE + " AND nxt.process_order <= 3"),
        "you answered no row; the next step is",
    ),
    Wrong(
        "left-join-keeps-the-last-step",
        join(kind="LEFT JOIN"),
        "a row whose columns are all NULL is no step",
    ),
    Wrong(
        "wraps-around-to-the-first-step",
        f"{HEAD}    SELECT * FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_order =\n"
        "      coalesce((SELECT nxt.process_order FROM pipeline_processes this JOIN pipeline_processes nxt\n"
        f"                  ON {SAME_PIPE}{ONE_LATER} WHERE {WHERE}), 1);\n$$;\n",
        "it is the pipeline's last step, so the answer is no row",
    ),
    Wrong("hard-coded-example-steps", HARD_CODED, "you answered no row; the next step is"),
    # "the next step" read as the next one found later: the same as + 1 until the orders skip one
    Wrong(
        "the-least-later-step",
        f"{HEAD}    SELECT nxt.* FROM pipeline_processes this JOIN pipeline_processes nxt\n"
        f"      ON {SAME_PIPE}nxt.process_order > this.process_order\n"
        f"     WHERE {WHERE}\n     ORDER BY nxt.process_order LIMIT 1;\n$$;\n",
        "not the next one found later",
        also=("has no step at process_order ",),
    ),
    Wrong(
        "min-of-the-later-orders",
        f"{HEAD}    SELECT * FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_order =\n"
        "      (SELECT min(nxt.process_order) FROM pipeline_processes this JOIN pipeline_processes nxt\n"
        f"          ON {SAME_PIPE}nxt.process_order > this.process_order WHERE {WHERE});\n$$;\n",
        "(its orders jump from",
    ),
    Wrong(
        "window-function-lead",
        f"{HEAD}    SELECT p.* FROM pipeline_processes p JOIN (\n"
        "      SELECT pipe_id, process_name,\n"
        "             lead(process_name) OVER (PARTITION BY pipe_id ORDER BY process_order) AS next_name\n"
        "        FROM pipeline_processes) w ON w.pipe_id = p.pipe_id AND w.next_name = p.process_name\n"
        "     WHERE w.pipe_id = p_pipe_id AND w.process_name = p_process_name;\n$$;\n",
        "so the answer is no row: the next step is the one whose process_order is one more",
    ),
    # the step's order looked up by name alone: the first pipeline that has it wins
    Wrong(
        "order-looked-up-by-name-alone",
        f"{HEAD}    SELECT * FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_order = 1 +\n"
        "      (SELECT process_order FROM pipeline_processes WHERE process_name = p_process_name\n"
        "        ORDER BY pipe_id LIMIT 1);\n$$;\n",
        "you answered",
    ),
    Wrong(
        "unknown-step-answers-the-first",
        f"{HEAD}    SELECT nxt.* FROM pipeline_processes nxt\n"
        "     WHERE nxt.pipe_id = p_pipe_id AND nxt.process_order =\n"
        "      coalesce((SELECT process_order FROM pipeline_processes\n"
        "                 WHERE pipe_id = p_pipe_id AND process_name = p_process_name), 0) + 1;\n$$;\n",
        "the answer should be no row",
        also=("but pipeline 1 has no step `no_such_",),
    ),
    Wrong(
        "names-only",
        variant(HEAD, "SETOF pipeline_processes", "SETOF varchar")
        + "    SELECT nxt.process_name FROM pipeline_processes this JOIN pipeline_processes nxt\n"
        f"      ON {SAME_PIPE}{ONE_LATER} WHERE {WHERE};\n$$;\n",
        "your next_processes returns SETOF character varying; the task asks for",
    ),
    Wrong(
        "a-procedure",
        "CREATE PROCEDURE next_processes(p_pipe_id integer, p_process_name varchar)\n"
        "LANGUAGE sql AS $$ SELECT 1 $$;",
        "your next_processes returns nothing: it is a PROCEDURE; the task asks for",
    ),
    # the lesson's skeleton run as it stands: PostgreSQL cannot read it
    Wrong(
        "the-skeleton-unfilled",
        f"{HEAD}    SELECT nxt.* FROM pipeline_processes this\n"
        "      JOIN pipeline_processes nxt ON -- TODO: which rows of nxt belong after this?\n"
        "     WHERE -- TODO: this is the step p_process_name of pipeline p_pipe_id\n$$;\n",
        "PostgreSQL refused your SQL",
        also=("(it still has a TODO: is that part written?)",),
    ),
    Wrong(
        "its-own-step", join(SAME_PIPE + "nxt.process_order = this.process_order"), "does not come after it"
    ),
    Wrong(
        "pipeline-as-text",
        variant(HEAD, "p_pipe_id integer", "p_pipe_id text")
        + "    SELECT nxt.* FROM pipeline_processes this JOIN pipeline_processes nxt\n"
        f"      ON {SAME_PIPE}{ONE_LATER}\n"
        "     WHERE this.pipe_id::text = p_pipe_id AND this.process_name = p_process_name;\n$$;\n",
        "next_processes(1, 'first_process') failed: function next_processes(integer, character varying) "
        "does not exist",
    ),
]

RIGHT = [
    Right("the-lessons-reference", REFERENCE),
    Right(
        "plpgsql-return-query",
        "CREATE FUNCTION next_processes(p_pipe_id integer, p_process_name varchar)\n"
        "RETURNS SETOF pipeline_processes LANGUAGE plpgsql AS $$\nBEGIN\n"
        "    RETURN QUERY SELECT nxt.* FROM pipeline_processes this, pipeline_processes nxt\n"
        f"     WHERE {SAME_PIPE}{ONE_LATER} AND {WHERE};\nEND $$;\n",
    ),
    Right(
        "subquery-for-the-order",
        f"{HEAD}    SELECT * FROM pipeline_processes WHERE pipe_id = p_pipe_id AND process_order =\n"
        "      (SELECT process_order + 1 FROM pipeline_processes\n"
        "        WHERE pipe_id = p_pipe_id AND process_name = p_process_name);\n$$;\n",
    ),
    # lead() is the step after in the window, wherever it is: kept only when it is one more
    Right(
        "window-function-lead-one-more",
        f"{HEAD}    SELECT p.* FROM pipeline_processes p JOIN (\n"
        "      SELECT pipe_id, process_name, process_order,\n"
        "             lead(process_name) OVER w AS next_name, lead(process_order) OVER w AS next_order\n"
        "        FROM pipeline_processes WINDOW w AS (PARTITION BY pipe_id ORDER BY process_order)) s\n"
        "          ON s.pipe_id = p.pipe_id AND s.next_name = p.process_name\n"
        "     WHERE s.pipe_id = p_pipe_id AND s.process_name = p_process_name\n"
        "       AND s.next_order = s.process_order + 1;\n$$;\n",
    ),
    Right(
        "exists-for-the-step-asked",
        f"{HEAD}    SELECT nxt.* FROM pipeline_processes nxt\n"
        "     WHERE nxt.pipe_id = p_pipe_id\n"
        "       AND EXISTS (SELECT FROM pipeline_processes this\n"
        "                    WHERE this.pipe_id = nxt.pipe_id AND this.process_name = p_process_name\n"
        "                      AND this.process_order = nxt.process_order - 1);\n$$;\n",
    ),
]
