"""The command line: `python -m pgqueue` (or `pgqueue`) VERB ..., each verb with its own --help."""

import argparse
import os
import signal
import sys

from pgqueue import children, embedded, labs, server
from pgqueue.errors import PgQueueError
from pgqueue.paths import NOTEBOOKS_DIR

POCS = list(labs.DESIGNS)


def _embedded_in_use() -> bool:
    return not os.environ.get(server.DSN_ENV, "").strip()


def db_start(args: argparse.Namespace) -> int:
    """Start the server (embedded) or check it (PGQUEUE_DSN) and keep it running."""
    if _embedded_in_use():
        embedded.ensure_running(pin=True)
        print(f"{server.resolve().describe()} is running; `python -m pgqueue db stop` stops it")
    else:
        print(f"{server.resolve().describe()} answers; the kit does not start or stop it")
    return 0


def db_stop(args: argparse.Namespace) -> int:
    """Stop the embedded server of this home (never a server named by PGQUEUE_DSN)."""
    state = embedded.status()
    stopped = embedded.stop()
    if stopped:
        users = ", ".join(str(pid) for pid, _ in state.users)
        extra = f" (it was still used by pid {users})" if users else ""
        print(f"stopped the embedded PostgreSQL in {state.data}{extra}")
    else:
        print(f"the embedded PostgreSQL in {state.data} was not running")
    if not _embedded_in_use():
        print(f"{server.DSN_ENV} is set: the kit never stops that server")
    return 0


def db_status(args: argparse.Namespace) -> int:
    """Say which server the kit uses, its version, where its data is, and whether it runs."""
    if not _embedded_in_use():
        srv = server.resolve()
        print(f"server:   {srv.describe()}")
        print(f"version:  PostgreSQL {server.version()} (reachable)")
    state = embedded.status()
    label = "server:  " if _embedded_in_use() else "embedded:"
    running = f"running, pid {state.pid}" if state.running else "not running"
    print(f"{label} the kit's embedded PostgreSQL {state.binary_version} ({running})")
    print(f"data:     {state.data}" + ("" if state.data_version else " (not created yet)"))
    if state.running:
        print(f"url:      {server.mask(state.uri)}")
        holders = [f"{pid} ({cmd[:60]})" for pid, cmd in state.users]
        print(f"users:    {'; '.join(holders) if holders else 'none'}")
        if state.pinned:
            print("pinned:   yes (by `db start` or `db url`): runs until `db stop`")
        else:
            print(f"pinned:   no: stops {embedded.GRACE_SECONDS:g} s after its last user exits")
        watchdog = f"pid {state.watchdog_pid}" if state.watchdog_pid else "NOT RUNNING"
        print(f"watchdog: {watchdog}")
    if args.poc and (state.running or not _embedded_in_use()):
        present = "exists" if labs.exists(args.poc) else "not created yet"
        print(f"lab:      {args.poc} -> database {labs.database(args.poc)} ({present})")
    return 0


def db_url(args: argparse.Namespace) -> int:
    """Print the URI of the server, or of one lab database (created if needed)."""
    if _embedded_in_use():
        embedded.ensure_running(pin=True)
    print(labs.url(args.poc) if args.poc else server.resolve().uri)
    return 0


def lab(args: argparse.Namespace) -> int:
    """Run JupyterLab on notebooks/ with the database ready; Ctrl-C stops it and its kernels."""
    print(f"pgqueue: database ready: {server.resolve().describe()}", flush=True)
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={NOTEBOOKS_DIR}"]
    if args.port:
        argv.append(f"--port={args.port}")
    if args.no_browser:
        argv.append("--no-browser")
    if os.geteuid() == 0:
        argv.append("--allow-root")  # JupyterLab refuses root otherwise (containers, CI)
    argv += args.jupyter_args
    proc = children.spawn(argv)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("\npgqueue: stopping JupyterLab and its kernels ...", file=sys.stderr, flush=True)
        children.stop(proc, timeout=20)
        print("pgqueue: stopped; `python -m pgqueue db status` shows what still runs", file=sys.stderr)
        return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="pgqueue",
        description="Learn to build a job queue inside PostgreSQL: lessons, labs and workers.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    db = verbs.add_parser(
        "db",
        help="start, stop, locate the server and the lab databases",
        description="Manage and locate the server and the lab databases.",
    )
    db_verbs = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, func, text in [
        ("start", db_start, "start the embedded server and keep it running until `db stop`"),
        ("stop", db_stop, "stop the embedded server (never one named by PGQUEUE_DSN)"),
        ("status", db_status, "which server, its version, data folder, whether it runs"),
        ("url", db_url, "print a libpq URI of the server or of a lab database"),
    ]:
        sub = db_verbs.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        if name in ("status", "url"):
            sub.add_argument("--poc", choices=POCS, help="a lab database")
        sub.set_defaults(func=func)

    lab_parser = verbs.add_parser(
        "lab",
        help="open JupyterLab on the lessons with the database ready",
        description="Open JupyterLab on notebooks/ with the database ready. Ctrl-C stops "
        "JupyterLab and its kernels; the embedded server stops a moment later unless pinned. "
        "Extra arguments after -- go to JupyterLab.",
    )
    lab_parser.add_argument("--port", type=int, help="port for JupyterLab (default: 8888 or next)")
    lab_parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab_parser.add_argument("jupyter_args", nargs="*", help=argparse.SUPPRESS)
    lab_parser.set_defaults(func=lab)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; errors the learner can fix print one line and exit 1."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PgQueueError as exc:
        print(f"pgqueue: error: {exc}", file=sys.stderr)
        return 1
