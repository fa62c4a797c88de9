"""Named SQL read from files in sql/ (`-- name: NAME` headers), so that Python holds no SQL."""

import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from pgqueue import paths
from pgqueue.errors import PgQueueError

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class SqlText(str):
    """SQL text that a notebook displays as a highlighted block."""

    title: str = ""

    def __new__(cls, text: str, title: str = "") -> "SqlText":
        obj = super().__new__(cls, text)
        obj.title = title
        return obj

    def _repr_markdown_(self) -> str:
        heading = f"**{self.title}**\n\n" if self.title else ""
        return f"{heading}```sql\n{self.rstrip()}\n```"


class Queries(Mapping[str, SqlText]):
    """The queries of one file, by name, in file order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        text = path.read_text(encoding="utf-8")
        parts = _HEADER.split(text)
        # parts = [preamble, name1, body1, name2, body2, ...]
        self._queries: dict[str, SqlText] = {}
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in self._queries:
                raise PgQueueError(f"{path}: query name {name!r} appears twice")
            self._queries[name] = SqlText(body.strip() + "\n", f"{path.name}: {name}")

    def __getitem__(self, name: str) -> SqlText:
        try:
            return self._queries[name]
        except KeyError:
            known = ", ".join(self._queries)
            raise PgQueueError(f"no query named {name!r} in {self.path} (it has: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)


_loaded: dict[Path, tuple[int, Queries]] = {}
_loading = threading.Lock()


def load(relative_path: str) -> Queries:
    """The named queries of `sql/<relative_path>`, read again whenever the file changed.

    A learner may edit `sql/clients/*.sql` in JupyterLab: the next call runs the new text,
    without a kernel restart.
    """
    path = paths.sql_dir() / relative_path
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise PgQueueError(f"no SQL file {relative_path!r} under {paths.sql_dir()}") from None
    with _loading:
        known = _loaded.get(path)
        if known is None or known[0] != stamp:
            known = _loaded[path] = (stamp, Queries(path))
        return known[1]
