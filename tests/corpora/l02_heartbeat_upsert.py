"""Lesson 02's send_heartbeat: upserts learners write, wrong ones named by their mistake."""

from pgqueue import check
from pgqueue.queues import labs
from tests.corpora import Right, Wrong, variant

JUDGE = check.heartbeat_upsert
REFERENCE = labs.step("notify-listen", "heartbeats").excerpt("send_heartbeat")
HEAD = (
    "CREATE PROCEDURE send_heartbeat(p_uuid varchar, p_server varchar, p_name varchar, p_version varchar)\n"
)
INSERT = """
    INSERT INTO process_heartbeats (process_uuid, server_name, process_name, process_version)
    VALUES (p_uuid, p_server, p_name, p_version)"""


def upsert(update: str, *, target: str = "(process_uuid)") -> str:
    """An INSERT ... ON CONFLICT of the learner's, with `update` as its action."""
    return f"{HEAD}LANGUAGE sql AS $${INSERT}\n    ON CONFLICT {target} {update};\n$$;"


FULL = "SET last_beat_timestamp = now(), server_name = EXCLUDED.server_name, process_busy = false, "
FULL += "process_stopped_timestamp = NULL"

WRONG = [
    # written blind: the kill switch read first and written back; a kill committed meanwhile is undone
    Wrong(
        "kill-switch-written-back-from-a-stale-read",
        f"""{HEAD}LANGUAGE plpgsql AS $$
DECLARE
    kill boolean;
BEGIN
    SELECT process_kill_switch INTO kill FROM process_heartbeats WHERE process_uuid = p_uuid;{INSERT}
    ON CONFLICT (process_uuid) DO UPDATE {FULL}, process_kill_switch = coalesce(kill, false);
END $$;""",
        "the beat undid the operator's kill",
    ),
    # written blind: a shared lock on the row before the upsert: two later beats each hold it, then
    # each waits for the other to let go of it so that it can update
    Wrong(
        "row-locked-for-share-before-the-upsert",
        f"{HEAD}LANGUAGE plpgsql AS $$\nBEGIN\n    PERFORM 1 FROM process_heartbeats"
        f" WHERE process_uuid = p_uuid FOR SHARE;{INSERT}\n"
        f"    ON CONFLICT (process_uuid) DO UPDATE {FULL};\nEND $$;",
        "the beats deadlocked",
    ),
    # written blind: a right upsert that commits itself, which fails inside the caller's transaction
    Wrong(
        "commits-inside-the-procedure",
        f"{HEAD}LANGUAGE plpgsql AS $$\nBEGIN{INSERT}\n    ON CONFLICT (process_uuid) DO UPDATE {FULL};\n"
        "    COMMIT;\nEND $$;",
        "a COMMIT or ROLLBACK in a procedure works only when it is CALLed alone",
    ),
    Wrong(
        "insert-only",
        f"{HEAD}LANGUAGE sql AS $${INSERT};\n$$;",
        "a second beat of the same process failed: duplicate key",
    ),
    Wrong("on-conflict-do-nothing", upsert("DO NOTHING"), "a second beat left last_beat_timestamp"),
    Wrong(
        "never-updates-server-name",
        upsert(
            "DO UPDATE SET last_beat_timestamp = now(), process_busy = false, "
            "process_stopped_timestamp = NULL"
        ),
        "left server_name at",
    ),
    Wrong(
        "forgets-process-busy",
        upsert(
            "DO UPDATE SET last_beat_timestamp = now(), server_name = EXCLUDED.server_name, "
            "process_stopped_timestamp = NULL"
        ),
        "a beat means the process runs and wants work",
    ),
    Wrong(
        "forgets-the-stopped-mark",
        upsert(
            "DO UPDATE SET last_beat_timestamp = now(), server_name = EXCLUDED.server_name, "
            "process_busy = false"
        ),
        "a beat means the process runs and wants work",
    ),
    Wrong(
        "clears-the-kill-switch",
        upsert(f"DO UPDATE {FULL}, process_kill_switch = false"),
        "a beat cleared the kill switch",
    ),
    Wrong(
        "delete-then-insert",
        f"{HEAD}LANGUAGE sql AS $$\n    DELETE FROM process_heartbeats WHERE process_uuid = p_uuid;"
        f"{INSERT};\n$$;",
        "a beat cleared the kill switch",
    ),
    Wrong(
        "update-keyed-by-name",
        f"{HEAD}LANGUAGE plpgsql AS $$ BEGIN\n"
        "    UPDATE process_heartbeats SET last_beat_timestamp = now(), server_name = p_server,\n"
        "           process_busy = false, process_stopped_timestamp = NULL\n"
        "     WHERE process_name = p_name AND process_version = p_version;\n"
        f"    IF NOT FOUND THEN{INSERT}; END IF;\nEND $$;",
        "a process is its uuid, so the upsert's key is process_uuid alone",
    ),
    Wrong(
        "conflict-on-a-column-without-a-unique-index",
        upsert(f"DO UPDATE {FULL}", target="(process_name)"),
        "there is no unique or exclusion constraint matching the ON CONFLICT specification",
    ),
    # check, then insert: a first beat held at its insert lets the other's check see no row
    Wrong(
        "check-then-insert",
        f"{HEAD}LANGUAGE plpgsql AS $$ BEGIN\n"
        "  IF EXISTS (SELECT 1 FROM process_heartbeats WHERE process_uuid = p_uuid) THEN\n"
        "    UPDATE process_heartbeats SET last_beat_timestamp = now(), server_name = p_server,\n"
        "           process_busy = false, process_stopped_timestamp = NULL WHERE process_uuid = p_uuid;\n"
        f"  ELSE{INSERT}; END IF;\nEND $$;",
        "the first held right after its insert, before it committed: the second beat failed with a "
        "duplicate key",
    ),
    Wrong(
        "update-then-insert-if-not-found",
        f"{HEAD}LANGUAGE plpgsql AS $$ BEGIN\n"
        "  UPDATE process_heartbeats SET last_beat_timestamp = now(), server_name = p_server,\n"
        "         process_busy = false, process_stopped_timestamp = NULL WHERE process_uuid = p_uuid;\n"
        f"  IF NOT FOUND THEN{INSERT}; END IF;\nEND $$;",
        "failed with a duplicate key",
    ),
    Wrong(
        "update-without-where",
        f"{HEAD}LANGUAGE sql AS $${INSERT}\n    ON CONFLICT (process_uuid) DO NOTHING;\n"
        "    UPDATE process_heartbeats SET last_beat_timestamp = clock_timestamp(), server_name = p_server,\n"
        "           process_busy = false, process_stopped_timestamp = NULL;\n$$;",
        "changed the row of",
    ),
]

