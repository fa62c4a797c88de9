"""Why the hardened rescue is two statements: one forced schedule, a live worker's fresh lease at stake.

The rescuer's statement takes its snapshot, and is held there (a kit hook in its WHERE clause)
while a live worker rescues the same silent worker's job and leases it, committing a heartbeat
row the rescuer's snapshot cannot see. Let go, the rescuer locks the job's new version: the
re-check joins it to heartbeats as of the old snapshot, finds no heartbeat for the new holder,
and takes the job as a job of nobody. Rescued in the same statement, a live worker loses its
job; the reference re-reads the locked jobs in a second statement, with a new snapshot.
"""

import threading

import pytest

from pgqueue import queries
from pgqueue.check.core import Verdict, install
from pgqueue.lab import races
from pgqueue.queues import labs
from pgqueue.wait import until
from tests.queues.test_hardened import POC, _t, ask, job_row, outcomes, uuid

REFERENCE = str(labs.step(POC, "find_job").excerpt("rescue_jobs"))
LOCK = "           FOR UPDATE OF j SKIP LOCKED) c;"
# the kit's hook, in the first statement, after the snapshot and before the row lock
HOOKED = REFERENCE.replace(LOCK, "           AND _rescue_pause()\n" + LOCK)
# one statement in effect: the second trusts what the first locked instead of reading it again
RECHECK = HOOKED[HOOKED.index("    WITH lost AS (") : HOOKED.index("    ), ended AS (")]
ONE_STATEMENT = HOOKED.replace(RECHECK, "    WITH lost AS (SELECT unnest(candidates) AS job_id\n")


@pytest.mark.parametrize(("rescue", "takes_the_live_workers_job"), [(HOOKED, False), (ONE_STATEMENT, True)])
def test_a_lease_committed_after_the_rescuers_snapshot_stays_with_its_live_worker(
    rescue, takes_the_live_workers_job
):
    assert LOCK in REFERENCE and RECHECK  # the hook and the variant fit the reference as it is
    r = queries.load("clients/races.sql")
    with labs.scratch(POC, examples=True) as lab, lab.connect() as conn:
        conn.execute(r["install_rescue_pause"])
        conn.execute(_t()["rescue_after"], {"seconds": 1})
        dead, live = uuid(), uuid()
        (job,) = ask(conn, dead, "first_process", "1.9.2")
        conn.execute(_t()["age_heartbeat"], {"uuid": dead, "seconds": 60})
        verdict = Verdict("the rescue under test")
        assert install(conn, rescue, verdict, replaces=["rescue_jobs"]), str(verdict)
        with lab.connect() as rescuer, lab.connect() as coordinator:
            rescuer.execute(r["rescue_pause_on"])
            coordinator.execute(r["close_rescue_pause"])
            freed: list[int] = []
            held = threading.Thread(target=lambda: freed.append(rescuer.execute(r["rescue"]).fetchone()[0]))
            held.start()
            pid = rescuer.info.backend_pid
            until(lambda: races.waiting_on_lock(pid, conn=coordinator), 10, "the rescuer held")
            # meanwhile a live worker asks for work: its own rescue frees the job, and it leases it
            (again,) = ask(conn, live, "first_process", "1.9.2")
            assert again["job_id"] == job["job_id"]
            coordinator.execute(r["open_rescue_pause"])
            held.join(10)
        row = job_row(conn, job["job_id"])
        holder = row["job_assigned_process_uuid"]
        if takes_the_live_workers_job:
            assert freed == [1] and holder is None, (freed, row)
            assert outcomes(conn, job["job_id"]) == ["rescued", "rescued"]
        else:
            assert freed == [0] and holder == live, (freed, row)
            assert outcomes(conn, job["job_id"]) == ["rescued", None]
