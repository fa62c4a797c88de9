"""The map of the kit: each lesson with the SQL, modules, checkers and tests it stands on (checked)."""

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from pgqueue.paths import NOTEBOOKS_DIR
from pgqueue.queues import designs


@dataclass(frozen=True)
class Lesson:
    """One numbered notebook and what it stands on (an entry of curriculum.toml), each part a real name
    that tests/test_curriculum checks.

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


def _lessons() -> list[Lesson]:
    """The lessons of curriculum.toml, in its order: a table an instructor edits, kept out of the code."""
    with (Path(__file__).parent / "curriculum.toml").open("rb") as file:
        entries = tomllib.load(file)["lesson"]
    return [Lesson(**{key: tuple(v) if isinstance(v, list) else v for key, v in e.items()}) for e in entries]


LESSONS = _lessons()


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
