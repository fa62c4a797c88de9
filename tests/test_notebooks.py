"""Lessons are committed clean, listed on the map, and their exercise solutions run."""

import json
import re
import subprocess
import sys

import nbformat
import pytest

from pgqueue import curriculum
from pgqueue.paths import NOTEBOOKS_DIR
from tests.conftest import REPO

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SOLUTIONS = sorted((NOTEBOOKS_DIR / "solutions").glob("*.py"))


def _committed_text(path) -> str:
    """The notebook as git would commit it (the index), or the file outside a checkout."""
    rel = path.relative_to(REPO).as_posix()
    shown = subprocess.run(["git", "show", f":{rel}"], cwd=REPO, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else path.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(_committed_text(path))
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them (nbstripout) before commit"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_nbformat_with_an_id_per_cell(path):
    text = _committed_text(path)
    nbformat.validate(nbformat.reads(text, as_version=nbformat.NO_CONVERT))  # raises on a schema error
    # read as plain JSON: nbformat quietly adds the ids that are missing
    missing = [i for i, cell in enumerate(json.loads(text)["cells"]) if "id" not in cell]
    assert not missing, f"{path.name}: cells {missing} have no id (nbformat 4.5 requires one)"


def test_every_notebook_is_on_the_map():
    mapped = {lesson.file for lesson in curriculum.LESSONS}
    assert {p.name for p in NOTEBOOKS} <= mapped


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_exercise_solution_runs(path):
    result = subprocess.run(
        # a loaded solution runs as one cell: it has the cell timeout nbval gives (pyproject.toml);
        # lesson 14's starts a server and worker processes, which a loaded CI needed more than 60 s for
        [sys.executable, path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_load_cell_names_an_existing_solution(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if line.startswith("# %load "):
                assert (NOTEBOOKS_DIR / line.removeprefix("# %load ").strip()).is_file(), line


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_loaded_solution_defines_the_name_the_exercise_cell_gives_the_learner(path):
    # `%load` puts the solution in place of the learner's work: the cells after it read the name
    # the exercise cell (the code cell just before) gave the learner, e.g. my_claim
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for i, cell in enumerate(cells):
        load = next((line for line in cell.splitlines() if line.startswith("# %load ")), None)
        if load is None or i == 0:
            continue
        names = [n for n in re.findall(r"^(my_\w+) = ", cells[i - 1], re.MULTILINE) if n != "my_guess"]
        solution = (NOTEBOOKS_DIR / load.removeprefix("# %load ").strip()).read_text()
        for name in names:
            assert re.search(rf"^{name} = ", solution, re.MULTILINE), (load, name)


def test_the_readme_map_says_which_lessons_are_ready():
    readme = (REPO / "README.md").read_text()
    for lesson in curriculum.LESSONS:
        name = lesson.file.removesuffix(".ipynb")
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"README has no row for {name}"
        assert row.rstrip().endswith("| ready |" if lesson.ready else "| planned |"), row
