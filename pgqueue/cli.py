"""The command line: `python -m pgqueue` (or `pgqueue`) VERB ..., each verb with its own --help."""

import argparse
import dataclasses
import os
import signal
import sys

from pgqueue import children, embedded, fleet, heartbeats, labs, options, schema, server
from pgqueue.errors import PgQueueError
from pgqueue.events import EventLog
from pgqueue.heartbeats import Identity
from pgqueue.paths import NOTEBOOKS_DIR

POCS = list(labs.DESIGNS)


def _sigterm_interrupts() -> None:
    """Treat SIGTERM like Ctrl-C, so `finally` blocks and context managers clean up."""

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)


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
    proc = children.spawn(argv, env=jupyter_env(os.environ))
    _sigterm_interrupts()
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("\npgqueue: stopping JupyterLab and its kernels ...", file=sys.stderr, flush=True)
        children.stop(proc, timeout=20)
        print("pgqueue: stopped; `python -m pgqueue db status` shows what still runs", file=sys.stderr)
        return 0


def setup(args: argparse.Namespace) -> int:
    """Rebuild a lab from sql/ (up to a step), with the example data if asked."""
    labs.reset(args.poc, args.upto, examples=args.examples)
    with labs.connect(args.poc) as conn:
        done = list(schema.applied(conn))
    print(f"lab {args.poc} (database {labs.database(args.poc)}) rebuilt: {', '.join(done) or 'no steps'}")
    return 0


def worker(args: argparse.Namespace) -> int:
    """Run one worker in the foreground, one printed line per event, until killed or Ctrl-C."""
    module = fleet.worker_module(args.poc)
    opts = options.chosen(module.Options, args, _option_names())
    who = Identity.new(args.process, args.version, args.uuid)
    run = module.Worker(who, opts, EventLog(echo=True))

    def stop(signum, frame):
        run.stop.set()  # finish the current step, then leave

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    run.run()
    return 0


def submit(args: argparse.Namespace) -> int:
    """Create work for a pipeline, as an outside caller would."""
    module = fleet.worker_module(args.poc)
    for _ in range(args.count):
        job = module.submit(args.pipe)
        print(f"job {job} created for pipeline {args.pipe}")
    return 0


def status(args: argparse.Namespace) -> int:
    """Print the workers (heartbeat age, alive / stale / killed) and job counts of labs."""
    pocs = [args.poc] if args.poc else [p for p in fleet.WORKER_MODULES if labs.is_set_up(p)]
    if not pocs:
        print("no lab has been set up yet: python -m pgqueue setup --poc NAME --examples")
    for poc in pocs:
        print(f"== lab {poc} (database {labs.database(poc)})")
        if not labs.is_set_up(poc):
            print(f"   not set up yet: python -m pgqueue setup --poc {poc} --examples")
            continue
        counts = fleet.worker_module(poc).job_counts()
        print("jobs:    " + ", ".join(f"{n} {state}" for state, n in counts.items()))
        workers = heartbeats.states(poc)
        print(f"workers: {len(workers)} registered")
        if len(workers):
            print(workers.to_string(index=False))
    return 0


def kill(args: argparse.Namespace) -> int:
    """Set a worker's kill switch: it exits the next time it asks for work."""
    pocs = [args.poc] if args.poc else [p for p in fleet.WORKER_MODULES if labs.is_set_up(p)]
    for poc in pocs:
        try:
            heartbeats.set_kill_switch(poc, args.uuid)
        except PgQueueError:
            continue
        print(f"kill switch set for {args.uuid} in lab {poc}: it exits at its next heartbeat")
        return 0
    raise PgQueueError(f"no worker {args.uuid!r} has sent a heartbeat in lab(s) {', '.join(pocs)}")


def demo_run(args: argparse.Namespace) -> int:
    """Run the seed's full single-call example with real worker processes; report; 0 if it proved out."""
    from pgqueue import demo

    _sigterm_interrupts()
    report = demo.run(work=tuple(args.work), poll=args.poll, timeout=args.timeout)
    print(report.text())
    if not report.all_finished:
        unfinished = report.pipe_jobs.loc[~report.pipe_jobs["pipe_job_finished"], "pipe job"].tolist()
        raise PgQueueError(f"pipe jobs {unfinished} did not finish within {args.timeout:g} s")
    if not report.gates_ok:
        raise PgQueueError("an order gate was violated (see 'order gates' above)")
    print("demo: every pipe job finished and every order gate held")
    return 0


