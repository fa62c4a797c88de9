"""Lesson 03's checker accepts the reference answer_heartbeat and names what each broken one gets wrong."""

import pytest

from pgqueue import check
from pgqueue.queues import labs

REFERENCE = labs.step("notify-listen", "job_queue").excerpt("answer_heartbeat")
OR_REPLACE = REFERENCE.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
# the channel of one process of that name, not necessarily the one beating
ONE_OF_NAME = (
    "    channel text := (SELECT 'channel_' || process_uuid FROM process_heartbeats\n"
    "                      WHERE process_name = NEW.process_name ORDER BY process_uuid LIMIT 1);"
)


def test_the_reference_answer_holds():
    verdict = check.heartbeat_answer(OR_REPLACE)
    assert verdict.holds, str(verdict)


def test_a_todo_left_in_a_comment_is_judged_by_what_the_answer_does():
    verdict = check.heartbeat_answer(OR_REPLACE.replace("ORDER BY", "-- TODO: which job?\n ORDER BY"))
    assert verdict.holds, str(verdict)


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        (REFERENCE, "the trigger heartbeat_finds_job uses answer_heartbeat, so it cannot be dropped"),
        (
            OR_REPLACE.replace("answer_heartbeat()", "my_answer()"),
            "your SQL ran but did not replace answer_heartbeat",
        ),
        (
            OR_REPLACE.replace("IF NEW.process_kill_switch THEN", "IF false THEN"),
            "has its kill switch set and heard job ",
        ),
        (
            OR_REPLACE.replace("AND job_process_version = NEW.process_version", ""),
            "match the version too",
        ),
        (
            OR_REPLACE.replace("AND job_process_name = NEW.process_name", ""),
            "match the process name too",
        ),
        (
            OR_REPLACE.replace("CALL take_job(job.job_id, NEW.process_uuid, job);", ""),
            "was handed out twice: to process ",
        ),
        (
            OR_REPLACE.replace("ORDER BY job_create_timestamp, job_id", "ORDER BY job_create_timestamp DESC"),
            "older, waited",
        ),
        # no order at all: the table's order is the order of insertion, not of age
        (OR_REPLACE.replace("ORDER BY job_create_timestamp, job_id", ""), "older, waited"),
        (
            OR_REPLACE.replace("    channel text := 'channel_' || lower(NEW.process_uuid);", ONE_OF_NAME),
            "arrived on channel_",
        ),
        (
            OR_REPLACE.replace("PERFORM pg_notify(channel, 'No job found');", ""),
            "heard nothing on channel_",
        ),
    ],
    ids=[
        "create-not-replace",
        "other-name",
        "no-kill",
        "ignores-version",
        "ignores-name",
        "no-take-job",
        "newest-first",
        "no-order",
        "wrong-channel",
        "silent-when-empty",
    ],
)
def test_a_broken_answer_is_refused_in_plain_words(broken, says):
    verdict = check.heartbeat_answer(broken)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
