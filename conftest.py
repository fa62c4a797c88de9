"""Test-run settings shared by tests/ and the notebooks: a private embedded server, private names.

Set before anything runs, so the kernels that nbval starts inherit them: every lesson run by
pytest uses a throwaway embedded server (or PGQUEUE_DSN's server, with databases named
`pgqueue_t<pid>_...` that are dropped at the end), never the learner's own labs.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from pgqueue.server import embedded


def pytest_configure(config: pytest.Config) -> None:
    # every process of a parallel run (pytest-xdist) gets its own home, server and names: tests
    # that count their run's processes, or rebuild a lab, never see another process's
    home = tempfile.mkdtemp(prefix="pgqueue-test-")
    os.environ["PGQUEUE_HOME"] = home
    os.environ["PGQUEUE_DB_PREFIX"] = f"pgqueue_t{os.getpid()}_"
    # the suite builds the same labs hundreds of times: each build is kept as a template
    # database and copied afterwards (labs.TEMPLATES_ENV), which the lessons' kernels inherit
    os.environ["PGQUEUE_TEMPLATES"] = "1"
    # bench and lesson 14 measure on this server, not on fresh ones, and the lesson on small queues
    os.environ["PGQUEUE_BENCH_FRESH"] = "0"
    os.environ["PGQUEUE_BENCH_LESSON_JOBS"] = "200"
    config.stash[_HOME] = home
    # one initdb per run (in xdist's controller, whose workers inherit it): each fresh server of
    # the suite copies that data folder (0.1 s) instead of running initdb (1.2-1.5 s)
    if embedded.TEMPLATE_ENV not in os.environ:
        template = tempfile.mkdtemp(prefix="pgqueue-data-template-")
        os.chmod(template, 0o711)  # as root, the server's own user makes its data folder there
        os.environ[embedded.TEMPLATE_ENV] = template
        config.stash[_TEMPLATE] = template
    if config.getoption("durations_record") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder())


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_HOME, None)
    if home is None:
        return
    if os.environ.get("PGQUEUE_DSN"):
        _drop_test_databases()
    embedded.stop()
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(config.stash.get(_TEMPLATE, ""), ignore_errors=True)


def _drop_test_databases() -> None:
    """Drop what this run created on a server that outlives it (PGQUEUE_DSN's)."""
    from pgqueue.queues import labs

    with contextlib.suppress(Exception):
        labs.drop_every(labs.prefix())


_HOME, _TEMPLATE = pytest.StashKey[str](), pytest.StashKey[str]()

# Files run longest first, so that in a parallel run the minutes-long ones start at once and the
# short ones fill in around them; the other way round, the sandbox began last and ran alone. Each
# unit's seconds come from tests/durations.json, written by `pytest --durations-record` (the
# units that ran replace their entries); a unit it lacks is guessed from its marks.
DURATIONS = Path(__file__).parent / "tests" / "durations.json"
_GUESS = {"sandbox": 600.0, "chaos": 300.0, "slow": 30.0}
# Tests that xdist hands out one by one, not kept on their file's process: each solution runs in
# a child process of its own, and one after another they took minutes at the end of a run; each
# corpus answer is judged on a scratch lab of its own, and the ~400 of them, kept on one process,
# took as long as the rest of the suite on the four others (1,232 s alone, measured)
SPREAD = (
    "tests/test_notebooks.py::test_exercise_solution_runs[",
    "tests/check/test_corpora.py::test_a_wrong_answer_is_refused_saying_what_is_wrong[",
    "tests/check/test_corpora.py::test_a_right_answer_in_another_style_holds[",
)


def unit(nodeid: str) -> str:
    """What one xdist process runs as a whole: the test's file, or the test itself if SPREAD."""
    return nodeid if nodeid.startswith(SPREAD) else nodeid.split("::")[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--durations-record",
        action="store_true",
        help="write the seconds each test file (or spread test) took to tests/durations.json",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    recorded = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    seconds: dict[str, float] = {}
    for item in items:
        guess = max((_GUESS.get(mark.name, 0.0) for mark in item.iter_markers()), default=0.0)
        seconds[unit(item.nodeid)] = max(seconds.get(unit(item.nodeid), 0.0), guess)
    seconds.update({name: took for name, took in recorded.items() if name in seconds})
    # whole units move (their tests keep their order); sorted() is stable
    items[:] = sorted(items, key=lambda item: -seconds[unit(item.nodeid)])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadfile, but each SPREAD test a unit of its own."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid)

    return Scheduling(config, log)


class _Recorder:
    """Adds up each unit's seconds (in xdist's controller: every process's reports) and writes them."""

    def __init__(self) -> None:
        self.took: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.took[unit(report.nodeid)] = self.took.get(unit(report.nodeid), 0.0) + report.duration

    def pytest_sessionfinish(self) -> None:
        merged = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
        merged.update({name: round(took, 1) for name, took in self.took.items()})
        longest_first = dict(sorted(merged.items(), key=lambda pair: (-pair[1], pair[0])))
        DURATIONS.write_text(json.dumps(longest_first, indent=1) + "\n")
