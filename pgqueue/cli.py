"""The command line: `python -m pgqueue` (or `pgqueue`) VERB ..., each verb with its own --help."""

import argparse
import dataclasses
import os
import signal
import sys
import warnings
from pathlib import Path

import psycopg

from pgqueue import bench, children, paths, server, values
from pgqueue.bench import inputs
from pgqueue.errors import PgQueueError
from pgqueue.paths import NOTEBOOKS_DIR
from pgqueue.queues import designs, heartbeats, labs, options, worker_base
from pgqueue.queues.events import EventLog
from pgqueue.queues.heartbeats import Identity
from pgqueue.server import embedded
from pgqueue.values import BadValue

USAGE = 2  # exit status of a mistake in the command (argparse's own)
PROBLEM = 1  # exit status of a problem the user can fix in the world
INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
STOPS_AFTER = "stops after finishing it (press Ctrl-C again to stop at once)"


def _sigterm_interrupts() -> None:
    """Treat SIGTERM like Ctrl-C, so `finally` blocks and context managers clean up."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


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
    """Print the URI of the server, or of one lab database; say what it pins and what is missing."""
    if _embedded_in_use():
        embedded.ensure_running(pin=True)
        print(
            "pgqueue: the embedded server is pinned: it runs until `python -m pgqueue db stop`",
            file=sys.stderr,
        )
    if not args.poc:
        print(server.resolve().uri)
        return 0
    print(labs.url(args.poc, create=False))
    if not labs.is_set_up(args.poc):
        print(
            f"pgqueue: lab {args.poc} is not set up yet (database {labs.database(args.poc)}): "
            f"python -m pgqueue setup --poc {args.poc} --examples",
            file=sys.stderr,
        )
    return 0


def lab(args: argparse.Namespace) -> int:
    """Open JupyterLab on notebooks/ with the database ready. Ctrl-C stops JupyterLab and its kernels;
    the embedded server stops a moment later unless pinned. Extra arguments after -- go to JupyterLab."""
    if not NOTEBOOKS_DIR.is_dir():
        raise PgQueueError(f"no lessons at {str(NOTEBOOKS_DIR)!r}: run the kit from its repository")
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
    # Ctrl-C stops the lab even where it was started with SIGINT ignored, as a shell script's
    # background job is: Python raises KeyboardInterrupt only if SIGINT was not ignored at start
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("\npgqueue: stopping JupyterLab and its kernels ...", file=sys.stderr, flush=True)
        children.stop(proc, timeout=20)
        print("pgqueue: stopped; `python -m pgqueue db status` shows what still runs", file=sys.stderr)
        return 0


def setup(args: argparse.Namespace) -> int:
    """Rebuild a lab database from sql/: drops it (its workers notice and stop), then runs its numbered
    steps. With --if-missing, a lab that is set up already is kept."""
    if args.upto is not None:
        _check_step(args.poc, args.upto)
    if labs.lab_busy(args.poc):
        print(f"pgqueue: another setup of lab {args.poc} is running; waiting for it", file=sys.stderr)
    done = labs.reset(
        args.poc, args.upto, examples=args.examples, fixes=args.fixes, keep_existing=args.if_missing
    )
    where = f"lab {args.poc} (database {done.database})"
    if not done.rebuilt:
        print(f"{where} is set up already: kept (setup without --if-missing rebuilds it)")
        return 0
    stopped = f"; stopped {done.workers_stopped} worker(s)" if done.workers_stopped else ""
    print(f"{where} rebuilt: {', '.join(done.steps) or 'no steps'}{stopped}")
    for note in getattr(designs.get(args.poc).worker(), "setup_notes", list)():
        print(f"pgqueue: {note}", file=sys.stderr)
    return 0


def _check_step(poc: str, which: str) -> None:
    try:
        labs.step(poc, which)
    except PgQueueError as exc:
        raise BadValue(str(exc)) from None


def worker(args: argparse.Namespace) -> int:
    """Run one worker of process PROCESS VERSION in the foreground, printing one line per event, until
    its kill switch is set. Ctrl-C (or SIGTERM) lets it finish and hand over the job it holds, then it
    exits 0; a second Ctrl-C stops it at once (exit 130). A lost database is retried with backoff for
    --give-up seconds, then it exits 1."""
    module = designs.get(args.poc).worker()
    opts = options.chosen(module.Options, args, _option_names())
    who = Identity.new(args.process, args.version, args.uuid)
    labs.require_set_up(args.poc, wait=server.wait_for_db())
    log = EventLog(echo=True, json_path=args.events_file)
    run = module.Worker(who, opts, log)
    signals = []

    def held() -> str:
        return f"job(s) {run.holding}" if run.holding else "no job"

    def stop(signum, frame):
        signals.append(signum)
        if len(signals) > 1:
            raise KeyboardInterrupt  # the second: at once, wherever the worker is
        name = signal.Signals(signum).name
        log.add(who.uuid, "stopping", f"{name}: holding {held()}; {STOPS_AFTER}")
        run.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        ending = run.run()
    except KeyboardInterrupt:
        log.add(
            who.uuid, "abandoned", f"stopped at once: abandoned {held()} (it stays assigned to {who.uuid})"
        )
        return INTERRUPTED
    if ending == worker_base.GAVE_UP:
        raise PgQueueError(f"worker {who} gave up: no database for more than {opts.give_up:g} s")
    return 0 if ending in worker_base.CLEAN else INTERRUPTED


def submit(args: argparse.Namespace) -> int:
    """Create work for a pipeline, as an outside caller would."""
    design = designs.get(args.poc)
    if args.priority is not None and not design.offers("priority"):
        raise BadValue(f"--priority does not apply to lab {args.poc!r} (it has no priorities)")
    extra = {"priority": args.priority} if args.priority is not None else {}
    module = design.worker()
    # Ctrl-C ends the loop between two submissions, so the count printed is exact (a second
    # Ctrl-C interrupts at once, for a server that does not answer)
    interrupted: list[int] = []

    def stop(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)

    signal.signal(signal.SIGINT, stop)
    made = 0
    while made < args.count and not interrupted:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            job = module.submit(args.pipe, args.request, **extra)
        made += 1
        print(f"{design.submits} {job} created for pipeline {args.pipe}")
        for warning in said:
            print(f"pgqueue: warning: {warning.message}", file=sys.stderr)
    if interrupted:
        print(f"pgqueue: interrupted: submitted {made} of {args.count}", file=sys.stderr)
        return INTERRUPTED
    return 0


def _labs_of(args: argparse.Namespace) -> list[str]:
    """The lab named by --poc, else every lab set up (with --demo, the demo's own labs)."""
    if args.demo:
        from pgqueue.lab import demo

        os.environ[labs.PREFIX_ENV] = labs.prefix() + demo.LAB_PREFIX
    return [args.poc] if args.poc else [p for p in designs.names() if labs.is_set_up(p)]


def status(args: argparse.Namespace) -> int:
    """Print the workers and job counts of the labs."""
    pocs = _labs_of(args)
    if not pocs:
        print("no lab has been set up yet: python -m pgqueue setup --poc NAME --examples")
    for poc in pocs:
        print(f"== lab {poc} (database {labs.database(poc)})")
        if not labs.is_set_up(poc):
            print(f"   not set up yet: python -m pgqueue setup --poc {poc} --examples")
            continue
        try:
            counts = designs.get(poc).worker().job_counts()
        except psycopg.errors.UndefinedTable as exc:
            # workers can register (step 02), but the queue's own tables are not built yet: a
            # lesson built the lab only that far
            missing = exc.diag.message_primary or str(exc)
            print(f"   built only in part ({missing}): python -m pgqueue setup --poc {poc} --examples")
            continue
        print("jobs:    " + ", ".join(f"{n} {state}" for state, n in counts.items()))
        workers = heartbeats.states(poc)
        print(f"workers: {len(workers)} registered")
        if len(workers):
            print(workers.to_string(index=False))
    return 0


def kill(args: argparse.Namespace) -> int:
    """Set a worker's kill switch: it exits at its next heartbeat."""
    pocs = _labs_of(args)
    if not pocs:
        raise PgQueueError("no lab has been set up yet, so no worker has a kill switch")
    for poc in pocs:
        labs.require_set_up(poc)
        try:
            heartbeats.set_kill_switch(poc, args.uuid)
        except PgQueueError:
            continue
        print(f"kill switch set for {args.uuid} in lab {poc}: it exits at its next heartbeat")
        return 0
    raise PgQueueError(f"no worker {args.uuid!r} has sent a heartbeat in lab(s) {', '.join(pocs)}")


def demo_run(args: argparse.Namespace) -> int:
    """Build a fresh lab of its own (single-call unless --poc; the lessons' labs are left alone) with the
    example data, start the original launcher's 12 worker processes and the README flow's, show
    progress, then report each pipe job and prove the order gate (on hardened, also that every job
    succeeded exactly once). Exits 0 when every pipe job finished in time. A single-call lab gets
    lesson 07's fix of the order gate, unless --original-gate."""
    from pgqueue.lab import demo

    # every value checked (and made a number) before the lab is touched
    design = demo.check(args.poc, args.original_gate)
    checked = design.worker().Options(poll=args.poll, work=tuple(args.work))
    timeout = values.seconds(args.timeout, "timeout")
    _sigterm_interrupts()
    report = demo.run(
        work=checked.work, poll=checked.poll, timeout=timeout, original_gate=args.original_gate, poc=args.poc
    )
    print(report.text())
    stalled = [line.split(":")[0] for line in report.gates if "STALLED" in line]
    if stalled:
        raise PgQueueError(
            f"{', '.join(stalled)} stalled at an order gate (the race of lesson 07); "
            "without --original-gate the demo installs lesson 07's fix"
        )
    if not report.all_finished:
        unfinished = report.pipe_jobs.loc[~report.pipe_jobs["pipe_job_finished"], "pipe job"].tolist()
        raise PgQueueError(f"pipe jobs {unfinished} did not finish within {timeout:g} s")
    if not report.gates_ok:
        raise PgQueueError("an order gate was violated (see 'order gates' above)")
    if not report.attempts_ok:
        raise PgQueueError(f"not every job succeeded exactly once: {report.attempts}")
    print("demo: every pipe job finished and every order gate held")
    return 0


def _option_names() -> set[str]:
    return {f.name for d in designs.REGISTRY.values() for f in dataclasses.fields(d.worker().Options)}


def _typed(check, *args):
    """An argparse type from a check: a refused value becomes a usage error (exit 2)."""

    def convert(text: str):
        try:
            return check(text, *args)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


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
    parser.set_defaults(parser=parser)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    pocs = designs.names()

    def verb(name: str, help_text: str, func, description=None, under=verbs) -> argparse.ArgumentParser:
        one = under.add_parser(name, help=help_text, description=description or func.__doc__)
        one.set_defaults(func=func, parser=one)  # a mistake prints this verb's usage line
        return one

    def poc(one: argparse.ArgumentParser, help_text: str, **how) -> None:
        one.add_argument("--poc", choices=pocs, help=help_text, **how)

    db = verbs.add_parser(
        "db",
        help="start, stop, locate the server and the lab databases",
        description="Manage and locate the server and the lab databases.",
    )
    db.set_defaults(parser=db)
    db_verbs = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, func, text in [
        ("start", db_start, "start the embedded server and keep it running until `db stop`"),
        ("stop", db_stop, "stop the embedded server (never one named by PGQUEUE_DSN)"),
        ("status", db_status, "which server, its version, data folder, whether it runs"),
        ("url", db_url, "print a libpq URI of the server or of a lab database (pins the embedded server)"),
    ]:
        sub = verb(name, text, func, text[0].upper() + text[1:] + ".", under=db_verbs)
        if name in ("status", "url"):
            poc(sub, "a lab database")

    sub = verb("lab", "open JupyterLab on the lessons with the database ready", lab)
    sub.add_argument(
        "--port", type=_typed(values.port), help="port for JupyterLab, 1-65535 (default: 8888 or next)"
    )
    sub.add_argument("--no-browser", action="store_true", help="do not open a browser")
    sub.add_argument("jupyter_args", nargs="*", help=argparse.SUPPRESS)

    sub = verb("setup", "rebuild a lab database from sql/", setup)
    poc(sub, "which lab", required=True)
    sub.add_argument("--upto", help="stop after this step (number or name)")
    sub.add_argument("--examples", action="store_true", help="load the example data too")
    sub.add_argument(
        "--fixes", action="store_true", help="install the fixes the lessons teach (lesson 07's order gate)"
    )
    sub.add_argument(
        "--if-missing", action="store_true", help="keep the lab if it is set up already (the sandbox's setup)"
    )

    sub = verb("worker", "run one worker in the foreground", worker)
    poc(sub, "which queue design", required=True)
    sub.add_argument("process", help="process name, e.g. first_process")
    sub.add_argument("version", help="process version, e.g. 1.0.0")
    sub.add_argument("--uuid", type=_typed(values.uuid), help="12 lowercase hex characters (default: random)")
    sub.add_argument("--events-file", type=Path, help=argparse.SUPPRESS)  # JSON lines, for the fleet
    options.add_union(sub, {d.name: d.worker().Options for d in designs.REGISTRY.values()})

    sub = verb("submit", "create work for a pipeline", submit)
    poc(sub, "which lab", required=True)
    sub.add_argument("--pipe", type=_typed(values.whole, "pipeline id"), required=True, help="pipeline id")
    sub.add_argument(
        "--count",
        type=_typed(values.whole, "count", 1, 1_000_000),
        default=1,
        help="how many requests (default 1)",
    )
    sub.add_argument(
        "--request",
        type=_typed(values.whole, "request id"),
        help="add to this request (default: a new one each)",
    )
    sub.add_argument(
        "--priority", type=_typed(values.priority), help="lower runs first (single-call; default 100)"
    )

    sub = verb("status", "workers and job counts of the labs", status)
    poc(sub, "one lab only")
    sub.add_argument("--demo", action="store_true", help="the demo's labs, not the lessons'")

    sub = verb("kill", "set a worker's kill switch", kill)
    sub.add_argument("uuid", type=_typed(values.uuid), help="the worker's uuid (see `status`)")
    poc(sub, "its lab (default: search)")
    sub.add_argument("--demo", action="store_true", help="a worker of the demo's labs")

    sub = verb("demo", "run the example pipelines with real worker processes", demo_run)
    poc(
        sub,
        "which lab: single-call (default) or hardened; notify-listen has no pipelines of orders",
        default="single-call",
    )
    sub.add_argument(
        "--original-gate",
        action="store_true",
        help="keep the original's order gate, which two pipe jobs finishing together can stall (lesson 07)",
    )
    sub.add_argument(
        "--work",
        nargs=2,
        metavar=("MIN", "MAX"),
        default=(0.0, 0.3),
        help="simulated work per job, seconds (default: 0 0.3; a class: 1 5)",
    )
    sub.add_argument("--poll", default=0.2, help="seconds a worker waits after 'No job found' (default 0.2)")
    sub.add_argument(
        "--timeout", type=_typed(values.seconds, "timeout"), default=60.0, help="give up after (default 60 s)"
    )

    bench_parser = verb(
        "bench",
        "measure what each design costs, beside the floor and the production queues",
        bench_run,
        "Measure, on a server of its own (a fresh embedded one, or PGQUEUE_DSN's with databases "
        "of its own): what one claim costs in each design as the queue grows (to 1,000,000 "
        "waiting jobs); jobs/s with 1, 2, 4 and 8 worker processes, beside a bare SKIP LOCKED "
        "loop and, when installed (pip install -r requirements-bench.txt), pgqueuer and "
        "procrastinate; how long a new job waits for an idle worker; and pgbench. Prints the "
        "tables and the hardened design's goals; writes every figure as JSON if asked. The full "
        "run takes about 15 minutes on 2 cores; --quick under 2.",
    )
    bench_parser.add_argument(
        "--quick", action="store_true", help="smaller: depths 1k and 10k, 1 and 2 workers, 2,000 jobs, 2 s"
    )
    bench_parser.add_argument("--json", type=Path, metavar="FILE", help="write the whole run here as JSON")
    bench_parser.add_argument(
        "--only",
        type=_typed(_scenarios),
        metavar="SCENARIOS",
        help=f"run only these, comma-separated: {', '.join(inputs.SCENARIOS)} (default: all)",
    )
    bench_parser.add_argument(
        "--depths",
        type=_typed(_depths),
        help="waiting jobs to time claims at, increasing, comma-separated (default: 1k, 10k, 100k, 1M)",
    )
    bench_parser.add_argument(
        "--samples",
        type=_typed(values.whole, "samples", 1, 1000),
        help="timed claims per depth (default 60; --quick 10)",
    )
    bench_parser.add_argument(
        "--workers",
        type=_typed(_workers),
        help="worker processes per throughput point, comma-separated (default: 1, 2, 4, 8)",
    )
    bench_parser.add_argument(
        "--jobs",
        type=_typed(values.whole, "jobs", 1, inputs.MAX_DEPTH),
        help="no-op jobs queued for each throughput point (default 20,000; --quick 2,000)",
    )
    bench_parser.add_argument(
        "--window",
        type=_typed(values.seconds, "window"),
        help="the most seconds one throughput point may last (default 10; --quick 2)",
    )
    return parser


def _depths(text: str) -> list[int]:
    depths = [values.whole(part, "a depth", 1, inputs.MAX_DEPTH) for part in text.split(",")]
    return inputs.check_depths(depths)


def _scenarios(text: str) -> tuple[str, ...]:
    return inputs.check_scenarios(tuple(part.strip() for part in text.split(",")))


def _workers(text: str) -> list[int]:
    return [values.whole(part, "a worker count", 1, inputs.MAX_WORKERS) for part in text.split(",")]


def bench_run(args: argparse.Namespace) -> int:
    """Run the benchmark, printing progress and the table; write the JSON if asked."""
    if args.json is not None and not args.json.parent.is_dir():
        raise BadValue(f"--json: no folder {str(args.json.parent)!r} to write {args.json.name!r} in")
    report = bench.run(
        quick=args.quick,
        depths=args.depths,
        samples=args.samples,
        scenarios=args.only or inputs.SCENARIOS,
        workers=args.workers,
        jobs=args.jobs,
        window=args.window,
        progress=lambda line: print(line, flush=True),
    )
    print()
    print(report.table())
    print(f"\n{report.seconds:.0f} s on {report.machine['cores']} cores ({report.machine['cpu']})")
    if args.json is not None:
        args.json.write_text(report.to_json() + "\n", encoding="utf-8")
        print(f"pgqueue: wrote {args.json}")
    return 0


def _problem(exc: Exception) -> str:
    """A problem in one line: the kit's own words, PostgreSQL's, or the file or folder it could not use."""
    if isinstance(exc, psycopg.OperationalError):
        return f"lost the connection to PostgreSQL: {worker_base.one_line(exc)}"
    if isinstance(exc, psycopg.Error):  # a refusal the kit did not foresee: PostgreSQL's words
        code = f" ({exc.sqlstate})" if exc.sqlstate else ""
        return f"PostgreSQL refused{code}: {worker_base.one_line(exc)}"
    if not isinstance(exc, OSError) or not exc.filename:
        return str(exc)
    # inside the kit's home, how to move that home
    where = Path(exc.filename)
    hint = ""
    if where == paths.home() or paths.home() in where.parents:
        hint = " (PGQUEUE_HOME moves the kit's files to a folder you may write)"
    return f"{exc.strerror or exc}: {str(where)!r}{hint}"


def main(argv: list[str] | None = None) -> int:
    """Run one verb: a mistake prints a usage line and exits 2, a problem one line and exits 1."""
    args = build_parser().parse_args(argv)
    try:
        paths.sql_dir()  # a package installed without its SQL says so before any server starts
        return args.func(args)
    except BadValue as exc:
        args.parser.error(str(exc))  # exits 2 with the verb's usage line
    except (PgQueueError, psycopg.Error, OSError) as exc:
        print(f"pgqueue: error: {_problem(exc)}", file=sys.stderr)
        return PROBLEM
    except KeyboardInterrupt:
        print("pgqueue: interrupted", file=sys.stderr)
        return INTERRUPTED
    return USAGE  # not reached: parser.error exits
