"""Test-run settings shared by tests/ and the notebooks: a private embedded server, private names.

Set before anything runs, so the kernels that nbval starts inherit them: every lesson run by
pytest uses a throwaway embedded server (or PGQUEUE_DSN's server, with databases named
`pgqueue_t<pid>_...` that are dropped at the end), never the learner's own labs.
"""

import contextlib
import os
import shutil
import tempfile

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
# short ones fill in around them; the other way round, the sandbox began last and ran alone.
_FIRST = ("sandbox", "chaos", "slow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        marks = {mark.name for mark in item.iter_markers()}
        return next((at for at, name in enumerate(_FIRST) if name in marks), len(_FIRST))

    by_file: dict[str, int] = {}
    for item in items:
        by_file[item.path] = min(by_file.get(item.path, len(_FIRST)), rank(item))
    # whole files move (their tests keep their order); sorted() is stable
    items[:] = sorted(items, key=lambda item: by_file[item.path])
