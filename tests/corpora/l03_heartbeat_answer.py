"""Lesson 03's answer_heartbeat: trigger functions learners write, wrong ones named by their mistake."""

import functools

from pgqueue import check
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant

JUDGE = check.heartbeat_answer
REFERENCE = variant(
    str(labs.step("notify-listen", "job_queue").excerpt("answer_heartbeat")),
    "CREATE FUNCTION",
    "CREATE OR REPLACE FUNCTION",
)
ORDER = "ORDER BY job_create_timestamp, job_id"
TAKE = "    CALL take_job(job.job_id, NEW.process_uuid, job);  -- fills `job` in\n"
SEND = "    PERFORM pg_notify(channel, row_to_json(job)::text);\n"
KILL = (
    "    IF NEW.process_kill_switch THEN\n        PERFORM pg_notify(channel, 'kill');\n"
    "        RETURN NULL;\n    END IF;\n"
)
# the kit's take_job written out by hand, minus what `forgets` names
OWN_TAKE = (
    "    UPDATE job_queue SET job_assigned_process_uuid = NEW.process_uuid{stamp}\n"
    "     WHERE job_id = job.job_id RETURNING * INTO job;\n{busy}"
)
BUSY = "    UPDATE process_heartbeats SET process_busy = true WHERE process_uuid = NEW.process_uuid;\n"
STAMP = ", job_assign_timestamp = clock_timestamp()"


changed = functools.partial(variant, REFERENCE)  # the reference with one change


def own_take(*, stamp: str = STAMP, busy: str = BUSY) -> str:
    """The reference with take_job's work done by an UPDATE of the learner's own."""
    return changed(TAKE, OWN_TAKE.format(stamp=stamp, busy=busy))


WRONG = [
    Wrong(
        "ignores-the-version",
        changed("       AND job_process_version = NEW.process_version\n", ""),
        "match the version too",
    ),
    Wrong(
        "ignores-the-name",
        changed("       AND job_process_name = NEW.process_name\n", ""),
        "match the process name too",
    ),
    # the lesson's example process spelled out: right for first_process, for no other
    Wrong(
        "hard-coded-process-name",
        changed("job_process_name = NEW.process_name", "job_process_name = 'first_process'"),
        "heard 'No job found' while job",
    ),
    Wrong("no-order", changed(f"     {ORDER}\n", ""), "older, waited: hand out the oldest first"),
    Wrong("oldest-by-id", changed(ORDER, "ORDER BY job_id"), "older, waited: hand out the oldest first"),
    Wrong("newest-first", changed(ORDER, "ORDER BY job_create_timestamp DESC"), "older, waited"),
    Wrong(
        "forgets-finished",
        changed("       AND NOT job_finished\n", ""),
        "which is finished: only a job not finished",
    ),
    # '' is no worker nowhere in this lab: NULL is
    Wrong(
        "empty-string-for-no-worker",
        changed("job_assigned_process_uuid IS NULL", "job_assigned_process_uuid = ''"),
        "heard 'No job found' while job",
    ),
    Wrong("never-takes", changed(TAKE, ""), "was handed out twice: to process "),
    Wrong(
        "sends-before-taking",
        changed(TAKE + SEND, SEND + TAKE),
        "but the row says job_assigned_process_uuid None",
    ),
    Wrong(
        "takes-but-sends-the-row-it-picked",
        variant(
            changed("    job job_queue;\n", "    job job_queue;\n    taken job_queue;\n"),
            TAKE,
            "    CALL take_job(job.job_id, NEW.process_uuid, taken);\n",
        ),
        "but the row says job_assigned_process_uuid None",
    ),
    Wrong("own-update-forgets-the-timestamp", own_take(stamp=""), "its job_assign_timestamp is NULL"),
    Wrong("own-update-forgets-busy", own_take(busy=""), "(process_busy false)"),
    Wrong(
        "kill-without-return",
        changed(KILL, variant(KILL, "        RETURN NULL;\n", "")),
        "answers to one beat",
    ),
    Wrong(
        "kill-checked-after-taking",
        variant(changed(KILL, ""), TAKE, TAKE + KILL),
        "after its kill switch was set",
    ),
    Wrong(
        "no-kill",
        changed("IF NEW.process_kill_switch THEN", "IF false THEN"),
        "has its kill switch set and heard job ",
    ),
    Wrong("answers-another-text", changed("'No job found'", "'no job'"), "answer 'No job found'"),
    Wrong(
        "silent-when-empty",
        changed("        PERFORM pg_notify(channel, 'No job found');\n", ""),
        "heard nothing on channel_",
    ),
    Wrong(
        "create-not-replace",
        variant(REFERENCE, "CREATE OR REPLACE FUNCTION", "CREATE FUNCTION"),
        "the trigger heartbeat_finds_job uses answer_heartbeat, so it cannot be dropped",
    ),
    # the lesson's skeleton run as it stands: any job, never taken nor sent
    Wrong(
        "the-skeleton-unfilled",
        variant(
            changed(
                "       AND job_process_name = NEW.process_name\n"
                "       AND job_process_version = NEW.process_version\n"
                f"     {ORDER}\n     LIMIT 1;\n",
                "     -- TODO: only this process's jobs (name and version), the oldest first, one of them\n"
                "    ;\n",
            ),
            TAKE + SEND,
            "    -- TODO: take the job (take_job fills `job` in), then send it as JSON\n",
        ),
        "heard nothing on channel_",
    ),
    Wrong(
        "creates-another-function",
        changed("answer_heartbeat()", "my_answer()"),
        "your SQL ran but did not replace answer_heartbeat",
    ),
    # the channel of one process of that name, not necessarily the one beating
    Wrong(
        "channel-of-one-of-its-name",
        changed(
            "    channel text := 'channel_' || lower(NEW.process_uuid);",
            "    channel text := (SELECT 'channel_' || process_uuid FROM process_heartbeats\n"
            "                      WHERE process_name = NEW.process_name ORDER BY process_uuid LIMIT 1);",
        ),
        "arrived on channel_",
    ),
    # written blind: told to move the CALL, though the row had only the keys it built
    Wrong(
        "sends-a-few-columns",
        changed(
            SEND,
            "    PERFORM pg_notify(channel, json_build_object('job_id', job.job_id,\n"
            "                      'job_process_name', job.job_process_name)::text);\n",
        ),
        "as JSON without ",
        also=("so send row_to_json of the row take_job hands back",),
    ),
]

RIGHT = [
    Right("the-lessons-reference", REFERENCE),
    Right("for-update-skip-locked", changed("     LIMIT 1;", "     LIMIT 1\n       FOR UPDATE SKIP LOCKED;")),
    Right("for-update", changed("     LIMIT 1;", "     LIMIT 1\n       FOR UPDATE;")),
    Right("own-update-instead-of-take-job", own_take()),
    Right(
        "case-and-to-jsonb-return-new",
        # every RETURN NULL and every IS NULL test written otherwise: more than one change
        changed(SEND, "    PERFORM pg_notify(channel, to_jsonb(job)::text);\n")
        .replace("RETURN NULL;", "RETURN NEW;")
        .replace("job_assigned_process_uuid IS NULL", "coalesce(job_assigned_process_uuid, '') = ''"),
    ),
    # a filled answer whose comment still says TODO: judged on what it does
    Right("a-todo-left-in-a-comment", changed(ORDER, f"-- TODO: which job?\n     {ORDER}")),
]
