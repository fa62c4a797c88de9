"""Lesson 09's checker: what tests/corpora/l09_dead_holders.py does not already prove."""

import pytest

from pgqueue import check
from pgqueue.paths import NOTEBOOKS_DIR


def _reference_query() -> str:
    source = (NOTEBOOKS_DIR / "solutions" / "09_dead_holders.py").read_text()
    return source.split('my_query = """', 1)[1].split('"""', 1)[0]


def test_the_checker_accepts_the_reference_query():
    verdict = check.dead_holders(_reference_query())
    assert verdict.holds, verdict


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("coalesce(j.job_assigned_process_uuid, '') <> ''", "true"), "waiting jobs"),
        (("< clock_timestamp() - make_interval(secs => %(seconds)s)", "< clock_timestamp()"), "still alive"),
    ],
    ids=["waiting-jobs", "no-threshold"],
)
def test_the_checker_names_what_a_wrong_query_gets_wrong(change, complaint):
    query = _reference_query()
    assert change[0] in query
    verdict = check.dead_holders(query.replace(*change))
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
    verdict = check.dead_holders(query.replace(*change))
    assert not verdict.holds and cause in str(verdict), verdict
    assert "does not read" not in str(verdict) and "inner JOIN" not in str(verdict), verdict


def test_the_checker_judges_a_query_by_what_it_lists_and_refuses_a_broken_one():
    every_job = check.dead_holders("SELECT job_id FROM job_queue -- TODO")
    assert not every_job.holds and "finished before its worker died" in str(every_job), every_job
    assert "no SQL yet" in str(check.dead_holders("  "))
    assert "PostgreSQL refused your query" in str(check.dead_holders("SELECT job_id FROM no_such_table"))


def test_a_refused_query_is_placed_in_the_learner_s_text_after_its_placeholders_too():
    # psycopg sends %(seconds)s as $1: the column PostgreSQL gives is of the text sent
    verdict = check.dead_holders("SELECT j.job_id FROM job_queue j\n WHERE %(seconds)s > 0 AND TODO\n")
    assert "at line 2, column 28 of your SQL: 'WHERE %(seconds)s > 0 AND TODO'" in str(verdict), verdict
