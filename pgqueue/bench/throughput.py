"""Throughput: workers released together on fresh queues of no-op jobs, until it drains or a window ends."""

from __future__ import annotations

from dataclasses import dataclass

from pgqueue import server
from pgqueue.bench import databases, peers, worker
from pgqueue.bench.inputs import BATCH, FLOOR
from pgqueue.bench.report import Throughput
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs

STOP_GRACE = 60.0  # seconds a worker may take, after its window, to say how many jobs it finished


@dataclass(frozen=True)
class Runner:
    """A design's worker loop (or the floor's), whose throughput is measured: its queue and its worker."""

    name: str
    design: str  # its lab ("floor": a database of its own)
    batch: int = 1

    @property
    def kind(self) -> str:
        """The worker's KIND (pgqueue.bench.worker)."""
        return self.design

    def prepare(self, jobs: int) -> databases.Queue:
        """A fresh queue for one point with `jobs` waiting no-op jobs, each a request of its own."""
        return databases.queue(self.design, requests=True).ready(jobs, self.name)


@dataclass(frozen=True)
class Peer(Runner):
    """A production queue's own worker (pgqueuer, procrastinate), on its own schema and bulk enqueue."""

    @property
    def kind(self) -> str:
        return f"peer:{self.name}"

    def prepare(self, jobs: int) -> _PeerQueue:
        queue = _PeerQueue(next(p for p in peers.PEERS if p.name == self.name), labs.prefix() + "peer")
        peers.prepare(queue.peer, queue.uri(), jobs)
        return queue


@dataclass(frozen=True)
class _PeerQueue:
    peer: peers.Peer
    database: str

    def __post_init__(self) -> None:
        databases.fresh_database(self.database)

    def uri(self) -> str:
        return server.resolve().uri_for(self.database)

    def finished(self, queued: int) -> int:
        """How many of the `queued` jobs the peer's own tables say are done."""
        return queued - peers.remaining(self.peer, self.uri())


RUNNERS = (
    Runner("notify-listen", "notify-listen"),
    Runner("single-call", "single-call"),
    Runner("hardened", "hardened"),
    Runner("hardened, batch of 10", "hardened", 10),
    Runner(f"hardened, batch of {BATCH}", "hardened", BATCH),
    Runner(FLOOR, "floor"),
    Runner(f"floor, batch of {BATCH}", "floor", BATCH),
)


def peer_runners() -> tuple[tuple[Runner, ...], list[str]]:
    """The installed peers as runners, and one line for each peer that is missing."""
    runners, missing = [], []
    for peer in peers.PEERS:
        if why := peers.missing(peer):
            missing.append(f"{peer.name}: {why}")
        else:
            runners.append(Peer(peer.name, peer.package, peer.batch))
    return tuple(runners), missing


def measure(runner: Runner, workers: int, jobs: int, window: float) -> Throughput:
    """Release `workers` processes together on `jobs` fresh jobs; jobs/s until drained or `window` ends."""
    queue = runner.prepare(jobs)
    with worker.started([worker.argv(runner.kind, queue.database, runner.batch)] * workers) as procs:
        for proc in procs:
            proc.stdin.write(f"go {window}\n".encode())
        for proc in procs:
            proc.stdin.flush()  # written first, flushed together: the processes start as one
        # past the window a worker finishes what it holds and stops; a peer flushes its acks too
        results = [worker.read(proc, "how many jobs it finished", window + STOP_GRACE) for proc in procs]
    done = sum(r["jobs"] for r in results)
    seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
    if (finished := queue.finished(jobs)) != done:
        raise PgQueueError(
            f"{runner.name} with {workers} worker(s): the workers finished {done} jobs, the database "
            f"says {finished}; the number would not be jobs"
        )
    return Throughput(
        runner.name, runner.design, runner.batch, workers, jobs, done, round(seconds, 3),
        round(done / seconds, 1) if seconds > 0 else 0.0, done == jobs,
    )  # fmt: skip
