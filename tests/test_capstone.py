"""Lesson 12's capstone: a short chaos round on the hardened lab rebuilt with the learner's routines.

The corpus tests/corpora/l12_chaos_on_yours.py runs wrong and right piece sets through it.
"""

import ast
import json
from pathlib import Path

import pytest

from pgqueue import chaos
from pgqueue.errors import PgQueueError

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "12-build-the-hardened-queue.ipynb"
EXERCISES = {
    "claim_jobs": "my_claim",
    "rescue_jobs": "my_rescue",
    "hold_jobs": "my_hold",
    "pipe_job_takes_turn": "my_gate",
}


def _assigned(source: str, name: str) -> list[ast.expr]:
    return [
        node.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name]
    ]


def test_a_routine_the_round_does_not_replace_is_named_before_anything_is_touched():
    with pytest.raises(PgQueueError, match="not find_job"):
        chaos.on_yours({"find_job": "SELECT 1"})


def test_sql_postgresql_refuses_ends_the_round_before_it_starts_with_its_words():
    found = chaos.on_yours({"claim_jobs": "CREATE FUNCTION claim_jobs( RETURNS"})
    assert not found.held and found.kills == 0
    assert found.problems[0].startswith("claim_jobs: PostgreSQL refused your SQL"), found.problems


def test_the_lessons_skeletons_are_the_ones_its_exercise_cells_show():
    # the capstone runs a piece left as its skeleton as the kit's: the notebook's copy of each
    # skeleton must be what the learner's cell holds before it is written
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    sources = [s for s in code if not s.lstrip().startswith("%")]  # IPython magics are not Python
    exercise = {
        routine: next(value for s in sources for value in _assigned(s, name))
        for routine, name in EXERCISES.items()
    }
    kept = next(value for s in sources for value in _assigned(s, "skeletons"))
    skeletons = ast.literal_eval(kept)
    assert set(skeletons) == set(EXERCISES) == set(chaos.YOURS)
    for routine, value in exercise.items():
        assert ast.literal_eval(value) == skeletons[routine], f"{routine}: the skeleton kept differs"
