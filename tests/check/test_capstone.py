"""Lesson 12's capstone: a short chaos round on the hardened lab rebuilt with the learner's routines.

The corpus tests/corpora/l12_capstone.py runs wrong and right piece sets through it.
"""

import ast
import json
import random

import pytest

from pgqueue import queries
from pgqueue.check.capstone import YOURS, capstone, race_checks
from pgqueue.check.core import Verdict, install
from pgqueue.errors import PgQueueError
from pgqueue.lab import chaos
from pgqueue.paths import NOTEBOOKS_DIR
from pgqueue.queues import client, labs
from pgqueue.queues.heartbeats import Identity
from pgqueue.wait import until
from tests.corpora import l12_capstone as corpus

NOTEBOOK = NOTEBOOKS_DIR / "12-build-the-hardened-queue.ipynb"
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
        capstone({"find_job": "SELECT 1"})


def test_sql_postgresql_refuses_ends_the_round_before_it_starts_with_its_words():
    found = capstone({"claim_jobs": "CREATE FUNCTION claim_jobs( RETURNS"})
    assert not found.held and found.kills == 0
    assert found.problems[0].startswith("claim_jobs: PostgreSQL refused your SQL"), found.problems


def test_each_piece_of_yours_goes_through_lesson_12s_own_check_first():
    # their faults show at moments a round meets by chance: the lesson's check forces them
    found = race_checks(
        {"pipe_job_takes_turn": corpus.NO_GATE_LOCK, "hold_jobs": corpus.REFERENCE["hold_jobs"]}
    )
    said = 'pipe_job_takes_turn, in lesson 12\'s check.gate_takes_turns(poc="hardened") before the round: '
    assert found.wrong and all(line.startswith(said) for line in found.wrong), found
    assert "finished without waiting" in found.wrong[0]
    assert [line.split(" held in ")[0] for line in found.held] == ["hold_jobs"], found
    rescue = race_checks({"rescue_jobs": corpus.NO_RESCUE})
    assert rescue.wrong and not rescue.held, rescue
    said = "rescue_jobs, in lesson 12's check.rescue_jobs before the round: "
    assert rescue.wrong[0].startswith(said), rescue


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
    assert set(skeletons) == set(EXERCISES) == set(YOURS)
    for routine, value in exercise.items():
        assert ast.literal_eval(value) == skeletons[routine], f"{routine}: the skeleton kept differs"


def test_an_attempt_rescued_from_a_worker_that_had_just_beaten_is_named_a_live_rescue():
    client.fresh_lab(chaos.POC)
    races, c = queries.load("clients/races.sql"), queries.load("clients/chaos.sql")
    q = labs.step(chaos.POC, "find_job").lesson
    with labs.connect(chaos.POC) as conn:
        conn.execute(c["instruments"])
        conn.execute(q["chaos_request"], {"pipe_ids": list(chaos.REQUEST)})
        alive = Identity.new("first_process", "1.9.2")
        params = {"uuid": alive.uuid, "server": alive.server, "name": alive.name, "version": alive.version}
        conn.execute(races["hardened_ask"], params)  # a beat, then a lease
        conn.execute(races["rescue"])  # the kit's rescue leaves a worker that just beat alone
        left_alone = chaos.judge(conn).verdict.held
        assert "no attempt was rescued from a live worker (no attempt was rescued at all)" in left_alone
        frees_all = corpus.REFERENCE["rescue_jobs"].replace(corpus.LOST, "true")
        assert install(conn, frees_all, Verdict("a rescue of every lease"), replaces=["rescue_jobs"])
        conn.execute(races["rescue"])
        found = chaos.judge(conn)
    problems = "\n".join(found.problems)
    assert found.rescued_from_the_living == 1, found.summary()
    assert "1 attempts were rescued from workers that were alive (1 of them never stopped" in problems
    assert "your rescue_jobs frees jobs of live workers" in problems


PIECES = {w.mistake: w.answer for w in corpus.WRONG}
LATE = PIECES["rescue-dead-letters-one-attempt-late"]["rescue_jobs"]
NEVER = PIECES["rescue-never-dead-letters"]["rescue_jobs"]


@pytest.mark.parametrize(
    ("rescue", "rescues", "says", "not_said"),
    [
        (
            LATE,
            1,
            "your rescue_jobs lets a job run one attempt more than max_attempts before it dead-letters it",
            ["never dead-letters", "for no reason the round caused"],
        ),
        (NEVER, 1, "your rescue_jobs never dead-letters a job whose workers keep dying", ["lets a job run"]),
        (corpus.REFERENCE["rescue_jobs"], 0, None, ["max_attempts", "for no reason the round caused"]),
    ],
    ids=["one-late", "never", "the-kits"],
)
def test_a_job_whose_workers_keep_dying_is_judged_by_when_its_rescue_dead_lettered_it(
    rescue, rescues, says, not_said
):
    # one job leased to a new worker that never beats again, rescued each time, until it is
    # dead-lettered or has run one attempt past max_attempts (drawn)
    rng = random.Random()
    max_attempts, rescue_after = rng.randint(2, 4), 0.05
    c, q = queries.load("clients/chaos.sql"), labs.step(chaos.POC, "find_job").lesson
    races = queries.load("clients/races.sql")
    client.fresh_lab(chaos.POC)
    with labs.connect(chaos.POC) as conn:
        conn.execute(c["instruments"])
        conn.execute(q["retries"], {"max_attempts": max_attempts, "base": 0.05})
        conn.execute(q["rescue_after"], {"seconds": rescue_after})
        assert install(conn, rescue, Verdict("a rescue"), replaces=["rescue_jobs"])
        conn.execute(q["chaos_request"], {"pipe_ids": list(chaos.REQUEST)})
        job = rng.choice(conn.execute(q["chaos_jobs"]).fetchall())[0]
        for _ in range(max_attempts + rescues):
            w = Identity.new("first_process", "1.9.2")
            conn.execute(
                c["beat_as"], {"uuid": w.uuid, "server": w.server, "name": w.name, "version": w.version}
            )
            conn.execute(c["lease_to"], {"uuid": w.uuid, "job_id": job})
            until(
                lambda w=w: (
                    conn.execute(races["rescue"]).fetchone()
                    and conn.execute(c["job_state"], {"job_id": job, "uuid": w.uuid}).fetchone()[3]
                    == "rescued"
                ),
                10,
                f"job {job} rescued from silent worker {w.uuid}",
            )
        found = chaos.judge(conn)
    problems = "\n".join(found.problems)
    if says is None:
        assert f"job {job}" not in problems, found.summary()
    else:
        n = max_attempts + rescues
        assert f"job {job} had {n} attempts where max_attempts is {max_attempts}" in problems, found.summary()
        assert says in problems, found.summary()
    for wrong in not_said:
        assert wrong not in problems, found.summary()
    if rescue is NEVER:  # it runs on, not lost: what waits for it says so
        waits = f"still wait for job {job}, past max_attempts ({max_attempts}) and never dead-lettered"
        assert waits in problems, found.summary()
    assert "nothing the round did stops" not in problems or "pipe jobs " in problems, found.summary()
