"""Lesson 07's gate fixes: finishers of one request must take turns at the order gate, and only they."""

from pgqueue import check, queries
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant

JUDGE = check.gate_takes_turns

REFERENCE = str(labs.step("single-call", "order_gating").fix_sql)
LOCK = "PERFORM pg_advisory_xact_lock(hashtext('order gate'), NEW.request_id);"
TRIGGER = """
CREATE TRIGGER pipe_job_takes_turn
BEFORE UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW EXECUTE FUNCTION pipe_job_takes_turn();
"""


NEXT_ORDER_ROWS = """PERFORM 1 FROM pipe_job_queue pj JOIN pipelines p USING (pipe_id)
     WHERE pj.request_id = NEW.request_id
       AND p.pipe_order > (SELECT pipe_order FROM pipelines WHERE pipe_id = NEW.pipe_id)
       FOR UPDATE OF pj;"""  # the rows of the orders above: nobody finishing holds one of them


def fix(
    body: str, trigger: str = TRIGGER, condition: str = "NEW.pipe_job_finished AND NOT OLD.pipe_job_finished"
) -> str:
    """The lesson's skeleton with `body` where the TODO was."""
    return f"""
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {condition} THEN
        {body}
    END IF;
    RETURN NEW;
END $$;
{trigger}"""


def keyed(key: str) -> str:
    return fix(f"PERFORM pg_advisory_xact_lock({key});")


WRONG = [
    Wrong("no-lock", fix("NULL;"), says="finished without waiting"),
    # written blind: the right lock, but a wait that gives up after 100 ms and goes on without it
    Wrong(
        "lock-wait-that-times-out",
        fix("""SET LOCAL lock_timeout = '100ms';
        BEGIN
            PERFORM pg_advisory_xact_lock(NEW.request_id);
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;"""),
        says="then went on without it while the first was still open",
    ),
    # written blind: a key shared by requests 7 apart, beyond the judge's old reach of six pairs
    Wrong("key-modulo-7", keyed("NEW.request_id % 7"), says="their ids are 7 apart"),
    # written blind: a key shared by a block of 1000 requests
    Wrong("key-divided-by-1000", keyed("NEW.request_id / 1000"), says="or a request id divided?"),
    # written blind: a table lock makes every finish in the queue wait for every other one
    Wrong(
        "lock-table-share-row-exclusive",
        fix("LOCK TABLE pipe_job_queue IN SHARE ROW EXCLUSIVE MODE;"),
        says="it took no advisory lock: a table lock, LOCK TABLE",
    ),
    # a turn for order 1 only: two order-2 pipe jobs of a request finishing together start order 3 twice
    Wrong(
        "turn-for-order-1-only",
        fix("""IF (SELECT pipe_order FROM pipelines WHERE pipe_id = NEW.pipe_id) = 1 THEN
            PERFORM pg_advisory_xact_lock(NEW.request_id);
        END IF;"""),
        says="a turn taken only for order 1 leaves order 2 and up without one",
    ),
    # once per statement, NEW is NULL: the IF is never true and no lock is taken
    Wrong(
        "trigger-for-each-statement",
        fix(
            "PERFORM pg_advisory_xact_lock(NEW.request_id);",
            TRIGGER.replace("FOR EACH ROW", "FOR EACH STATEMENT"),
        ),
        says="declare it FOR EACH ROW",
    ),
    Wrong(
        "todo-left-as-it-is",
        fix("-- TODO: wait here for the other finishers of request NEW.request_id, until they commit"),
        says="finished without waiting",
    ),
    # a lock on the wrong key: two finishers of one pipeline of one request never meet
    Wrong(
        "lock-per-pipe-job",
        keyed("NEW.pipe_job_id"),
        says="the two finishers of one request locked different keys",
        also=("finished without waiting, and order-2 pipe job",),
    ),
    Wrong(
        "lock-per-pipe-job-namespaced",
        keyed("hashtext('order gate'), NEW.pipe_job_id"),
        says="the two finishers of one request locked different keys",
    ),
    # the reviewer's case: pipelines 1 and 2 of one request never take turns
    Wrong(
        "lock-per-pipeline",
        keyed("hashtext('order gate'), NEW.pipe_id"),
        says="but pipelines 1 and 2 of one request did not: the two finishers of one request locked "
        "different keys",
    ),
    # the request is in the key, but so is the pipeline: pipelines of one request still never meet
    Wrong(
        "lock-per-request-and-pipeline",
        keyed("NEW.request_id, NEW.pipe_id"),
        says="locked different keys",
    ),
    # the lock is taken when a pipe job is inserted, never when one is finished
    Wrong(
        "insert-only-trigger",
        fix(LOCK, variant(TRIGGER, "BEFORE UPDATE OF pipe_job_finished", "BEFORE INSERT"), condition="true"),
        says="your trigger fires on INSERT only; the gate must also act when a pipe job is finished",
    ),
    Wrong(
        "one-lock-for-the-whole-queue",
        keyed("hashtext('order gate')"),
        says="your lock is shared by other requests",
    ),
    Wrong(
        "lock-per-order",
        fix(
            "PERFORM pg_advisory_xact_lock(hashtext('order gate'), "
            "(SELECT pipe_order FROM pipelines WHERE pipe_id = NEW.pipe_id));"
        ),
        says="your lock is shared by other requests",
    ),
    Wrong(
        "shared-lock",
        fix("PERFORM pg_advisory_xact_lock_shared(hashtext('order gate'), NEW.request_id);"),
        says="a shared lock (pg_advisory_xact_lock_shared) lets the other in",
    ),
    Wrong(
        "try-lock-that-gives-up",
        fix("PERFORM pg_try_advisory_xact_lock(hashtext('order gate'), NEW.request_id);"),
        says="but the second took no advisory lock at all",
    ),
    Wrong(
        "session-level-lock",
        fix("PERFORM pg_advisory_lock(hashtext('order gate'), NEW.request_id);"),
        says="a session-level lock (pg_advisory_lock) outlives the transaction",
    ),
    Wrong(
        "lock-then-unlock-at-once",
        fix(
            "PERFORM pg_advisory_lock(hashtext('order gate'), NEW.request_id);\n"
            "        PERFORM pg_advisory_unlock(hashtext('order gate'), NEW.request_id);"
        ),
        says="a lock given back before the commit, a shared row lock",
    ),
    # the same keyed by the request alone: the judge, holding that key, sees the finish ask for it
    Wrong(
        "lock-then-unlock-request-id",
        fix("PERFORM pg_advisory_lock(NEW.request_id);\n        PERFORM pg_advisory_unlock(NEW.request_id);"),
        says="it held no lock: your trigger lets go of its lock (pg_advisory_unlock?) before the commit",
    ),
    Wrong(
        "sleep-instead-of-a-lock",
        fix("PERFORM pg_sleep(0.15 * (NEW.pipe_job_id % 2));"),
        says="not merely delay it",
    ),
    Wrong(
        "row-locks-deadlock", str(queries.load("clients/races.sql")["gate_row_locks"]), says="a deadlock in "
    ),
    Wrong(
        "row-locks-nowait",
        fix(
            "PERFORM 1 FROM pipe_job_queue\n"
            "         WHERE request_id = NEW.request_id AND pipe_job_id <> NEW.pipe_job_id FOR UPDATE NOWAIT;"
        ),
        says="NOWAIT gives up",
    ),
    Wrong(
        "return-null",
        variant(REFERENCE, "RETURN NEW;", "RETURN NULL;"),
        says="a BEFORE trigger must RETURN NEW",
    ),
    Wrong(
        "function-without-trigger",
        REFERENCE.split("CREATE OR REPLACE TRIGGER")[0],
        says="no trigger calls your pipe_job_takes_turn",
    ),
    # AFTER triggers fire in name order, and pipe_job_takes_turn comes after pipe_job_starts
    Wrong(
        "after-trigger-behind-the-gate",
        fix(LOCK, variant(TRIGGER, "BEFORE UPDATE", "AFTER UPDATE")),
        says="fires AFTER, behind the gate's own",
    ),
    Wrong(
        "condition-never-true",
        fix(LOCK, condition="NEW.pipe_job_finished AND OLD.pipe_job_finished"),
        says="finished without waiting",
    ),
]

