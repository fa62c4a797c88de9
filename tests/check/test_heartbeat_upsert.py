"""Lesson 02's checker beyond its corpus: the reference's first beats, each held, end in one row."""

from pgqueue import check
from pgqueue.check.heartbeat_upsert import HOLDS
from pgqueue.queues import labs

REFERENCE = labs.step("notify-listen", "heartbeats").excerpt("send_heartbeat")


def test_the_reference_upsert_holds():
    verdict = check.heartbeat_upsert(REFERENCE)
    assert verdict.holds, str(verdict)
    held = [line for line in verdict.held if "the first held" in line]
    assert len(held) == len(HOLDS) and all(line.endswith("one row") for line in held), str(verdict)