WRONG.append(
    Wrong(
        "a-session-level-lock-around-the-beat",  # found by a blind learner: it hung the judge
        variant(
            REFERENCE,
            "LANGUAGE sql AS $$\n",
            "LANGUAGE sql AS $$\n    SELECT pg_advisory_lock(hashtext(p_uuid));\n",
        ),
        "a session-level advisory lock (pg_advisory_lock) is held until the session closes",
    )
)

WRONG += [
    # found by blind learners: a killed worker still beats until it next asks for work
    Wrong(
        "killed-row-not-refreshed",
        upsert(f"DO UPDATE {FULL}\n     WHERE NOT process_heartbeats.process_kill_switch"),
        "the beat of a killed worker was not recorded: last_beat_timestamp stayed at",
    ),
    # one statement, but MERGE looks for the row and inserts it in two steps another beat comes between
    Wrong(
        "merge-races-a-first-beat",
        f"{HEAD}LANGUAGE sql AS $$\n"
        "    MERGE INTO process_heartbeats h\n"
        "    USING (SELECT p_uuid AS process_uuid) s ON h.process_uuid = s.process_uuid\n"
        "    WHEN MATCHED THEN UPDATE SET last_beat_timestamp = now(), server_name = p_server,\n"
        "         process_busy = false, process_stopped_timestamp = NULL\n"
        "    WHEN NOT MATCHED THEN INSERT (process_uuid, server_name, process_name, process_version)\n"
        "         VALUES (p_uuid, p_server, p_name, p_version);\n$$;",
        "or MERGE's match) that another beat can come between, even inside one statement",
    ),
]