# written blind: a key requests share in part; two requests an even number apart wait for each other
WRONG.append(
    Wrong(
        "a-key-requests-share-in-part",
        keyed("NEW.request_id % 2"),
        "a key that requests share in part, as request_id % n",
    )
)

RIGHT = [
    # row locks can take turns too, on rows no finisher holds already: the next order's pipe jobs
    Right("row-lock-on-the-next-order", fix(NEXT_ORDER_ROWS)),
    Right("reference-fix-file", REFERENCE),
    Right("one-key-request-id", keyed("NEW.request_id")),
    Right(
        "when-clause-no-if",
        """
CREATE FUNCTION pipe_job_takes_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(NEW.request_id::bigint);
    RETURN NEW;
END $$;

CREATE TRIGGER pipe_job_takes_turn
BEFORE UPDATE OF pipe_job_finished ON pipe_job_queue
FOR EACH ROW WHEN (NEW.pipe_job_finished AND NOT OLD.pipe_job_finished)
EXECUTE FUNCTION pipe_job_takes_turn();
""",
    ),
    # an AFTER trigger is right too when it fires before the gate's (names sort before pipe_job_starts)
    Right(
        "after-trigger-before-the-gate",
        fix(
            LOCK,
            variant(
                TRIGGER,
                "TRIGGER pipe_job_takes_turn\nBEFORE UPDATE",
                "TRIGGER pipe_job_a_turn_first\nAFTER UPDATE",
            ),
        ),
    ),
    Right(
        "try-lock-in-a-loop",
        fix(
            "WHILE NOT pg_try_advisory_xact_lock(hashtext('order gate'), NEW.request_id) LOOP\n"
            "            PERFORM pg_sleep(0.01);\n        END LOOP;"
        ),
    ),
    Right(
        "insert-or-update-hardened-style",
        fix(
            LOCK,
            variant(TRIGGER, "BEFORE UPDATE OF", "BEFORE INSERT OR UPDATE OF"),
            condition="TG_OP = 'INSERT' OR (NEW.pipe_job_finished AND NOT OLD.pipe_job_finished)",
        ),
    ),
]