def _option_names() -> set[str]:
    return {
        f.name for kind in fleet.WORKER_MODULES for f in dataclasses.fields(fleet.worker_module(kind).Options)
    }


def jupyter_env(environ) -> dict[str, str]:
    """JupyterLab's environment: an empty JUPYTER_TOKEN is dropped, so it makes a random token.

    (JupyterLab reads an empty JUPYTER_TOKEN as "no token at all": anyone could connect.)
    """
    env = dict(environ)
    if env.get("JUPYTER_TOKEN") == "":
        del env["JUPYTER_TOKEN"]
        print("pgqueue: JUPYTER_TOKEN is empty: JupyterLab makes a random token (in the URL below)")
    return env


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

    setup_parser = verbs.add_parser(
        "setup",
        help="rebuild a lab database from sql/",
        description="Rebuild a lab database from sql/: drops it (after asking its workers to stop), "
        "then runs its numbered steps.",
    )
    setup_parser.add_argument("--poc", choices=POCS, required=True, help="which lab")
    setup_parser.add_argument("--upto", help="stop after this step (number or name)")
    setup_parser.add_argument("--examples", action="store_true", help="load the example data too")
    setup_parser.set_defaults(func=setup)

    worker_parser = verbs.add_parser(
        "worker",
        help="run one worker in the foreground",
        description="Run one worker of process PROCESS VERSION in the foreground, printing one line "
        "per event, until its kill switch is set (or Ctrl-C).",
    )
    worker_parser.add_argument(
        "--poc", choices=list(fleet.WORKER_MODULES), required=True, help="which queue design"
    )
    worker_parser.add_argument("process", help="process name, e.g. first_process")
    worker_parser.add_argument("version", help="process version, e.g. 1.0.0")
    worker_parser.add_argument("--uuid", help="12 hex characters (default: random)")
    options.add_union(worker_parser, {k: fleet.worker_module(k).Options for k in fleet.WORKER_MODULES})
    worker_parser.set_defaults(func=worker)

    submit_parser = verbs.add_parser(
        "submit",
        help="create work for a pipeline",
        description="Create work for a pipeline, as an outside caller would.",
    )
    submit_parser.add_argument("--poc", choices=list(fleet.WORKER_MODULES), required=True, help="which lab")
    submit_parser.add_argument("--pipe", type=int, required=True, help="pipeline id")
    submit_parser.add_argument("--count", type=int, default=1, help="how many requests (default 1)")
    submit_parser.set_defaults(func=submit)

    status_parser = verbs.add_parser(
        "status",
        help="workers and job counts of the labs",
        description="Print the workers and job counts of the labs.",
    )
    status_parser.add_argument("--poc", choices=list(fleet.WORKER_MODULES), help="one lab only")
    status_parser.set_defaults(func=status)

    kill_parser = verbs.add_parser(
        "kill",
        help="set a worker's kill switch",
        description="Set a worker's kill switch: it exits at its next heartbeat.",
    )
    kill_parser.add_argument("uuid", help="the worker's uuid (see `status`)")
    kill_parser.add_argument("--poc", choices=list(fleet.WORKER_MODULES), help="its lab (default: search)")
    kill_parser.set_defaults(func=kill)

    demo_parser = verbs.add_parser(
        "demo",
        help="run the single-call example with real worker processes",
        description="Build a fresh single-call lab with the example data, start the original "
        "launcher's 12 worker processes and the README flow's, show progress, then report each "
        "pipe job and prove the order gate. Exits 0 when every pipe job finished in time.",
    )
    demo_parser.add_argument(
        "--work",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=(0.0, 0.3),
        help="simulated work per job, seconds (default: 0 0.3; a class: 1 5)",
    )
    demo_parser.add_argument(
        "--poll", type=float, default=0.2, help="seconds a worker waits after 'No job found' (default 0.2)"
    )
    demo_parser.add_argument("--timeout", type=float, default=60.0, help="give up after (default 60 s)")
    demo_parser.set_defaults(func=demo_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; errors the learner can fix print one line and exit 1."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PgQueueError as exc:
        print(f"pgqueue: error: {exc}", file=sys.stderr)
        return 1