def locked(lock: str, unlock: str = "") -> str:
    """A check, then an insert or an update, behind the learner's `lock` (and `unlock` after it)."""
    return (
        f"{HEAD}LANGUAGE plpgsql AS $$ BEGIN\n  {lock}\n"
        "  IF EXISTS (SELECT 1 FROM process_heartbeats WHERE process_uuid = p_uuid) THEN\n"
        "    UPDATE process_heartbeats SET last_beat_timestamp = now(), server_name = p_server,\n"
        "           process_busy = false, process_stopped_timestamp = NULL WHERE process_uuid = p_uuid;\n"
        f"  ELSE{INSERT}; END IF;\n  {unlock}\nEND $$;"
    )


# written blind: a lock around the check, each wrong in its own way
WRONG += [
    # a beat whose transaction began first, committed last, is dropped: the row and its trigger miss it
    Wrong(
        "keeps-the-newest-beat-only",
        upsert(f"DO UPDATE {FULL}\n     WHERE process_heartbeats.last_beat_timestamp <= now()"),
        "the first beat (from server ",
        also=("its beat was lost (does it skip the row, by a WHERE on its DO UPDATE",),
    ),
    Wrong(
        "skips-the-beat-when-the-try-lock-fails",
        locked("IF NOT pg_try_advisory_xact_lock(hashtext(p_uuid)) THEN RETURN; END IF;"),
        "ended without an error, but once it ended the row shows no beat: its beat was lost (does it give up",
    ),
    Wrong(
        "unlocks-before-the-commit",
        locked(
            "PERFORM pg_advisory_lock(hashtext(p_uuid));", "PERFORM pg_advisory_unlock(hashtext(p_uuid));"
        ),
        "the first let go of its lock before the commit",
    ),
    Wrong(
        "share-mode-table-lock",
        locked("LOCK TABLE process_heartbeats IN SHARE MODE;"),
        "the beats deadlocked: each held a lock the other waited for",
    ),
]

RIGHT = [
    Right("the-lessons-reference", REFERENCE),
    Right(
        "a-transaction-level-lock-around-the-check",
        locked("PERFORM pg_advisory_xact_lock(hashtext(p_uuid));"),
    ),
    Right("an-exclusive-table-lock", locked("LOCK TABLE process_heartbeats IN SHARE ROW EXCLUSIVE MODE;")),
    Right(
        "clock-timestamp-and-named-constraint",
        upsert(
            "DO UPDATE SET last_beat_timestamp = clock_timestamp(), server_name = EXCLUDED.server_name, "
            "process_busy = false, process_stopped_timestamp = NULL",
            target="ON CONSTRAINT process_heartbeats_pkey",
        ),
    ),
    Right(
        "plpgsql-insert-or-update-on-unique-violation",
        f"{HEAD}LANGUAGE plpgsql AS $$ BEGIN\n  BEGIN{INSERT};\n"
        "  EXCEPTION WHEN unique_violation THEN\n"
        "    UPDATE process_heartbeats SET last_beat_timestamp = clock_timestamp(), server_name = p_server,\n"
        "           process_busy = false, process_stopped_timestamp = NULL WHERE process_uuid = p_uuid;\n"
        "  END;\nEND $$;",
    ),
    Right(
        "update-then-insert-retried-on-unique-violation",
        f"{HEAD}LANGUAGE plpgsql AS $$ BEGIN\n  LOOP\n"
        "    UPDATE process_heartbeats SET last_beat_timestamp = clock_timestamp(), server_name = p_server,\n"
        "           process_busy = false, process_stopped_timestamp = NULL WHERE process_uuid = p_uuid;\n"
        "    EXIT WHEN FOUND;\n"
        f"    BEGIN{INSERT};\n      EXIT;\n"
        "    EXCEPTION WHEN unique_violation THEN NULL;  -- another beat inserted it: update it\n"
        "    END;\n  END LOOP;\nEND $$;",
    ),
    Right(
        "also-refreshes-name-and-version",
        upsert(
            f"DO UPDATE {FULL}, process_name = EXCLUDED.process_name, "
            "process_version = EXCLUDED.process_version"
        ),
    ),
]
