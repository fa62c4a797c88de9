"""Lesson 12's hardened gate: finishes and inserts of one request take turns, and only they."""

import functools

from pgqueue import check
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant

JUDGE = functools.partial(check.gate_takes_turns, poc="hardened")

LESSON_07 = str(labs.step("single-call", "order_gating").fix_sql)
LOCK = "PERFORM pg_advisory_xact_lock(hashtext('order gate'), NEW.request_id);"
EVENTS = "BEFORE INSERT OR UPDATE OF pipe_job_finished"


NEXT_ORDER_ROWS = """PERFORM 1 FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
     WHERE pj.request_id = NEW.request_id
       AND p.pipe_order > (SELECT pipe_order FROM pipelines WHERE pipe_id = NEW.pipe_id)
       FOR UPDATE OF pj;"""  # the rows of the orders above: nobody finishing holds one of them


def gate(body: str = LOCK, events: str = EVENTS, name: str = "pipe_job_takes_turn") -> str:
    """The lesson's skeleton: `body` in the function, the trigger named `name` on `events`."""
    return f"""
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {body}
    RETURN NEW;
END $$;

CREATE TRIGGER {name}
{events} ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();
"""


def keyed(key: str) -> str:
    return gate(f"PERFORM pg_advisory_xact_lock({key});")


WRONG = [
    # right in lesson 07, but an order-2 pipe job inserted late is no row yet that a finisher can lock
    Wrong("row-lock-on-the-next-order", gate(NEXT_ORDER_ROWS), says="the insert must take the same lock"),
    # lesson 07's fix as it stands: the late insert never takes a turn
    Wrong("update-only-lesson-07-fix", LESSON_07, says="does not fire on INSERT"),
    Wrong(
        "update-only-skeleton-filled",
        gate(events="BEFORE UPDATE OF pipe_job_finished"),
        says="does not fire on INSERT",
    ),
    # on INSERT too, but the condition reads OLD, which an INSERT does not have (NULL): no lock
    Wrong(
        "reads-old-on-insert",
        variant(LESSON_07, "BEFORE UPDATE OF", "BEFORE INSERT OR UPDATE OF"),
        says="the insert must take the same lock",
    ),
    Wrong(
        "todo-left-as-it-is",
        gate("-- TODO: wait for this request's turn (one lock per request)"),
        says="finished without waiting",
    ),
    Wrong(
        "lock-per-pipe-job",
        keyed("hashtext('order gate'), NEW.pipe_job_id"),
        says="the two finishers of one request locked different keys",
    ),
    # the late insert takes its turn, but a finish never does
    Wrong(
        "insert-only-trigger",
        gate(events="BEFORE INSERT"),
        says="your trigger fires on INSERT only; the gate must also act when a pipe job is finished",
    ),
    Wrong(
        "locks-on-insert-only",
        gate("IF TG_OP = 'INSERT' THEN\n        PERFORM pg_advisory_xact_lock(NEW.request_id);\n    END IF;"),
        says="your trigger takes its lock on INSERT only",
    ),
    Wrong(
        "lock-per-pipeline",
        keyed("hashtext('order gate'), NEW.pipe_id"),
        says="but pipelines 1 and 2 of one request did not",
    ),
    Wrong("one-lock-for-the-whole-queue", keyed("42"), says="your lock is shared by other requests"),
    Wrong(
        "shared-lock",
        gate("PERFORM pg_advisory_xact_lock_shared(hashtext('order gate'), NEW.request_id);"),
        says="a shared lock (pg_advisory_xact_lock_shared) lets the other in",
    ),
    Wrong(
        "try-lock-that-gives-up",
        gate("PERFORM pg_try_advisory_xact_lock(hashtext('order gate'), NEW.request_id);"),
        says="but the second took no advisory lock at all",
    ),
    # the reviewer's case: it used to be refused with only "lock timeout"
    Wrong(
        "session-level-lock",
        gate("PERFORM pg_advisory_lock(hashtext('order gate'), NEW.request_id);"),
        says="outlives the transaction, so the next finisher of that request waits for this session",
    ),
    Wrong("sleep-instead-of-a-lock", gate("PERFORM pg_sleep(0.2);"), says="not merely delay it"),
    Wrong(
        "return-null", variant(gate(), "RETURN NEW;", "RETURN NULL;"), says="a BEFORE trigger must RETURN NEW"
    ),
    # AFTER triggers fire in name order: this one behind the gate's pipe_job_starts
    Wrong(
        "after-trigger-behind-the-gate",
        gate(events="AFTER INSERT OR UPDATE OF pipe_job_finished"),
        says="fires AFTER, behind the gate's own",
    ),
]

RIGHT = [
    Right(
        "reference-hardened-file", str(labs.step("hardened", "order_gating").sql).split("-- The request's")[0]
    ),
    # the reviewer's case: a correct AFTER trigger used to be refused; this one fires before the gate
    Right(
        "after-trigger-before-the-gate",
        gate(events="AFTER INSERT OR UPDATE OF pipe_job_finished", name="pipe_job_a_turn_first"),
    ),
    Right(
        "tg-op-branches",
        gate(
            "IF TG_OP = 'INSERT' OR (NEW.pipe_job_finished AND NOT OLD.pipe_job_finished) THEN\n"
            "        PERFORM pg_advisory_xact_lock(NEW.request_id);\n    END IF;"
        ),
    ),
    Right(
        "try-lock-in-a-loop",
        gate(
            "WHILE NOT pg_try_advisory_xact_lock(hashtext('order gate'), NEW.request_id) LOOP\n"
            "        PERFORM pg_sleep(0.01);\n    END LOOP;"
        ),
    ),
]
