"""The map of the kit is checked: every name a lesson gives is real, and the notebook uses it."""

import ast
import importlib
import importlib.util
import json
import re

import pytest

from pgqueue import check, curriculum
from pgqueue.paths import NOTEBOOKS_DIR
from tests.conftest import REPO

# what any lesson may import without the map naming it: the kit's plumbing, not a lesson's subject
PLUMBING = {"pgqueue", "pgqueue.check", "pgqueue.queries", "pgqueue.wait", "pgqueue.paths"}
PLUMBING |= {"pgqueue.queues.labs", "pgqueue.ui.predictions"}
LESSONS = [lesson for lesson in curriculum.LESSONS if lesson.ready]


def _code(lesson: curriculum.Lesson) -> str:
    cells = json.loads((NOTEBOOKS_DIR / lesson.file).read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _imported(code: str) -> set[str]:
    """The pgqueue modules a notebook's code imports (`from pgqueue.x import y` names y if y is a module)."""
    found = set()
    for line in code.splitlines():
        if not line.lstrip().startswith(("from pgqueue", "import pgqueue")):
            continue
        for node in ast.walk(ast.parse(line.strip())):
            if isinstance(node, ast.ImportFrom):
                found.update(_module_of(node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return found


def _module_of(module: str, name: str) -> str:
    """`name` imported from `module`: a submodule's full name, or `module` for a function or class."""
    package = hasattr(importlib.import_module(module), "__path__")
    return f"{module}.{name}" if package and importlib.util.find_spec(f"{module}.{name}") else module


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.file[:2])
def test_every_sql_entry_names_files_that_exist(lesson):
    for entry in lesson.sql:
        assert sorted(REPO.glob(entry)), f"{lesson.file}: {entry!r} matches no file"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.file[:2])
def test_the_notebook_imports_exactly_the_modules_the_map_names(lesson):
    for module in lesson.modules:
        importlib.import_module(module)  # a name that is no module fails here
    imported = _imported(_code(lesson))
    assert set(lesson.modules) - imported == set(), f"{lesson.file}: named but not imported"
    assert imported - PLUMBING - set(lesson.modules) == set(), f"{lesson.file}: imported but not named"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.file[:2])
def test_the_notebook_calls_exactly_the_checkers_the_map_names(lesson):
    assert set(lesson.checkers) <= set(check.__all__), f"{lesson.file}: no such checker"
    called = set(re.findall(r"(?<![\w.])check\.(\w+)\(", _code(lesson)))
    assert called == set(lesson.checkers), lesson.file


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.file[:2])
def test_every_test_named_exists_and_exercises_the_lesson(lesson):
    own = {m.rsplit(".", 1)[-1] for m in lesson.modules} | set(lesson.checkers)
    for name in lesson.tests:
        path = REPO / name
        assert path.is_file(), f"{lesson.file}: no test file {name}"
        words = set(re.findall(r"\w+", path.read_text()))
        assert own & words, f"{lesson.file}: {name} mentions none of {sorted(own)}"


def test_every_lesson_says_how_many_minutes_it_takes():
    short = [lesson.file for lesson in curriculum.LESSONS if not 5 <= lesson.minutes <= 90]
    assert not short, f"lessons without a believable time (5 to 90 minutes): {short}"


def test_the_map_shows_the_minutes_and_the_parts():
    table = curriculum.kit_map()
    assert table["minutes"].tolist() == [lesson.minutes for lesson in curriculum.LESSONS]
    assert table.loc["00-start-here", "minutes"] == curriculum.LESSONS[0].minutes
    assert table.loc["12-build-the-hardened-queue", "checkers"].startswith("check.claim_jobs")
