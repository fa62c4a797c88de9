"""Lesson 09's failures: a SIGKILLed worker and lost NOTIFYs break the originals, not the hardened lab."""

import pytest

from pgqueue.lab import failures
from pgqueue.paths import NOTEBOOKS_DIR
from pgqueue.queues import single_call


@pytest.mark.parametrize("poc", failures.ORIGINALS)
def test_a_job_whose_worker_was_sigkilled_stays_assigned_forever_in_an_original(poc):
    crash = failures.crash_after_claim(poc, polls=3)
    assert crash.stuck, crash.job
    assert failures.held_by(poc, crash.victim) == crash.held  # nothing took it over or finished it
    if poc == "single-call":  # the pipe job and the order-2 pipe job waiting behind it never finish
        assert not crash.work["pipe_job_finished"].any()
        assert crash.work.set_index("pipe_order").loc[2, "jobs"] == 0
    else:  # the chain stops at its first job
        assert crash.work["job_id"].tolist() == crash.held


def test_a_claim_cleared_by_hand_makes_single_call_answer_lost_race_forever():
    crash = failures.crash_after_claim("single-call", polls=2)
    lost = failures.clear_claim_by_hand(crash.held[0], answers=5)
    assert lost.stuck and lost.answers >= 5
    assert lost.claims["claimer_uuid"].tolist() == [crash.victim]  # the dead worker's claim remains


def test_the_hardened_lab_rescues_a_sigkilled_workers_job_and_finishes_the_request():
    crash = failures.crash_after_claim("hardened", rescue_after=1.0)
    assert not crash.stuck and crash.job["job_finished"]
    assert crash.attempts == ["rescued", "succeeded"]
    assert crash.work["pipe_job_finished"].all() and crash.work["open_jobs"].sum() == 0
    assert crash.job["job_assigned_process_uuid"] in crash.witnesses


def test_an_answer_sent_while_nobody_listens_leaves_the_job_assigned_to_a_worker_that_never_knew():
    lost = failures.answer_nobody_hears(polls=3)
    assert lost.heard == []
    assert lost.stuck, lost.job


def test_a_job_too_big_for_notify_fails_every_heartbeat_of_its_process_and_blocks_the_job_behind():
    poison = failures.poisoned_queue(beats=3)
    sizes = poison.sizes.set_index("job_id")["notify_bytes"]
    assert sizes[poison.poisoned] > 7999 >= sizes[poison.behind]
    assert poison.stuck and poison.failed_beats >= 3
    assert "payload string too long" in poison.error


def test_a_hardened_worker_claims_a_job_whose_wake_up_was_never_sent_within_a_poll():
    wake = failures.lost_wake_up(poll=1.0)
    assert wake.payload.isdigit()  # a wake-up carries a job id, not the job
    assert wake.heard == [] and wake.claimed_by_polling, wake


@pytest.mark.parametrize(
    ("name", "version", "held"), [("assigner", "1.0.0", 1), ("merging_results", "1.5.2", 4)]
)
def test_one_kill_in_the_example_stalls_the_victims_pipe_job_and_nothing_else_moves_it(name, version, held):
    measured = failures.kill_in_the_example(name, version)
    assert len(measured.held) == held  # an entry job, or a gatherer's whole set of four
    jobs = single_call.jobs().set_index("job_id")
    (pipe_job,) = set(jobs.loc[measured.held, "pipe_job_id"])
    assert pipe_job in measured.stalled["pipe_job_id"].tolist()
    assert (jobs.loc[measured.held, "job_finished"].isna()).all()
    if pipe_job == 1:  # request 50's order 2 (pipe job 2) waits behind it
        assert measured.stalled["pipe_job_id"].tolist() == [1, 2]


def _reference_query() -> str:
    source = (NOTEBOOKS_DIR / "solutions" / "09_dead_holders.py").read_text()
    return source.split('my_query = """', 1)[1].split('"""', 1)[0]


def test_the_checker_accepts_the_reference_query():
    verdict = failures.check_dead_holders(_reference_query())
    assert verdict.holds, verdict


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("LEFT JOIN", "JOIN"), "no heartbeat row at all"),
        (("AND j.job_finished IS NULL", ""), "finished before its worker died"),
        (("coalesce(j.job_assigned_process_uuid, '') <> ''", "true"), "waiting jobs"),
        (("< clock_timestamp() - make_interval(secs => %(seconds)s)", "< clock_timestamp()"), "still alive"),
        (("OR h.process_stopped_timestamp IS NOT NULL", ""), "said it stopped"),
    ],
    ids=["inner-join", "finished-jobs", "waiting-jobs", "no-threshold", "stopped-ignored"],
)
def test_the_checker_names_what_a_wrong_query_gets_wrong(change, complaint):
    query = _reference_query()
    assert change[0] in query
    verdict = failures.check_dead_holders(query.replace(*change))
    assert not verdict.holds and complaint in str(verdict), verdict


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        (("secs =>", "mins =>"), "it reads %(seconds)s as minutes, not seconds"),
        (
            ("make_interval(secs => %(seconds)s)", "interval '1 minute' * %(seconds)s"),
            "as minutes, not seconds",
        ),
        (("h.last_beat_timestamp <", "h.last_beat_timestamp >"), "it compares the wrong way round"),
        (
            ("h.process_uuid IS NULL\n        OR ", ""),
            "such a holder is dead too; keep its job with a LEFT JOIN",
        ),
        (("AND j.job_finished IS NULL", "AND NOT j.job_finished"), "it lists no job at either threshold"),
    ],
    ids=["mins", "times-a-minute", "wrong-way", "missing-beat-not-dead", "not-finished"],
)
def test_a_query_that_reads_seconds_is_told_the_cause_what_it_listed_shows(change, cause):
    # each of these reads %(seconds)s, and none has an inner JOIN
    query = _reference_query()
    assert change[0] in query
    verdict = failures.check_dead_holders(query.replace(*change))
    assert not verdict.holds and cause in str(verdict), verdict
    assert "does not read" not in str(verdict) and "inner JOIN" not in str(verdict), verdict


def test_the_checker_judges_a_query_by_what_it_lists_and_refuses_a_broken_one():
    every_job = failures.check_dead_holders("SELECT job_id FROM job_queue -- TODO")
    assert not every_job.holds and "finished before its worker died" in str(every_job), every_job
    assert "no SQL yet" in str(failures.check_dead_holders("  "))
    assert "it failed" in str(failures.check_dead_holders("SELECT job_id FROM no_such_table"))


def test_a_refused_query_is_placed_in_the_learner_s_text_after_its_placeholders_too():
    # psycopg sends %(seconds)s as $1: the column PostgreSQL gives is of the text sent
    verdict = failures.check_dead_holders(
        "SELECT j.job_id FROM job_queue j\n WHERE %(seconds)s > 0 AND TODO\n"
    )
    assert "at line 2, column 28 of your SQL: 'WHERE %(seconds)s > 0 AND TODO'" in str(verdict), verdict
