"""The map of the kit: which lesson teaches which part of the seed, with its SQL and module."""

from dataclasses import dataclass

import pandas as pd

from pgqueue.paths import NOTEBOOKS_DIR
from pgqueue.queues import designs


@dataclass(frozen=True)
class Lesson:
    """One numbered notebook and what it builds (`design`: a name in the registry, or a plain label)."""

    file: str
    teaches: str
    design: str
    sql: str
    module: str
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
        "sql/start_here/",
        "setupcheck, server",
        minutes=15,
    ),
    Lesson(
        "01-model-pipelines.ipynb",
        "pipelines, their processes, their neighbours; you write next_processes",
        "shared model",
        "sql/shared/01_*",
        "labs, schema",
        minutes=25,
    ),
    Lesson(
        "02-send-heartbeats.ipynb",
        "heartbeats instead of service discovery, the kill switch; you write send_heartbeat",
        "shared model",
        "sql/shared/02_*",
        "notify_listen",
        minutes=30,
    ),
    Lesson(
        "03-listen-for-jobs.ipynb",
        "a trigger that answers heartbeats over NOTIFY; you write its answer",
        "notify-listen",
        "sql/notify_listen/03_*",
        "notify_listen",
        minutes=35,
    ),
    Lesson(
        "04-find-a-job.ipynb",
        "one stored function hands out work; the claim table; you write its pick",
        "single-call",
        "sql/single_call/",
        "single_call",
        minutes=40,
    ),
    Lesson(
        "05-set-priorities.ipynb",
        "priorities: lower runs first; you write set_pipe_job_priority",
        "single-call",
        "sql/single_call/",
        "single_call",
        minutes=25,
    ),
    Lesson(
        "06-fan-out-and-in.ipynb",
        "fan-out to parallel jobs, gathering their results; you write the gather batch",
        "single-call",
        "sql/single_call/",
        "processes",
        minutes=35,
    ),
    Lesson(
        "07-chain-pipeline-orders.ipynb",
        "order 2 starts when order 1 is done; finish_pipe; you write the gate's fix",
        "single-call",
        "sql/single_call/",
        "single_call",
        minutes=40,
    ),
    Lesson(
        "08-watch-a-request-flow.ipynb",
        "the full example, live, then its figures",
        "single-call",
        "sql/single_call/",
        "viz, widgets",
        minutes=30,
    ),
    Lesson(
        "09-survive-a-crash.ipynb",
        "failure lab: a worker SIGKILLed after its claim, a NOTIFY nobody hears; the hardened fix",
        "the failure lab",
        "sql/hardened/",
        "failures, hardened",
        minutes=35,
    ),
    Lesson(
        "10-race-for-a-job.ipynb",
        "failure lab: one job to two workers, callers queueing behind one lock, a pipe finished twice",
        "the failure lab",
        "sql/hardened/",
        "failures, hardened",
        minutes=40,
    ),
    Lesson(
        "11-keep-the-queue-small.ipynb",
        "failure lab: dead tuples under churn, an open transaction holding VACUUM back; you archive",
        "the failure lab",
        "sql/hardened/",
        "bloat",
        minutes=30,
    ),
    Lesson(
        "12-build-the-hardened-queue.ipynb",
        "you write the hardened claim, rescue, finish-once and gate; a chaos round on your version",
        "hardened",
        "sql/hardened/",
        "check, chaos",
        minutes=50,
    ),
    Lesson(
        "13-scale-out.ipynb",
        "workers on many hosts, connection counts and a pool; what a transaction-mode pooler breaks",
        "hardened",
        "sql/hardened/",
        "pooler, scaling",
        minutes=35,
    ),
    Lesson(
        "14-measure-the-queues.ipynb",
        "what a claim costs as the queue grows and why (its plan), throughput, wake-up, the peers",
        "every design",
        "sql/clients/bench.sql",
        "bench, benchviz",
        minutes=45,
    ),
]


def kit_map() -> pd.DataFrame:
    """The lessons as a table, with the minutes each takes and whether it is ready yet."""
    rows = [
        {
            "lesson": lesson.file.removesuffix(".ipynb"),
            "teaches": lesson.teaches,
            "seed": lesson.seed,
            "sql": lesson.sql,
            "pgqueue module": lesson.module,
            "minutes": lesson.minutes,
            "status": "ready" if lesson.ready else "planned",
        }
        for lesson in LESSONS
    ]
    return pd.DataFrame(rows).set_index("lesson")
