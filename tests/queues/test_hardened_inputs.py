"""Bad input to every call of the hardened lab: a clear error (SQLSTATE and the value) and no change.

One lab is built for the module, with jobs in every state a call can meet (held by one worker or
another, waiting, finished, dead-lettered, at a last step). Each row spoils one argument of a
call that is otherwise valid (a test makes each valid call and rolls it back), expects
PostgreSQL's code for the kind of mistake and a fragment of the message that names the value,
and compares every table (rows and a checksum) before and after.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgqueue import queries
from pgqueue.queues import client, hardened, labs

POC = "hardened"
A, B, C = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"  # three workers' uuids
SQL_IN_A_NAME = "x'); DROP TABLE job_queue; --"


def _q() -> queries.Queries:
    return queries.load("clients/hardened.sql")


def _t() -> queries.Queries:
    return labs.step(POC, "find_job").lesson


def _query(call: str) -> str:
    return _q()[call] if call in list(_q()) else _t()[call]


def ask(conn, who: str, name: str, version: str, batch: int = 1) -> list[dict] | str:
    params = {"uuid": who, "server": "test", "name": name, "version": version, "multi": False, "batch": batch}
    answer = conn.execute(_q()["find_job"], params).fetchone()[0]
    return answer if answer in (client.KILL, client.NO_JOB) else json.loads(answer)


def hand_over(conn, who: str, ids: list[int]) -> list[int]:
    params = {"uuid": who, "job_ids": ids, "payloads": Jsonb([{}])}
    return conn.execute(_q()["create_jobs"], params).fetchone()[0]


@pytest.fixture(scope="module")
def jobs() -> SimpleNamespace:
    """The lab, and the ids of its jobs in each state a call can meet."""
    labs.reset(POC, examples=True)
    with labs.connect(POC) as conn:
        conn.execute(_t()["rescue_after"], {"seconds": 3600})  # no lease is lost while the module runs
        conn.execute(_t()["flawed_pipelines"])
        # A holds the assigner jobs of pipe jobs 1 and 5 (two pipe jobs, one worker)
        first, fifth = ask(conn, A, "assigner", "1.0.0", batch=2)
        # B runs pipe job 4 (first -> second -> third process) and holds its last step
        (step1,) = ask(conn, B, "first_process", "1.9.2")
        hand_over(conn, B, [step1["job_id"]])
        (step2,) = ask(conn, B, "second_process", "2.2.0")
        hand_over(conn, B, [step2["job_id"]])
        (last,) = ask(conn, B, "third_process", "5.3.0")
        # C's one attempt at pipe job 3 fails, and one attempt is all a job gets now: dead
        conn.execute(_t()["retries"], {"max_attempts": 1, "base": 1})
        (doomed,) = ask(conn, C, "assigner", "1.0.0")
        conn.execute(_q()["fail_jobs"], {"uuid": C, "job_ids": [doomed["job_id"]], "error": "disk full"})
        # a pipe job nobody has claimed yet
        params = {"request_id": 80, "pipe_id": 2, "priority": 100, "finished": False}
        waiting_pipe_job = conn.execute(_t()["insert_pipe_job"], params).fetchone()[0]
        waiting = conn.execute(_t()["jobs_of"], {"pipe_job_id": waiting_pipe_job}).fetchone()[0]
        assert waiting == 1
        (waiting_job,) = [j.job_id for j in hardened.jobs().itertuples() if j.pipe_job_id == waiting_pipe_job]
    return SimpleNamespace(
        a_first=first["job_id"],  # A's, pipe job 1
        a_fifth=fifth["job_id"],  # A's, pipe job 5 (pipeline 5, the first of four steps)
        b_done=step1["job_id"],  # finished by B
        b_last=last["job_id"],  # B's, pipe job 4, the last step of pipeline 2
        dead=doomed["job_id"],
        waiting=waiting_job,
    )


@pytest.fixture(scope="module")
def conn(jobs):
    with labs.connect(POC) as connection:
        tables = {row[0] for row in connection.execute(_t()["lab_tables"])}
        assert set(snapshot(connection)) == tables  # the checksums miss no table of the lab
        yield connection


def snapshot(conn) -> dict:
    """Rows and a checksum of every table of the lab, by table."""
    return {name: (rows, checksum) for name, rows, checksum in conn.execute(_t()["every_table"])}


# A valid call of each kind; every row below spoils one of its arguments.
VALID: dict[str, Callable[[SimpleNamespace], dict]] = {
    "find_job": lambda s: {
        "uuid": "dddddddddddd",
        "server": "test",
        "name": "first_process",
        "version": "1.9.2",
        "multi": False,
        "batch": 1,
    },
    "create_jobs": lambda s: {"uuid": A, "job_ids": [s.a_fifth], "payloads": Jsonb([{}])},
    "finish_pipe": lambda s: {"uuid": B, "job_ids": [s.b_last], "pipe_job_id": 4},
    "finish_pipes": lambda s: {"uuid": B, "job_ids": [s.b_last]},
    "fail_jobs": lambda s: {"uuid": B, "job_ids": [s.b_last], "error": "disk full"},
    "set_priority_as_given": lambda s: {"pipe_job_id": 4, "priority": 5},
    "insert_pipe_job": lambda s: {"request_id": 90, "pipe_id": 2, "priority": 100, "finished": False},
    "insert_numbered_pipe_job": lambda s: {"pipe_job_id": 999, "request_id": 91, "pipe_id": 2},
}


@dataclass(frozen=True)
class Bad:
    """One malformed call: which, what is wrong with it, the code and words it must get back."""

    call: str
    why: str
    code: str
    says: str  # formatted with the job ids of the `jobs` fixture
    spoil: dict = field(default_factory=dict)  # argument -> value, or a function of the job ids

    def params(self, s: SimpleNamespace) -> dict:
        spoilt = {k: v(s) if callable(v) else v for k, v in self.spoil.items()}
        return {**VALID[self.call](s), **spoilt}


def ids(*names: str) -> Callable[[SimpleNamespace], list]:
    return lambda s: [getattr(s, n) if isinstance(n, str) else n for n in names]


LONG = "n" * 101
BAD_INPUT = [
    # find_job: a worker's one call
    Bad("find_job", "uuid NULL", "22023", "12 lowercase hex characters, got NULL", {"uuid": None}),
    Bad("find_job", "uuid in capitals", "22023", "got 'ABCDEF123456'", {"uuid": "ABCDEF123456"}),
    Bad("find_job", "uuid of 13", "22023", "got 'abcdef1234567'", {"uuid": "abcdef1234567"}),
    Bad(
        "find_job",
        "uuid holding SQL",
        "22023",
        "got 'x''); DROP TABLE job_queue; --'",
        {"uuid": SQL_IN_A_NAME},
    ),
    Bad("find_job", "server NULL", "22023", "server name must not be empty, got NULL", {"server": None}),
    Bad("find_job", "name NULL", "22023", "process name must not be empty, got NULL", {"name": None}),
    Bad("find_job", "name empty", "22023", "process name must not be empty, got ''", {"name": ""}),
    Bad(
        "find_job", "version NULL", "22023", "process version must not be empty, got NULL", {"version": None}
    ),
    Bad(
        "find_job",
        "name too long",
        "22023",
        "process name is at most 100 characters, got 101",
        {"name": LONG},
    ),
    Bad(
        "find_job",
        "version too long",
        "22023",
        "at most 20 characters, got 21: '1.0.0",
        {"version": "1.0.0" * 4 + "1"},
    ),
    Bad("find_job", "server too long", "22023", "server name is at most 100 characters", {"server": LONG}),
    Bad(
        "find_job",
        "name with a newline",
        "22023",
        'holds a control character: "first\\nprocess"',
        {"name": "first\nprocess"},
    ),
    Bad("find_job", "multi NULL", "22023", "multi_job true or false, got 1 and NULL", {"multi": None}),
    Bad("find_job", "multi not a boolean", "22P02", 'type boolean: "maybe"', {"multi": "maybe"}),
    Bad("find_job", "batch NULL", "22023", "batch_size must be 1 to 1000", {"batch": None}),
    Bad("find_job", "batch 0", "22023", "got 0 and false", {"batch": 0}),
    Bad("find_job", "batch over 1000", "22023", "got 1001 and false", {"batch": 1001}),
    Bad("find_job", "batch as text", "22P02", 'type integer: "ten"', {"batch": "ten"}),
    # create_jobs: a step hands its work to the next
    Bad(
        "create_jobs",
        "payloads an object",
        "22023",
        'JSON array, got object {{"a": 1}}',
        {"payloads": Jsonb({"a": 1})},
    ),
    Bad(
        "create_jobs",
        "payloads a JSON string",
        "22023",
        'JSON array, got string "[{{}}]"',
        {"payloads": Jsonb("[{}]")},
    ),
    Bad("create_jobs", "payloads JSON null", "22023", "JSON array, got null", {"payloads": Jsonb(None)}),
    Bad("create_jobs", "payloads NULL", "22023", "JSON array, got NULL", {"payloads": None}),
    Bad("create_jobs", "payloads not JSON", "22P02", 'Token "not" is invalid', {"payloads": "not json"}),
    Bad("create_jobs", "payloads empty", "22023", "1 to 1000 jobs, got 0", {"payloads": Jsonb([])}),
    Bad(
        "create_jobs", "1001 payloads", "22023", "1 to 1000 jobs, got 1001", {"payloads": Jsonb([{}] * 1001)}
    ),
    Bad("create_jobs", "job ids NULL", "22023", "create_jobs: no job ids given", {"job_ids": None}),
    Bad("create_jobs", "job ids empty", "22023", "create_jobs: no job ids given", {"job_ids": []}),
    Bad(
        "create_jobs",
        "a NULL job id",
        "22023",
        "job ids {{{a_fifth},NULL}} hold a NULL",
        {"job_ids": ids("a_fifth", None)},
    ),
    Bad(
        "create_jobs",
        "a job twice",
        "22023",
        "{{{a_fifth},{a_fifth}}} name a job twice",
        {"job_ids": ids("a_fifth", "a_fifth")},
    ),
    Bad(
        "create_jobs",
        "1001 job ids",
        "22023",
        "at most 1000 job ids per call, got 1001 (from 1 to 1001)",
        {"job_ids": list(range(1, 1002))},
    ),
    Bad("create_jobs", "job ids as text", "22P02", 'type integer: "x"', {"job_ids": "{1,x}"}),
    Bad("create_jobs", "an unknown job", "P0002", "create_jobs: no job {{999999}}", {"job_ids": [999999]}),
    Bad(
        "create_jobs",
        "jobs of two pipe jobs",
        "22023",
        "jobs {{{a_first},{a_fifth}}} belong to more than one pipe job",
        {"job_ids": ids("a_first", "a_fifth")},
    ),
    Bad("create_jobs", "uuid NULL", "22023", "12 lowercase hex characters, got NULL", {"uuid": None}),
    Bad("create_jobs", "uuid too short", "22023", "got 'abc'", {"uuid": "abc"}),
    Bad("create_jobs", "uuid holding SQL", "22023", "DROP TABLE job_queue", {"uuid": SQL_IN_A_NAME}),
    Bad(
        "create_jobs",
        "a job held by another",
        "55000",
        f"job {{b_last}} is not held by {A} (held by {B})",
        {"job_ids": ids("b_last")},
    ),
    Bad(
        "create_jobs",
        "a job nobody holds",
        "55000",
        f"job {{waiting}} is not held by {A} (held by nobody)",
        {"job_ids": ids("waiting")},
    ),
    Bad(
        "create_jobs",
        "a job another finished",
        "55000",
        "job {b_done} was finished by another worker",
        {"job_ids": ids("b_done")},
    ),
    Bad(
        "create_jobs",
        "a dead job",
        "55000",
        "job {dead} is dead-lettered (disk full)",
        {"job_ids": ids("dead")},
    ),
    Bad(
        "create_jobs",
        "the last step",
        "55000",
        "pipeline 2 has no process after third_process",
        {"uuid": B, "job_ids": ids("b_last")},
    ),
    # finish_pipe: the last step ends the pipe job
    Bad("finish_pipe", "pipe job NULL", "22023", "finish_pipe: no pipe job id given", {"pipe_job_id": None}),
    Bad(
        "finish_pipe",
        "an unknown pipe job",
        "P0002",
        "finish_pipe: no pipe job 999999",
        {"pipe_job_id": 999999},
    ),
    Bad("finish_pipe", "pipe job as text", "22P02", 'type integer: "one"', {"pipe_job_id": "one"}),
    Bad(
        "finish_pipe",
        "another pipe job's job",
        "22023",
        "jobs {{{b_last}}} do not all belong to pipe job 1",
        {"pipe_job_id": 1},
    ),
    Bad(
        "finish_pipe",
        "not the last step",
        "55000",
        "job {a_fifth} is a job of assigner, not of the last step of pipeline 5",
        {"uuid": A, "job_ids": ids("a_fifth"), "pipe_job_id": 5},
    ),
    Bad("finish_pipe", "job ids NULL", "22023", "finish_pipe: no job ids given", {"job_ids": None}),
    Bad("finish_pipe", "job ids empty", "22023", "finish_pipe: no job ids given", {"job_ids": []}),
    Bad("finish_pipe", "an unknown job", "P0002", "finish_pipe: no job {{999999}}", {"job_ids": [999999]}),
    Bad("finish_pipe", "uuid NULL", "22023", "12 lowercase hex characters, got NULL", {"uuid": None}),
    Bad("finish_pipe", "uuid in capitals", "22023", "got 'BBBBBBBBBBBB'", {"uuid": "BBBBBBBBBBBB"}),
    Bad(
        "finish_pipe",
        "a job held by another",
        "55000",
        f"job {{b_last}} is not held by {A} (held by {B})",
        {"uuid": A},
    ),
    # finish_pipes: a batch's last steps, of any pipe jobs, in one call
    Bad("finish_pipes", "job ids NULL", "22023", "finish_pipes: no job ids given", {"job_ids": None}),
    Bad("finish_pipes", "job ids empty", "22023", "finish_pipes: no job ids given", {"job_ids": []}),
    Bad("finish_pipes", "job ids as text", "22P02", 'type integer: "a"', {"job_ids": "{a}"}),
    Bad(
        "finish_pipes", "a job named twice", "22023", "name a job twice", {"job_ids": ids("b_last", "b_last")}
    ),
    Bad("finish_pipes", "an unknown job", "P0002", "finish_pipes: no job {{999999}}", {"job_ids": [999999]}),
    Bad("finish_pipes", "uuid NULL", "22023", "12 lowercase hex characters, got NULL", {"uuid": None}),
    Bad("finish_pipes", "uuid holding SQL", "22023", "DROP TABLE job_queue", {"uuid": SQL_IN_A_NAME}),
    Bad(
        "finish_pipes",
        "a job held by another",
        "55000",
        f"job {{b_last}} is not held by {A} (held by {B})",
        {"uuid": A},
    ),
    Bad(
        "finish_pipes",
        "one good job and one held by another",
        "55000",
        f"job {{a_first}} is not held by {B} (held by {A})",
        {"job_ids": ids("a_first", "b_last")},
    ),
    Bad(
        "finish_pipes",
        "a job another worker finished",
        "55000",
        "job {b_done} was finished by another worker",
        {"uuid": A, "job_ids": ids("b_done")},
    ),
    Bad(
        "finish_pipes",
        "a dead job",
        "55000",
        "job {dead} is dead-lettered (disk full)",
        {"uuid": C, "job_ids": ids("dead")},
    ),
    Bad(
        "finish_pipes",
        "not the last step",
        "55000",
        "job {a_fifth} is a job of assigner, not of the last step of pipeline 5",
        {"uuid": A, "job_ids": ids("a_fifth")},
    ),
    # fail_jobs: the work failed
    Bad("fail_jobs", "error NULL", "22023", "say what went wrong (p_error is empty)", {"error": None}),
    Bad("fail_jobs", "error empty", "22023", "say what went wrong (p_error is empty)", {"error": ""}),
    Bad("fail_jobs", "job ids NULL", "22023", "fail_jobs: no job ids given", {"job_ids": None}),
    Bad("fail_jobs", "job ids as text", "22P02", 'type integer: "a"', {"job_ids": "{a}"}),
    Bad("fail_jobs", "an unknown job", "P0002", "fail_jobs: no job {{999999}}", {"job_ids": [999999]}),
    Bad("fail_jobs", "uuid NULL", "22023", "12 lowercase hex characters, got NULL", {"uuid": None}),
    Bad("fail_jobs", "uuid holding SQL", "22023", "DROP TABLE job_queue", {"uuid": SQL_IN_A_NAME}),
    Bad(
        "fail_jobs",
        "a job held by another",
        "55000",
        f"job {{b_last}} is not held by {A} (held by {B})",
        {"uuid": A},
    ),
    Bad(
        "fail_jobs",
        "a job it finished",
        "55000",
        "jobs {{{b_done}}} were finished, they cannot fail now",
        {"job_ids": ids("b_done")},
    ),
    Bad(
        "fail_jobs", "a dead job", "55000", "job {dead} is dead-lettered", {"uuid": C, "job_ids": ids("dead")}
    ),
    # set_pipe_job_priority: a user reorders the queue
    Bad(
        "set_priority_as_given",
        "pipe job NULL",
        "22023",
        "must be given, got NULL and 5",
        {"pipe_job_id": None},
    ),
    Bad(
        "set_priority_as_given", "priority NULL", "22023", "must be given, got 4 and NULL", {"priority": None}
    ),
    Bad(
        "set_priority_as_given", "an unknown pipe job", "P0002", "no pipe job 999999", {"pipe_job_id": 999999}
    ),
    Bad("set_priority_as_given", "pipe job as text", "22P02", 'type integer: "abc"', {"pipe_job_id": "abc"}),
    Bad(
        "set_priority_as_given",
        "priority out of range",
        "22003",
        'value "40000" is out of range for type smallint',
        {"priority": "40000"},
    ),
    Bad("set_priority_as_given", "priority as text", "22P02", 'type smallint: "high"', {"priority": "high"}),
    # a pipe job inserted into pipe_job_queue starts a request
    Bad("insert_pipe_job", "request NULL", "22023", ", NULL, 2, 100, false", {"request_id": None}),
    Bad("insert_pipe_job", "pipeline NULL", "22023", ", 90, NULL, 100, false", {"pipe_id": None}),
    Bad("insert_pipe_job", "priority NULL", "22023", ", 90, 2, NULL, false", {"priority": None}),
    Bad("insert_pipe_job", "finished NULL", "22023", ", 2, 100, NULL", {"finished": None}),
    Bad("insert_pipe_job", "an unknown pipeline", "P0002", "new pipe job: no pipeline 99", {"pipe_id": 99}),
    Bad(
        "insert_pipe_job",
        "pipeline holding SQL",
        "22P02",
        'type integer: "1; DROP TABLE job_queue"',
        {"pipe_id": "1; DROP TABLE job_queue"},
    ),
    Bad(
        "insert_pipe_job",
        "request holding SQL",
        "22P02",
        "DROP TABLE job_queue; --",
        {"request_id": SQL_IN_A_NAME},
    ),
    Bad(
        "insert_pipe_job",
        "priority out of range",
        "22003",
        'value "40000" is out of range',
        {"priority": "40000"},
    ),
    Bad("insert_pipe_job", "inserted finished", "22023", "is inserted already finished", {"finished": True}),
    Bad(
        "insert_pipe_job",
        "an order gap in the request",
        "22023",
        "request 90 has no pipe job of order 1, so its order-2 pipe job would never start",
        {"pipe_id": 4},
    ),
    Bad(
        "insert_pipe_job",
        "a gap in the pipeline's steps",
        "22023",
        "pipeline 6 has a gap in its process orders {{1,3}}",
        {"pipe_id": 6},
    ),
    Bad(
        "insert_pipe_job",
        "a pipeline with no steps",
        "P0002",
        "pipeline 7 has no process with process_order 1",
        {"pipe_id": 7},
    ),
    Bad(
        "insert_numbered_pipe_job",
        "pipe job id NULL",
        "22023",
        "must not be NULL, got NULL, 91, 2, 100, false",
        {"pipe_job_id": None},
    ),
    # PostgreSQL's own words are clear here: the key names the value (in the detail)
    Bad(
        "insert_numbered_pipe_job",
        "a pipe job id taken",
        "23505",
        "(pipe_job_id)=(1) already exists",
        {"pipe_job_id": 1},
    ),
    Bad(
        "fail_jobs",
        "jobs of two pipe jobs",
        "22023",
        "jobs {{{a_first},{a_fifth}}} belong to more than one pipe job",
        {"uuid": A, "job_ids": ids("a_first", "a_fifth")},
    ),
]


@pytest.mark.parametrize("bad", BAD_INPUT, ids=lambda b: f"{b.call}: {b.why}")
def test_a_malformed_call_is_refused_with_its_value_and_changes_nothing(conn, jobs, bad):
    before = snapshot(conn)
    with pytest.raises(psycopg.Error) as refused:
        conn.execute(_query(bad.call), bad.params(jobs))
    diag = refused.value.diag
    said = f"{diag.message_primary} {diag.message_detail or ''}"
    assert diag.sqlstate == bad.code, said
    assert bad.says.format(**vars(jobs)) in said
    assert snapshot(conn) == before


@pytest.mark.parametrize("call", VALID)
def test_each_call_the_table_spoils_is_valid_as_it_stands(conn, jobs, call):
    before = snapshot(conn)
    with conn.transaction(force_rollback=True):
        conn.execute(_query(call), VALID[call](jobs))
    assert snapshot(conn) == before


def test_quotes_and_sql_in_a_name_are_data_never_code(conn, jobs):
    who = "eeeeeeeeeeee"
    params = {
        "uuid": who,
        "server": SQL_IN_A_NAME,
        "name": SQL_IN_A_NAME,
        "version": "1'; --",
        "multi": False,
    }
    before = snapshot(conn)
    assert conn.execute(_q()["find_job"], {**params, "batch": 1}).fetchone()[0] == client.NO_JOB
    after = snapshot(conn)
    changed = {table for table in after if after[table] != before[table]}
    assert changed == {"process_heartbeats"}  # it registered, as any worker does; job_queue is intact
    assert conn.execute(_t()["heartbeat_of"], {"uuid": who}).fetchone() == (
        SQL_IN_A_NAME,
        "1'; --",
        SQL_IN_A_NAME,
    )
