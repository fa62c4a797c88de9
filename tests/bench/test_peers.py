"""The production queues bench measures beside the kit: each drains its queue across processes and stops."""

import multiprocessing
import time

import pytest
from packaging.requirements import Requirement

from pgqueue import server
from pgqueue.bench import peers
from tests.conftest import REPO

JOBS = 200
PROCESSES = 2
DRAIN_DEADLINE = 180  # seconds
BENCH_INSTALL = "the production queues bench compares with: pip install -r requirements-bench.txt"


def _peer(package: str, batch: int) -> peers.Peer:
    return next(p for p in peers.PEERS if p.package == package and p.batch == batch)


def _work(peer: peers.Peer, dsn: str, stop_at: float, done) -> None:
    done.put(peers.work(peer, dsn, stop_at))


def test_requirements_bench_pins_the_releases_the_table_names():
    pins = {}
    for line in (REPO / "requirements-bench.txt").read_text().splitlines():
        if line := line.split("#", 1)[0].strip():
            req = Requirement(line)
            pins[req.name] = str(req.specifier)
    assert pins["pgqueuer"] == f"=={peers.PGQUEUER_VERSION}"
    assert pins["procrastinate"] == f"=={peers.PROCRASTINATE_VERSION}"
    assert pins["asyncpg"].startswith("==")  # pgqueuer's driver, pinned too
    assert [p.name for p in peers.PEERS] == [
        f"pgqueuer {peers.PGQUEUER_VERSION}, batch of 10",
        f"pgqueuer {peers.PGQUEUER_VERSION}, batch of 50",
        f"procrastinate {peers.PROCRASTINATE_VERSION}",
    ]


@pytest.mark.parametrize(("package", "batch"), [("pgqueuer", 10), ("procrastinate", 1)])
def test_two_processes_drain_the_queue_between_them_and_stop(package, batch, fresh_db):
    pytest.importorskip(package, reason=BENCH_INSTALL)
    if package == "pgqueuer":
        pytest.importorskip("asyncpg", reason=BENCH_INSTALL)
    peer = _peer(package, batch)
    assert peers.missing(peer) is None
    dsn = server.resolve().uri_for(fresh_db)
    peers.prepare(peer, dsn, JOBS)
    assert peers.remaining(peer, dsn) == JOBS

    spawn = multiprocessing.get_context("spawn")
    done = spawn.Queue()
    # a deadline far beyond the drain, which on a loaded machine took 20 s with the processes'
    # start: a worker that waits for more jobs ends at it, one that stops at the empty queue before
    stop_at = time.monotonic() + DRAIN_DEADLINE
    workers = [spawn.Process(target=_work, args=(peer, dsn, stop_at, done)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    counts = [done.get(timeout=DRAIN_DEADLINE + 30) for _ in workers]
    for worker in workers:
        worker.join(5)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    assert time.monotonic() < stop_at, "the workers waited for more jobs until their deadline, not stopping"
    assert sum(counts) == JOBS and peers.remaining(peer, dsn) == 0


@pytest.mark.parametrize(("package", "batch"), [("pgqueuer", 10), ("procrastinate", 1)])
def test_a_worker_stops_at_its_deadline_having_finished_what_it_took(package, batch, fresh_db):
    pytest.importorskip(package, reason=BENCH_INSTALL)
    peer = _peer(package, batch)
    assert peers.missing(peer) is None
    dsn = server.resolve().uri_for(fresh_db)
    jobs = 10_000  # more than either drains in the few seconds it is given
    peers.prepare(peer, dsn, jobs)
    # a loaded machine may spend a short deadline on connecting alone, so the worker is given a
    # longer one each round until it has worked some jobs; every round must stop short of the
    # queue's end with all it took finished and recorded: none lost, none left running
    total = 0
    for grace in (0.5, 1, 2, 4, 8):
        started = time.monotonic()
        done = peers.work(peer, dsn, started + grace)
        assert time.monotonic() - started < grace + 5, "the worker ran on past its deadline"
        total += done
        assert total < jobs and peers.remaining(peer, dsn) == jobs - total
        if done:
            break
    assert total > 0, "the worker ran no job in five rounds of up to 8 s"


def test_a_peer_that_is_not_installed_is_named_with_the_command_that_adds_it(monkeypatch):
    real = peers.importlib.metadata.version

    def version(dist: str) -> str:
        if dist == "procrastinate":
            raise peers.importlib.metadata.PackageNotFoundError(dist)
        return "1.5.0" if dist == "pgqueuer" else real(dist)

    monkeypatch.setattr(peers.importlib.metadata, "version", version)
    assert peers.missing(_peer("procrastinate", 1)) == (
        "procrastinate is not installed: pip install -r requirements-bench.txt"
    )
    assert peers.missing(_peer("pgqueuer", 50)) == (
        f"pgqueuer 1.5.0 is installed, bench measures {peers.PGQUEUER_VERSION}: "
        "pip install -r requirements-bench.txt"
    )
