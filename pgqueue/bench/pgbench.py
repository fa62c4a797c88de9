"""pgbench on the bench's server: a single-row `UPDATE ... RETURNING` and its commit, per client count."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pgqueue import server
from pgqueue.bench import databases
from pgqueue.bench.report import Pgbench
from pgqueue.errors import PgQueueError
from pgqueue.queues import labs
from pgqueue.server import embedded


def program() -> Path | None:
    """The pgbench beside the server's programs (the wheel's, or the system's for PGQUEUE_DSN)."""
    candidates = []
    if not os.environ.get(server.DSN_ENV, "").strip():
        candidates.append(embedded.bin_dir() / "pgbench")
    found = shutil.which("pgbench")
    candidates += [Path(found)] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    return next((c for c in candidates if c.is_file()), None)


def measure(clients: tuple[int, ...], seconds: int) -> list[Pgbench]:
    """pgbench on a database of its own: `clients` connections, `seconds` each, prepared statements."""
    found = program()
    if found is None:
        raise PgQueueError("pgbench was not found (the embedded wheel's, on PATH, or /usr/lib/postgresql)")
    database = databases.fresh_database(labs.prefix() + "pgbench")
    with server.connect(database) as conn:
        conn.execute(databases.q()["create_pgbench_rows"])
    results = []
    with tempfile.TemporaryDirectory(prefix="pgqueue-bench-") as folder:
        script = Path(folder) / "claim.sql"
        script.write_text(databases.q()["pgbench_script"] + "\n")
        for n in clients:
            argv = [str(found), "-n", "-M", "prepared", "-f", str(script), "-c", str(n), "-j", str(n),
                    "-T", str(seconds), server.resolve().uri_for(database)]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
            tps = [line for line in done.stdout.splitlines() if line.startswith("tps = ")]
            if done.returncode != 0 or not tps:
                said = (done.stderr.strip().splitlines() or ["(nothing)"])[-1]
                raise PgQueueError(f"pgbench with {n} client(s) failed ({done.returncode}): {said}")
            results.append(Pgbench(n, seconds, round(float(tps[0].split()[2]), 1)))
    return results
