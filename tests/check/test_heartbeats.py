"""Lesson 02's checker accepts the reference upsert and names what each broken one gets wrong."""

import pytest

from pgqueue import check
from pgqueue.queues import labs

REFERENCE = labs.step("notify-listen", "heartbeats").excerpt("send_heartbeat")
HEAD = (
    "CREATE PROCEDURE send_heartbeat(p_uuid varchar, p_server varchar, p_name varchar, p_version varchar)\n"
)
INSERT = (
    "INSERT INTO process_heartbeats (process_uuid, server_name, process_name, process_version) "
    "VALUES (p_uuid, p_server, p_name, p_version)"
)


def test_the_reference_upsert_holds():
    verdict = check.heartbeat_upsert(REFERENCE)
    assert verdict.holds, str(verdict)
    held = [line for line in verdict.held if "the first held" in line]
    assert len(held) == 2 and all(line.endswith("one row") for line in held), str(verdict)


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        (
            HEAD + f"LANGUAGE sql AS $$ {INSERT} $$;",
            "a second beat of the same process failed: duplicate key",
        ),
        (
            REFERENCE.replace("process_busy = false,", "process_busy = false, process_kill_switch = false,"),
            "a beat cleared the kill switch",
        ),
        (
            REFERENCE.replace("SET last_beat_timestamp = now(),", "SET"),
            "a second beat left last_beat_timestamp",
        ),
        (
            REFERENCE.replace(
                "process_stopped_timestamp = NULL",
                "process_stopped_timestamp = process_heartbeats.process_stopped_timestamp",
            ),
            "a beat means the process runs and wants work",
        ),
        # check, then insert, as written: the judge holds the first beat at its insert
        (
            HEAD + "LANGUAGE plpgsql AS $$ BEGIN\n"
            "  IF EXISTS (SELECT 1 FROM process_heartbeats WHERE process_uuid = p_uuid) THEN\n"
            "    UPDATE process_heartbeats SET last_beat_timestamp = now(), process_busy = false,\n"
            "           process_stopped_timestamp = NULL WHERE process_uuid = p_uuid;\n"
            f"  ELSE {INSERT}; END IF;\nEND $$;",
            "the first held right after its insert, before it committed: the second beat failed with a "
            "duplicate key",
        ),
        (
            HEAD + f"LANGUAGE sql AS $$ {INSERT} ON CONFLICT (process_uuid) DO NOTHING;\n"
            "UPDATE process_heartbeats SET last_beat_timestamp = clock_timestamp(), process_busy = false, "
            "process_stopped_timestamp = NULL $$;",
            "changed the row of",
        ),
    ],
    ids=["insert-only", "clears-kill", "keeps-timestamp", "keeps-stopped", "check-then-insert", "no-where"],
)
def test_a_broken_upsert_is_refused_in_plain_words(broken, says):
    verdict = check.heartbeat_upsert(broken)
    assert not verdict.holds
    assert says in str(verdict), str(verdict)
