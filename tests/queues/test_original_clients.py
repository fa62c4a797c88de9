"""The 2019 workers' own conversation with the database, unchanged but for its connection, runs on the labs.

The clients below send exactly what the originals sent (`CALL` for the procedures, `SELECT` for
`find_job`, the payloads as JSON text, the pipe job id as a quoted literal), with psycopg 3 and
values passed as parameters instead of formatted in.
"""

import json
import secrets
import socket

import psycopg
from psycopg import sql

from pgqueue.queues import heartbeats, labs

NL, SC = "notify-listen", "single-call"
# what the author's single_call_job_queue.py (commit 0389281) reads of each job find_job returns,
# the misspelt key included: a lab that renamed one crashes his worker on its first job
ORIGINAL_READS = ("job_id", "job_creater_process_name", "job_payload", "pipe_job_id")
SERVER = socket.gethostname()[:100]


class NotifyListenClient:
    """notify_listen_job_queue.py: LISTEN on its channel, beat SERIALIZABLE, wait for one answer."""

    def __init__(self, name: str, version: str) -> None:
        self.uuid, self.name, self.version = secrets.token_hex(6), name, version
        self.conn = psycopg.connect(labs.url(NL), autocommit=True)
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"channel_{self.uuid}")))

    def heartbeat(self) -> list[str]:
        """Clear what is pending, beat in a SERIALIZABLE transaction, wait up to 3 s for the answer."""
        list(self.conn.notifies(timeout=0))
        self.conn.execute("START TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        self.conn.execute("CALL send_heartbeat(%s, %s, %s, %s)", [self.uuid, SERVER, self.name, self.version])
        self.conn.execute("COMMIT")
        answers = [n.payload for n in self.conn.notifies(timeout=3, stop_after=1)]
        return answers + [n.payload for n in self.conn.notifies(timeout=0)]

    def create_job(self, job_id: int, payload: dict) -> tuple:
        """After the work: hand the job over (the payload travels as JSON text)."""
        return self.conn.execute("CALL create_job(%s, %s)", [job_id, json.dumps(payload)]).fetchone()

    def close(self) -> None:
        self.conn.close()


def one_call(query: str, params: list) -> tuple | None:
    """single_call_job_queue.py's way: a new connection per call, execute, commit, close."""
    with psycopg.connect(labs.url(SC)) as conn:
        cur = conn.execute(query, params)
        return cur.fetchone() if cur.description else None


class SingleCallClient:
    """The single-call worker: find_job, then create_jobs or finish_pipe."""

    def __init__(self, name: str, version: str, multi: bool = False) -> None:
        self.uuid, self.name, self.version, self.multi = secrets.token_hex(6), name, version, multi

    def find_job(self) -> str:
        params = [self.uuid, SERVER, self.name, self.version, self.multi]
        return one_call("SELECT find_job(%s, %s, %s, %s, %s)", params)[0]

    def jobs(self) -> list[dict]:
        """find_job's jobs, each holding every key the 2019 worker reads."""
        answer = self.find_job()
        assert answer.startswith("["), f"{self.name}: {answer}"
        jobs = json.loads(answer)
        for job in jobs:
            missing = [key for key in ORIGINAL_READS if key not in job]
            assert not missing, f"the 2019 worker reads {missing}, which job {job.get('job_id')} lacks"
        return jobs

    def create_jobs(self, job_ids: list[int], payloads: list[dict]) -> tuple:
        return one_call("CALL create_jobs(%s, %s)", [job_ids, json.dumps(payloads)])

    def finish_pipe(self, job_ids: list[int], pipe_job_id: int) -> None:
        # the original quoted the pipe job id: a text literal the server reads as an integer
        return one_call("CALL finish_pipe(%s, %s)", [job_ids, str(pipe_job_id)])


def handled(who, jobs: list[dict]) -> dict:
    """The original's payload: its pick-up line (ids and creators), what was handled, the parents."""
    return {
        "my_job": ",".join(f"{j['job_id']} {j['job_creater_process_name']}" for j in jobs),
        "description": f"{who.name} {who.version} handled {[j['job_id'] for j in jobs]}",
        "parents": [j["job_payload"] for j in jobs],
    }


def test_the_2019_notify_listen_workers_carry_a_request_through_pipeline_1():
    labs.reset(NL, examples=True)
    chain = [("first_process", "1.0.0"), ("second_process", "1.5.2"), ("third_process", "1.0.0")]
    handed, owners = [], []
    for name, version in chain:
        worker = NotifyListenClient(name, version)
        try:
            (answer,) = worker.heartbeat()
            job = json.loads(answer)
            assert (job["job_process_name"], job["job_assigned_process_uuid"]) == (name, worker.uuid)
            handed.append(worker.create_job(job["job_id"], handled(worker, [job])))
            owners.append(worker.uuid)
            assert worker.heartbeat() == ["No job found"]
            heartbeats.set_kill_switch(NL, worker.uuid)
            assert worker.heartbeat() == ["kill"]
        finally:
            worker.close()
    assert handed == [(2,), (3,), (None,)]  # the last step creates no job
    with labs.connect(NL) as conn:
        rows = conn.execute(
            "SELECT job_process_name, job_finished, job_assigned_process_uuid, job_payload"
            " FROM job_queue ORDER BY job_id"
        ).fetchall()
        failed = conn.execute("SELECT count(*) FROM jobs_failed").fetchone()[0]
    expected = [(name, True, uuid) for (name, _), uuid in zip(chain, owners, strict=True)]
    assert [row[:3] for row in rows] == expected
    assert rows[2][3]["parents"][0]["parents"][0]["description"] == "the first request"
    assert failed == 0


def test_the_2019_single_call_workers_carry_request_50_through_both_order_1_pipelines():
    labs.reset(SC, examples=True)
    with labs.connect(SC) as conn:
        pipe_job_of = dict(  # request 50's pipe jobs by pipeline, as the example data made them
            conn.execute("SELECT pipe_id, pipe_job_id FROM pipe_job_queue WHERE request_id = 50")
        )

    # pipeline 2: a plain chain of three steps
    for name, version in [("first_process", "1.9.2"), ("second_process", "2.2.0")]:
        worker = SingleCallClient(name, version)
        (job,) = worker.jobs()
        assert job["pipe_job_id"] == pipe_job_of[2]
        (new_ids,) = worker.create_jobs([job["job_id"]], [handled(worker, [job])])
        assert len(new_ids) == 1
    third = SingleCallClient("third_process", "5.3.0")
    (job,) = third.jobs()
    assert third.finish_pipe([job["job_id"]], job["pipe_job_id"]) is None

    # pipeline 1: the assigner fans out to four classifications, merging_results gathers them
    assigner = SingleCallClient("assigner", "1.0.0")
    (entry,) = assigner.jobs()
    assert entry["pipe_job_id"] == pipe_job_of[1]
    (parts,) = assigner.create_jobs([entry["job_id"]], [handled(assigner, [entry])] * 4)
    classifiers = [SingleCallClient("classification", "1.0.0") for _ in range(2)]
    merger = SingleCallClient("merging_results", "1.5.2", multi=True)
    for n in range(4):
        worker = classifiers[n % 2]
        (job,) = worker.jobs()
        assert job["job_id"] in parts
        if n == 3:  # three of the four finished: the set is not complete yet
            assert merger.find_job() == "No job found"
        worker.create_jobs([job["job_id"]], [handled(worker, [job])])
    batch = merger.jobs()
    assert len(batch) == 4 and all(j["job_creater_set_elements"] == parts for j in batch)
    (merged,) = merger.create_jobs(sorted(j["job_id"] for j in batch), [handled(merger, batch)])
    uploader = SingleCallClient("uploader", "1.0.0")
    (last,) = uploader.jobs()
    assert [last["job_id"]] == merged
    uploader.finish_pipe([last["job_id"]], last["pipe_job_id"])

    with labs.connect(SC) as conn:
        unfinished = conn.execute(
            "SELECT count(*) FROM job_queue WHERE pipe_job_id = ANY (%s) AND job_finished IS NOT TRUE",
            [[pipe_job_of[1], pipe_job_of[2]]],
        ).fetchone()[0]
        jobs_made = conn.execute(
            "SELECT pipe_job_id, count(*) FROM job_queue GROUP BY pipe_job_id ORDER BY 1"
        ).fetchall()
        pipes = dict(conn.execute("SELECT pipe_job_id, pipe_job_finished FROM pipe_job_queue"))
        order_2 = conn.execute(
            "SELECT j.job_process_name, j.job_assigned_process_uuid FROM pipe_job_queue pj"
            " JOIN pipelines p USING (pipe_id) JOIN job_queue j USING (pipe_job_id)"
            " WHERE pj.request_id = 50 AND p.pipe_order = 2"
        ).fetchall()
        claim_sizes = [r[0] for r in conn.execute("SELECT cardinality(claimed_job_ids) FROM job_queue_claim")]
    assert unfinished == 0
    assert dict(jobs_made)[pipe_job_of[1]] == 10 and dict(jobs_made)[pipe_job_of[2]] == 3
    assert pipes[pipe_job_of[1]] and pipes[pipe_job_of[2]]
    assert not pipes[pipe_job_of[4]]  # order 2: now started, not run
    assert order_2 == [("sumarizing_results", None)]  # the order gate opened: its entry job waits
    assert sorted(claim_sizes) == [1] * 9 + [4]
