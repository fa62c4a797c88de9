"""What the kit declares about itself: one install list in two places, a licence, the README's promises."""

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and newer")


def _requirements(name: str) -> dict[str, str]:
    found = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            found[req.name.lower()] = str(req)
    return found


def test_pyproject_declares_exactly_what_the_requirements_files_install():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == {"lab", "test", "dev"}

    def named(requirements: list[str]) -> dict[str, str]:
        return {Requirement(r).name.lower(): str(Requirement(r)) for r in requirements}

    assert named([*project["dependencies"], *extras["lab"], *extras["test"]]) == _requirements(
        "requirements.txt"
    )
    assert named(extras["dev"]) == _requirements("requirements-dev.txt")
    includes = [
        line for line in (REPO / "requirements-dev.txt").read_text().splitlines() if line.startswith("-r")
    ]
    assert includes == ["-r requirements.txt", "-r requirements-bench.txt"]


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


BUILD_LEFTOVERS = (".git", ".venv*", "build", "*.egg-info", ".pgqueue", "__pycache__", "test-artifacts")
WHEEL_CHECK = """
import importlib, pathlib, pkgutil, sys
import pgqueue
from pgqueue import paths, queries
top = pathlib.Path(sys.argv[1]).resolve()
assert pathlib.Path(pgqueue.__file__).resolve().is_relative_to(top), pgqueue.__file__
names = [m.name for m in pkgutil.walk_packages(pgqueue.__path__, "pgqueue.") if ".sql" not in m.name]
for name in names:
    module = importlib.import_module(name)
    assert pathlib.Path(module.__file__).resolve().is_relative_to(top), (name, module.__file__)
assert paths.sql_dir().resolve().is_relative_to(top), paths.sql_dir()
assert "create_database" in queries.load("kit/queries.sql")
print(len(names))
"""


@pytest.mark.slow
def test_a_built_wheel_holds_every_module_and_sql_file_and_imports_from_itself(tmp_path):
    # built from a copy of the sources: setuptools reuses a build/ folder it finds, whose stale
    # copies would hide a package that pyproject.toml no longer names
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    dist = tmp_path / "dist"
    _python("-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source))
    (wheel,) = dist.glob("pgqueue-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        inside = set(archive.namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "pgqueue").rglob("*.py")}
    assert modules - inside == set(), "modules the wheel leaves out"
    sql_files = {"pgqueue/" + p.relative_to(REPO).as_posix() for p in (REPO / "sql").rglob("*.sql")}
    assert sql_files - inside == set(), "SQL files the wheel leaves out"
    # installed alone (its dependencies come from this environment), run outside the repository
    site = tmp_path / "site"
    _python("-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel))
    imported = _python(
        "-c", WHEEL_CHECK, str(site), cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}
    )
    assert int(imported) == len(modules) - 1  # every module but pgqueue/__init__.py itself


def _python(*args: str, **kwargs) -> str:
    """Run this interpreter with `args`; its output, or a failure showing its errors."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
