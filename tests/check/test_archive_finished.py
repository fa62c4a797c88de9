"""Lesson 11's archive checker, beyond its corpus (tests/corpora/l11_archive_finished.py): the attempts
are judged by the jobs a statement did move."""

from pgqueue.check.archive_finished import archive_finished
from tests.corpora.l11_archive_finished import ATTEMPTS, OLD, archive


def test_the_archive_checker_judges_the_attempts_of_the_jobs_that_moved():
    # read as minutes, the oldest jobs go at the low threshold with their attempts: only the jobs
    # left behind and the unit are wrong, no attempt is
    minutes = archive_finished(
        archive(OLD.replace("make_interval(secs => %(seconds)s)", "%(seconds)s * interval '1 minute'"))
    )
    assert any("it reads %(seconds)s as minutes" in line for line in minutes.wrong), minutes
    assert not [line for line in minutes.wrong if "attempt" in line], minutes
    assert "the attempts of every moved job moved with it" in minutes.held, minutes
    # attempts deleted and never archived did not move: no ✓ says they did
    kept = "), kept_attempts AS (\n    INSERT INTO job_attempt_archive SELECT * FROM attempts\n"
    assert kept in ATTEMPTS
    deleted = archive_finished(archive(attempts=ATTEMPTS.replace(kept, "")))
    assert any("attempts of the moved jobs vanished" in line for line in deleted.wrong), deleted
    assert not [line for line in deleted.held if "attempts of every moved job" in line], deleted
