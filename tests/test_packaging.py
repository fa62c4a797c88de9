"""What the kit declares about itself: one install list in two places, a licence, the README's promises."""

import re

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and newer")


def _requirements() -> dict[str, str]:
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            found[req.name.lower()] = str(req)
    return found


def test_pyproject_declares_exactly_what_requirements_txt_installs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    as_declared = {Requirement(r).name.lower(): str(Requirement(r)) for r in declared}
    assert as_declared == _requirements()
    assert set(project["optional-dependencies"]) == {"lab", "test"}


def test_every_package_the_kit_imports_at_module_top_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    everything = " ".join([*project["dependencies"], *project["optional-dependencies"]["lab"]])
    for module in (REPO / "pgqueue").glob("*.py"):
        tops = re.findall(
            r"^(?:import|from) (ipywidgets|plotly|pandas|sqlalchemy|psycopg|psutil)\b",
            module.read_text(),
            re.M,
        )
        for name in tops:
            assert name in everything, f"{module.name} imports {name}, which pyproject.toml does not declare"


def test_the_kit_has_a_licence_and_the_readme_names_it():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    readme = (REPO / "README.md").read_text()
    assert "MIT" in readme and "LICENSE" in readme


@pytest.mark.parametrize(
    "promise",
    [
        "POSIX",  # fcntl locks and parent-death signals: Linux and macOS, WSL2 on Windows
        "WSL2",
        "finishes the job it holds",  # how a worker stops
        "second Ctrl-C",
        "reconnects",  # what a worker does in an outage
        "--give-up",
    ],
)
def test_the_readme_says_how_workers_stop_and_where_the_kit_runs(promise):
    assert promise in (REPO / "README.md").read_text()
