"""The map of the kit: each lesson with the SQL, modules, checkers and tests it stands on (checked)."""

from dataclasses import dataclass

import pandas as pd

from pgqueue.paths import NOTEBOOKS_DIR
from pgqueue.queues import designs


@dataclass(frozen=True)
class Lesson:
    """One numbered notebook and what it stands on, each part a real name that tests/test_curriculum checks.

    `sql`: files or globs under the repository; `modules`: the pgqueue modules the notebook imports
    for its subject; `checkers`: the `pgqueue.check` names its exercises call; `tests`: the test
    files that prove those parts (the notebook itself also runs under nbval).
    """

    file: str
    teaches: str
    design: str
    sql: tuple[str, ...]
    modules: tuple[str, ...]
    checkers: tuple[str, ...]
    tests: tuple[str, ...]
    minutes: int  # reading and doing, exercises included, for someone new to the subject

    @property
    def seed(self) -> str:
        """Which part of the seed the lesson rebuilds: a design's title, or the label given."""
        return designs.REGISTRY[self.design].title if self.design in designs.REGISTRY else self.design

    @property
    def ready(self) -> bool:
        """Whether the notebook exists yet (lessons land one issue at a time)."""
        return (NOTEBOOKS_DIR / self.file).exists()


LESSONS = [
    Lesson(
        "00-start-here.ipynb",
        "why a queue inside PostgreSQL, the setup, the server, one NOTIFY/LISTEN round trip",
        "-",
        sql=("sql/start_here/00_*.sql",),
        modules=(
            "pgqueue.server",
            "pgqueue.server.setupcheck",
            "pgqueue.curriculum",
            "pgqueue.queues.designs",
        ),
        checkers=(),
        tests=("tests/server/test_server.py", "tests/test_curriculum.py"),
        minutes=15,
    ),
    Lesson(
        "01-model-pipelines.ipynb",
        "pipelines, their processes, their neighbours; you write next_processes",
        "shared model",
        sql=("sql/shared/01_*.sql",),
        modules=(),
        checkers=("next_processes",),
        tests=("tests/corpora/l01_next_processes.py",),
        minutes=25,
    ),
    Lesson(
        "02-send-heartbeats.ipynb",
        "heartbeats instead of service discovery, the kill switch; you write send_heartbeat",
        "shared model",
        sql=("sql/shared/02_*.sql",),
        modules=("pgqueue.queues.heartbeats", "pgqueue.ui.panels"),
        checkers=("heartbeat_upsert",),
        tests=("tests/corpora/l02_heartbeat_upsert.py", "tests/queues/test_heartbeats.py"),
        minutes=30,
    ),
    Lesson(
        "03-listen-for-jobs.ipynb",
        "a trigger that answers heartbeats over NOTIFY; you write its answer",
        "notify-listen",
        sql=("sql/notify_listen/03_*.sql", "sql/clients/notify_listen.sql"),
        modules=(
            "pgqueue.queues.notify_listen",
            "pgqueue.queues.heartbeats",
            "pgqueue.queues.fleet",
            "pgqueue.lab.races",
            "pgqueue.ui.panels",
        ),
        checkers=("heartbeat_answer",),
        tests=("tests/corpora/l03_heartbeat_answer.py", "tests/queues/test_notify_listen.py"),
        minutes=35,
    ),
    Lesson(
        "04-find-a-job.ipynb",
        "one stored function hands out work; the claim table; you write its pick",
        "single-call",
        sql=("sql/single_call/04_*.sql",),
        modules=(
            "pgqueue.queues.single_call",
            "pgqueue.queues.steps",
            "pgqueue.queues.heartbeats",
            "pgqueue.queues.fleet",
            "pgqueue.lab.races",
            "pgqueue.ui.panels",
        ),
        checkers=("find_job_pick",),
        tests=(
            "tests/corpora/l04_find_job_pick.py",
            "tests/check/test_find_job_pick.py",
            "tests/queues/test_single_call.py",
        ),
        minutes=40,
    ),
    Lesson(
        "05-set-priorities.ipynb",
        "priorities: lower runs first; you write set_pipe_job_priority",
        "single-call",
        sql=("sql/single_call/05_*.sql",),
        modules=(
            "pgqueue.queues.single_call",
            "pgqueue.queues.heartbeats",
            "pgqueue.queues.fleet",
            "pgqueue.ui.panels",
        ),
        checkers=("priority_change",),
        tests=("tests/corpora/l05_priority_change.py", "tests/ui/test_panels.py"),
        minutes=25,
    ),
    Lesson(
        "06-fan-out-and-in.ipynb",
        "fan-out to parallel jobs, gathering their results; you write the gather batch",
        "single-call",
        sql=("sql/single_call/06_*.sql",),
        modules=(
            "pgqueue.queues.single_call",
            "pgqueue.queues.steps",
            "pgqueue.queues.heartbeats",
            "pgqueue.queues.fleet",
            "pgqueue.lab.races",
            "pgqueue.ui.figures",
        ),
        checkers=("gather_batch",),
        tests=("tests/corpora/l06_gather_batch.py", "tests/check/test_gather_batch.py"),
        minutes=35,
    ),
    Lesson(
        "07-chain-pipeline-orders.ipynb",
        "order 2 starts when order 1 is done; finish_pipe; you write the gate's fix",
        "single-call",
        sql=("sql/single_call/07_*.sql", "sql/clients/races.sql"),
        modules=(
            "pgqueue.queues.single_call",
            "pgqueue.queues.fleet",
            "pgqueue.lab.demo",
            "pgqueue.lab.races",
            "pgqueue.ui.figures",
        ),
        checkers=("gate_takes_turns",),
        tests=("tests/corpora/l07_gate_takes_turns.py", "tests/check/test_gate_takes_turns.py"),
        minutes=40,
    ),
    Lesson(
        "08-watch-a-request-flow.ipynb",
        "the full example, live, then its figures",
        "single-call",
        sql=("sql/single_call/01_pipelines.examples.sql", "sql/clients/check.sql"),
        modules=(
            "pgqueue.queues.single_call",
            "pgqueue.queues.fleet",
            "pgqueue.lab.demo",
            "pgqueue.ui.figures",
            "pgqueue.ui.panels",
        ),
        checkers=("request_flow",),
        tests=("tests/corpora/l08_request_flow.py", "tests/ui/test_figures.py", "tests/lab/test_demo.py"),
        minutes=30,
    ),
    Lesson(
        "09-survive-a-crash.ipynb",
        "failure lab: a worker SIGKILLed after its claim, a NOTIFY nobody hears; the hardened fix",
        "the failure lab",
        sql=("sql/hardened/*.sql", "sql/clients/single_call.sql"),
        modules=(
            "pgqueue.lab.crash",
            "pgqueue.lab.sessions",
            "pgqueue.queues.hardened",
            "pgqueue.queues.single_call",
        ),
        checkers=("dead_holders",),
        tests=("tests/lab/test_crash.py", "tests/check/test_dead_holders.py"),
        minutes=35,
    ),
    Lesson(
        "10-race-for-a-job.ipynb",
        "failure lab: one job to two workers, callers queueing behind one lock, a pipe finished twice",
        "the failure lab",
        sql=("sql/hardened/*.sql", "sql/clients/hardened.sql", "sql/clients/single_call.sql"),
        modules=(
            "pgqueue.lab.race_for_a_job",
            "pgqueue.lab.races",
            "pgqueue.lab.sessions",
            "pgqueue.queues.client",
            "pgqueue.queues.hardened",
            "pgqueue.queues.notify_listen",
            "pgqueue.queues.single_call",
        ),
        checkers=("skip_locked_claim",),
        tests=("tests/lab/test_race_for_a_job.py", "tests/check/test_skip_locked_claim.py"),
        minutes=40,
    ),
    Lesson(
        "11-keep-the-queue-small.ipynb",
        "failure lab: dead tuples under churn, an open transaction holding VACUUM back; you archive",
        "the failure lab",
        sql=("sql/hardened/*.sql", "sql/clients/bloat.sql"),
        modules=("pgqueue.lab.bloat", "pgqueue.lab.sessions", "pgqueue.ui.figures"),
        checkers=("archive_finished",),
        tests=("tests/lab/test_bloat.py", "tests/check/test_archive_finished.py"),
        minutes=30,
    ),
    Lesson(
        "12-build-the-hardened-queue.ipynb",
        "you write the hardened claim, rescue, finish-once and gate; a chaos round on your version",
        "hardened",
        sql=("sql/hardened/04_find_job*.sql", "sql/hardened/07_*.sql"),
        modules=("pgqueue.lab.claim_cost", "pgqueue.lab.races", "pgqueue.queues.hardened"),
        checkers=("claim_jobs", "rescue_jobs", "hold_jobs", "gate_takes_turns", "capstone"),
        tests=(
            "tests/check/test_claim_jobs.py",
            "tests/check/test_rescue_jobs.py",
            "tests/check/test_hold_jobs.py",
            "tests/check/test_capstone.py",
            "tests/lab/test_chaos.py",
        ),
        minutes=50,
    ),
    Lesson(
        "13-scale-out.ipynb",
        "workers on many hosts, connection counts and a pool; what a transaction-mode pooler breaks",
        "hardened",
        sql=("sql/hardened/*.sql", "sql/clients/pooler.sql"),
        modules=(
            "pgqueue.lab.scaling",
            "pgqueue.lab.sessions",
            "pgqueue.server.pooler",
            "pgqueue.ui.figures",
        ),
        checkers=("turn_through_pool",),
        tests=(
            "tests/lab/test_scaling.py",
            "tests/server/test_pooler.py",
            "tests/check/test_turn_through_pool.py",
        ),
        minutes=35,
    ),
    Lesson(
        "14-measure-the-queues.ipynb",
        "what a claim costs as the queue grows and why (its plan), throughput, wake-up, the peers",
        "every design",
        sql=("sql/clients/bench.sql", "sql/clients/hardened.sql"),
        modules=(
            "pgqueue.bench",
            "pgqueue.bench.claims",
            "pgqueue.bench.databases",
            "pgqueue.bench.figures",
            "pgqueue.bench.inputs",
            "pgqueue.bench.throughput",
            "pgqueue.bench.report",
            "pgqueue.queues.notify_listen",
        ),
        checkers=(),
        tests=("tests/bench/test_bench.py", "tests/bench/test_figures.py", "tests/bench/test_peers.py"),
        minutes=45,
    ),
]


def kit_map() -> pd.DataFrame:
    """The lessons as a table: what each teaches and stands on, its minutes, whether it is ready yet."""
    rows = [
        {
            "lesson": lesson.file.removesuffix(".ipynb"),
            "teaches": lesson.teaches,
            "seed": lesson.seed,
            "sql": ", ".join(lesson.sql),
            "pgqueue modules": ", ".join(m.removeprefix("pgqueue.") for m in lesson.modules),
            "checkers": ", ".join(f"check.{name}" for name in lesson.checkers),
            "minutes": lesson.minutes,
            "status": "ready" if lesson.ready else "planned",
        }
        for lesson in LESSONS
    ]
    return pd.DataFrame(rows).set_index("lesson")
