"""Lesson 02's checker: the learner's `send_heartbeat`, beat by beat, with a first beat held, and racing."""

from __future__ import annotations

import dataclasses
import secrets

import psycopg

from pgqueue import queries
from pgqueue.check.core import Call, Hold, Verdict, advisory_locks, checker, checks, holding, said, together
from pgqueue.queues import labs
from pgqueue.queues.heartbeats import Identity, send_heartbeat
from pgqueue.wait import Timeout

RACE_TRIALS = 20  # trials of first beats released together
RACERS = 4  # beats per trial, one connection each
LOCK_TIMEOUT_MS = 2000  # a beat that waits this long for a lock is refused instead of hanging the judge
HELD_TIMEOUT_MS = 15_000  # the held beat's: it waits at the hold for as long as the judge keeps it there
# where the first of two first beats is held: once its row is in, uncommitted; before its row goes
# in; and at its commit, once its routine ended (a lock the routine let go of is let go by then)
HOLDS = (
    ("AFTER", "right after its insert, before it committed"),
    ("BEFORE", "before its row went in"),
    ("COMMIT", "at its commit, once its routine had ended"),
)


@checker(
    "your send_heartbeat",
    "notify-listen",
    "heartbeats",
    replaces=["send_heartbeat"],
    before=lambda conn: _bounded(conn),
)
def heartbeat_upsert(
    verdict: Verdict, lab: labs.Scratch, conn: psycopg.Connection, text: str, poc: str
) -> None:
    """Whether the learner's `send_heartbeat` registers, refreshes, keeps the kill switch, races safely."""
    # names drawn anew, and a sibling of the same process and version: an upsert keyed by
    # anything but the uuid shows itself on the sibling's row
    name, version = (
        f"process_{secrets.token_hex(3)}",
        f"{secrets.randbelow(9) + 1}.{secrets.randbelow(20)}.0",
    )
    me, sibling = Identity.new(name, version), Identity.new(name, version)
    other = Identity.new(f"other_{secrets.token_hex(3)}", "1.5.2")
    if not _beat(conn, me, verdict, "a first beat"):
        return
    row = _row(conn, me)
    if not verdict.expect(
        row is not None
        and (row["process_name"], row["process_version"], row["server_name"])
        == (me.name, me.version, me.server),
        "a first beat registers the process (its name, version and server)",
        f"after a first beat of {me.uuid}, process_heartbeats holds {_shown(row)}",
    ):
        return
    _beat(conn, sibling, verdict, "another process's first beat")
    if not _beat_in_a_transaction(conn, other, verdict):
        return
    before = {who.uuid: _row(conn, who) for who in (sibling, other)}
    unregistered = [str(who) for who in (sibling, other) if before[who.uuid] is None]
    if not verdict.expect(
        not unregistered and _row(conn, me) == row,
        "another process's first beat registers its own row and leaves the others as they were",
        f"the first beats of {', '.join(unregistered) or 'two other processes'} "
        f"{'left them without a row' if unregistered else 'changed the row of'} {me}"
        f"{' (their beat updated its row instead)' if unregistered else ''}: "
        "a process is its uuid, so the upsert's key is process_uuid alone",
    ):
        return
    conn.execute(checks()["mark_busy_stopped"], {"uuid": me.uuid})
    # the second beat comes from another host: a worker restarted elsewhere keeps its uuid
    moved = dataclasses.replace(me, server=f"host-{secrets.token_hex(3)}")
    if not _beat(conn, moved, verdict, "a second beat of the same process"):
        return
    again = _row(conn, me)
    verdict.expect(
        _count(conn, me) == 1,
        "a second beat keeps one row per process",
        f"two beats of {me.uuid} left {_count(conn, me)} rows",
    )
    refreshed = verdict.expect(
        again["last_beat_timestamp"] > row["last_beat_timestamp"],
        "a second beat moves last_beat_timestamp forward",
        f"a second beat left last_beat_timestamp at {row['last_beat_timestamp']}: "
        "the process would look stale while it beats",
    )
    refreshed &= verdict.expect(
        again["server_name"] == moved.server,
        f"a second beat from another server ({moved.server}) records that server",
        f"a second beat of {me.uuid} from server {moved.server!r} left server_name at "
        f"{again['server_name']!r}: the process would be looked for where it no longer runs "
        "(does the update set server_name too?)",
    )
    refreshed &= verdict.expect(
        not again["process_busy"] and again["process_stopped_timestamp"] is None,
        "a beat clears process_busy and process_stopped_timestamp (a beating process asks for work)",
        "after a beat, process_busy is "
        f"{again['process_busy']} and process_stopped_timestamp is {again['process_stopped_timestamp']}: "
        "a beat means the process runs and wants work, so both must be cleared",
    )
    changed = [who for who in (sibling, other) if _row(conn, who) != before[who.uuid]]
    verdict.expect(
        not changed,
        "a beat changes only its own process's row (not another of the same name and version)",
        f"a beat of {me.uuid} changed the row of {', '.join(str(w) for w in changed)} too: "
        "is a WHERE or the conflict target keyed by something else than process_uuid?",
    )
    conn.execute(queries.load("clients/heartbeats.sql")["set_kill_switch"], {"uuid": me.uuid, "on": True})
    # a killed worker beats until it next asks for work and exits: its beat is recorded like any
    # other, from yet another host and after it took a job and said it stopped, so each column shows
    conn.execute(checks()["mark_busy_stopped"], {"uuid": me.uuid})
    last = dataclasses.replace(me, server=f"host-{secrets.token_hex(3)}")
    _beat(conn, last, verdict, "a beat after the kill switch was set")
    killed = _row(conn, me)
    verdict.expect(
        killed is not None and killed["process_kill_switch"],
        "a beat keeps the kill switch an operator set",
        "a beat cleared the kill switch: an operator's kill would be undone by the next heartbeat",
    )
    if killed is not None and refreshed:  # else its beats are refused whatever the kill switch
        _killed_beat_recorded(again, killed, last.server, verdict)
    if not _killed_during_a_beat(lab, verdict):
        return
    if _held_first_beat(lab, verdict) and _held_later_beats(lab, verdict):
        _race(lab, verdict)  # many beats at once, and a lock a beat keeps after it ended


def _killed_beat_recorded(before: dict, killed: dict, server: str, verdict: Verdict) -> None:
    """Whether a beat of a worker whose kill switch is set wrote what any beat writes."""
    missed = [
        what
        for what, ok in (
            (
                f"last_beat_timestamp stayed at {before['last_beat_timestamp']}",
                killed["last_beat_timestamp"] > before["last_beat_timestamp"],
            ),
            (
                f"server_name stayed {killed['server_name']!r}, not {server!r}",
                killed["server_name"] == server,
            ),
            (f"process_busy stayed {killed['process_busy']}", not killed["process_busy"]),
            (
                f"process_stopped_timestamp stayed {killed['process_stopped_timestamp']}",
                killed["process_stopped_timestamp"] is None,
            ),
        )
        if not ok
    ]
    verdict.expect(
        not missed,
        "a beat of a worker whose kill switch is set is recorded like any other (it beats until it "
        "next asks for work and exits)",
        f"the beat of a killed worker was not recorded: {', '.join(missed)}, though the same beat before "
        "the kill switch was set refreshed the row; a killed worker beats until it next asks for work, and "
        "a row left stale reads it as dead, so its job would be rescued while it still works (does the "
        "update skip a row whose kill switch is set?)",
    )


def _held_first_beat(lab: labs.Scratch, verdict: Verdict) -> bool:
    """Two first beats of one new worker, the first held at its insert while the second beats.

    Forced, not hoped for: a kit trigger on process_heartbeats stops the first beat right after
    its insert (the second's check sees no committed row, and its insert waits for the first),
    then, on another worker, before its row goes in (the second's check sees no row, and its
    insert goes in first). An upsert that decides in one statement, or retries on unique_violation, survives
    both; a check before an insert fails, or leaves two rows. The two beats name other servers, so
    the row shows whose beat it holds: a beat that went through at once is in the row before the
    first is let go, and one that waited for the first is in it at the end.
    """
    for when, where in HOLDS:
        who = Identity.new(f"held_{secrets.token_hex(3)}", "1.0.0")
        first_who, second_who = (
            dataclasses.replace(who, server=f"host-{secrets.token_hex(3)}") for _ in (1, 2)
        )
        with (
            lab.connect() as watch,
            holding(watch, "process_heartbeats", when=when, event="INSERT") as hold,
            _bounded(lab.connect(), HELD_TIMEOUT_MS) as first_conn,
            _bounded(lab.connect()) as second_conn,
        ):
            hold.arm(first_conn, 1)
            hold.close(1)
            first = Call(lambda who=first_who: send_heartbeat(first_conn, who))
            if hold.stops(first_conn, first) != "held":
                hold.open(1)
                return verdict.expect(
                    False, "", f"a first beat of {who.uuid} never inserted a row: {_said(first.join())}"
                )
            first_locks = hold.advisory(first_conn)
            second = Call(lambda who=second_who: send_heartbeat(second_conn, who))
            waited = hold.stops(second_conn, second)
            second_locks = hold.advisory(second_conn) if waited else 0
            at_once = None if waited else _row(watch, who)  # the second answered while the first is held
            hold.open(1)
            results = {"the first beat": first.join(), "the second beat": second.join()}
            kept = hold.advisory(first_conn)  # advisory locks the first beat's session kept after it ended
            rows, last = _count(watch, who), _row(watch, who)
        what = f"two first beats of one new worker ({who.uuid}), the first held {where}"
        failed = [(beat, r) for beat, r in results.items() if isinstance(r, BaseException)]
        if failed:
            beat, exc = failed[0]
            if isinstance(exc, psycopg.errors.UniqueViolation):
                cause = f"failed with a duplicate key ({said(exc)})"
                # the second waited at the lock the first let go of, or took one the first no longer held
                unlocked = waited == "advisory" or (second_locks and not first_locks)
                cause += _UNLOCKED if unlocked else _CHECKED
            else:
                cause = f"failed ({said(exc)})" + (_HELD if kept else "")
            return verdict.expect(False, "", f"{what}: {beat} {cause}")
        if rows != 1:
            return verdict.expect(
                False, "", f"{what}: both beats went through and left {rows} rows for one worker{_CHECKED}"
            )
        # whose beat the row must show: the second's once it went through at once, and the first's,
        # let go after it, at the end; or, when the second waited for the first, the second's at the end
        seen = [("second", second_who, at_once, "once it ended")] if not waited else []
        seen.append(
            ("first", first_who, last, "at the end")
            if not waited
            else ("second", second_who, last, "at the end")
        )
        for which, beat, row, when in seen:
            if row is None or row["server_name"] != beat.server:
                tried = which == "second" and not waited and first_locks  # the first held a lock it skipped
                shows = "no beat" if row is None else f"server {row['server_name']!r}"
                return verdict.expect(
                    False,
                    "",
                    f"{what}: the {which} beat (from server {beat.server!r}) ended without an error, but "
                    f"{when} the row shows {shows}: its beat was lost{_GAVE_UP if tried else _SKIPPED}",
                )
        how = (
            f"the second waited {_WAITED_FOR.get(waited, 'for the first')} and, once the first was let go, "
            "wrote its beat over the first's"
            if waited
            else "the second went through at once, and the first, let go, wrote its beat over it"
        )
        verdict.held.append(f"{what}: {how}; no error, one row")
    return True


def _held_later_beats(lab: labs.Scratch, verdict: Verdict) -> bool:
    """Two later beats of a worker whose row is there, each held by the kit at its INSERT (after
    whatever the beat did before it), then let go together.

    Forced, not hoped for: a beat that first takes a lock others may share (FOR SHARE on its row)
    holds it there, and once both are let go each waits for the other's to update: a deadlock.
    An upsert takes its row's lock in the INSERT itself; an UPDATE that finds the row never
    inserts, and is not held.
    """
    who = Identity.new(f"later_{secrets.token_hex(3)}", "1.0.0")
    with (
        lab.connect() as watch,
        holding(watch, "process_heartbeats", when="BEFORE", event="INSERT") as hold,
        _bounded(lab.connect(), HELD_TIMEOUT_MS) as one,
        _bounded(lab.connect(), HELD_TIMEOUT_MS) as two,
    ):
        send_heartbeat(watch, who)  # its row is there
        beats = []
        try:
            for slot, conn in enumerate((one, two), 1):
                hold.arm(conn, slot)
                hold.close(slot)
                beats.append(Call(lambda conn=conn: send_heartbeat(conn, who)))
                hold.stops(conn, beats[-1])  # held at its insert, answered, or waiting for a lock
        except Timeout:
            stuck = "a later beat neither ended, nor reached its insert, nor waited for a lock within 10 s"
            verdict.refuse(stuck)
            return False
        finally:
            hold.open_all()
            results = [beat.join() for beat in beats]
        rows = _count(watch, who)
    what = f"two later beats of worker {who.uuid}, whose row is there, held at their insert, let go together"
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        deadlocked = any(isinstance(r, psycopg.errors.DeadlockDetected) for r in failed)
        return verdict.expect(
            False, "", f"{what}: a beat failed ({said(failed[0])}){_DEADLOCKED if deadlocked else ''}"
        )
    return verdict.expect(rows == 1, f"{what}: no error, one row", f"{what}: they left {rows} rows")


_GAVE_UP = (
    " (does it give up when it cannot take a lock at once, as pg_try_advisory_xact_lock does? a beat that"
    " waits for the other is kept)"
)
_SKIPPED = (
    " (does it skip the row, by a WHERE on its DO UPDATE or by DO NOTHING, or catch an error and drop it?"
    " every beat is written, and each is answered: a beat whose row is not written fires no trigger)"
)


# what a beat waited for, by the kind of lock pg_locks shows it waiting for
_WAITED_FOR = {
    "transactionid": "for the first one's row",
    "tuple": "for the first one's row",
    "advisory": "at the advisory lock the first held",
    "relation": "for the table lock the first held",
}


def _race(lab: labs.Scratch, verdict: Verdict) -> None:
    """First beats of one new process released together, RACE_TRIALS times; then, each time, later
    beats of that process, whose row is there now, released together too.

    Beats of one process overlap when a worker that lost its connection beats again on a new
    one while the server still runs the first: an upsert must not fail then, on a first beat or
    on any later one.
    """
    conns = [_bounded(lab.connect()) for _ in range(RACERS)]
    try:
        firsts = [Identity.new("third_process", "1.0.0", secrets.token_hex(6)) for _ in range(RACE_TRIALS)]
        beaten = _trials(verdict, conns, firsts, "first beats of one process")
        _trials(verdict, conns, beaten, "later beats of one process whose row is there")
    finally:
        for conn in conns:
            conn.close()


def _trials(
    verdict: Verdict, conns: list[psycopg.Connection], workers: list[Identity], what: str
) -> list[Identity]:
    """One trial a worker: each of `conns` sends a beat of it, released together. The workers tried
    (the trials stop at a lock timeout: each further one would wait it out again)."""
    failed: list[str] = []
    bad_trials = trials = 0
    for who in workers:
        trials += 1
        results = together(len(conns), lambda i, who=who: send_heartbeat(conns[i], who))
        errors = [said(r) for r in results if isinstance(r, BaseException)]
        failed += errors
        bad_trials += bool(errors) or _count(conns[0], who) != 1
        if any("lock timeout" in e for e in errors):
            break
    kept = any(advisory_locks(conns[0], conn) for conn in conns)
    if any("deadlock detected" in f for f in failed):
        cause = _DEADLOCKED
    elif any("lock timeout" in f for f in failed):
        cause = _HELD if kept else ""
    else:
        cause = _TWO_STEPS
    verdict.expect(
        not bad_trials,
        f"{len(conns)} overlapping {what}, {len(workers)} times: no error, one row",
        f"{len(conns)} overlapping {what} went wrong in {bad_trials} of {trials} trials"
        + (f": {len(failed)} beats failed ({failed[0]})" if failed else "")
        + cause,
    )
    return workers[:trials]


_TWO_STEPS = (
    "; looking for the row and inserting it are two steps (a SELECT, an UPDATE that found no row, or"
    " MERGE's match) that another beat can come between: INSERT ... ON CONFLICT (process_uuid) DO UPDATE"
    " does both at once"
)
_CHECKED = (
    ": each beat looked for the worker's row, found none (the other's was not there yet or not committed)"
    " and went on to insert it: looking for the row and"
    " inserting it are two steps (a SELECT, an UPDATE that found no row, or MERGE's match) that another"
    " beat can come between, even inside one statement: INSERT ... ON CONFLICT (process_uuid) DO UPDATE"
    " does both at once (or catch unique_violation and update)"
)
_UNLOCKED = (
    ": both beats took an advisory lock, yet the second looked for the row before the first's insert"
    " was committed: the first let go of its lock before the commit (pg_advisory_unlock, or a session-level"
    " lock let go in the routine), so the second looked too early; pg_advisory_xact_lock is let go at the"
    " commit, and INSERT ... ON CONFLICT (process_uuid) DO UPDATE needs no lock"
)
_DEADLOCKED = (
    "; the beats deadlocked: each held a lock the other waited for, as when each takes a lock that others"
    " may take too (LOCK TABLE ... IN SHARE MODE, FOR SHARE) and then waits for them to let go of it so it"
    " can write: INSERT ... ON CONFLICT (process_uuid) DO UPDATE needs no lock"
)
_HELD = (
    f"; a beat waited {LOCK_TIMEOUT_MS / 1000:g} s for a lock another beat kept after it ended: a"
    " session-level advisory lock (pg_advisory_lock) is held until the session closes; INSERT ... ON"
    " CONFLICT needs no lock"
)


def _beat_in_a_transaction(conn: psycopg.Connection, who: Identity, verdict: Verdict) -> bool:
    """A first beat sent inside a transaction, as find_job CALLs it and as a client with autocommit
    off sends it: a procedure that commits (or rolls back) itself fails there."""
    try:
        with conn.transaction():
            send_heartbeat(conn, who)
        return True
    except psycopg.errors.InvalidTransactionTermination as exc:
        verdict.refuse(
            f"a first beat sent inside a transaction (as find_job CALLs send_heartbeat, and as a client with "
            f"autocommit off sends it) failed: {said(exc)}: a COMMIT or ROLLBACK in a procedure works only "
            "when it is CALLed alone; leave the commit to the caller"
        )
    except psycopg.Error as exc:
        verdict.refuse(f"another process's first beat, sent inside a transaction, failed: {said(exc)}")
    return False


def _killed_during_a_beat(lab: labs.Scratch, verdict: Verdict) -> bool:
    """An operator sets a worker's kill switch while the worker's beat runs: the operator's update is
    open (it holds the row) when the beat starts, and commits while the beat waits for the row. The
    kill must stand: a beat that read the switch before and writes it back undoes it."""
    who = Identity.new(f"killed_{secrets.token_hex(3)}", "1.0.0")
    set_kill = queries.load("clients/heartbeats.sql")["set_kill_switch"]
    with lab.connect() as watch, lab.connect(autocommit=False) as operator, _bounded(lab.connect()) as worker:
        send_heartbeat(worker, who)
        first = _row(watch, who)
        operator.execute(set_kill, {"uuid": who.uuid, "on": True})  # its transaction stays open
        beat = Call(lambda: send_heartbeat(worker, who))
        try:
            waited = Hold(watch).stops(worker, beat)
            during = "waited for the row" if waited else "ran"
        except Timeout:
            during = "ran (it neither ended nor waited for a lock within 10 s)"
        finally:
            operator.commit()
            result = beat.join()
        row = _row(watch, who)
    what = (
        f"an operator set the kill switch of {who.uuid} while its beat ran (the operator's update open "
        f"when the beat began, committed while the beat {during})"
    )
    if isinstance(result, BaseException):
        return verdict.expect(False, "", f"{what}: the beat failed ({said(result)})")
    if row is not None and row["last_beat_timestamp"] <= first["last_beat_timestamp"]:
        return verdict.expect(
            False, "", f"{what}: the beat left last_beat_timestamp at {first['last_beat_timestamp']}"
        )
    return verdict.expect(
        row is not None and row["process_kill_switch"],
        f"{what}: the kill stood, and the beat moved last_beat_timestamp on",
        f"{what}: at the end the kill switch is {row and row['process_kill_switch']}: the beat undid the "
        "operator's kill; does it write process_kill_switch from a value it read before its upsert? "
        "leave process_kill_switch out of the beat's update: only an operator sets it",
    )


def _bounded(conn: psycopg.Connection, ms: int = LOCK_TIMEOUT_MS) -> psycopg.Connection:
    """The connection, with a lock timeout: a beat that waits on a lock fails instead of hanging."""
    conn.execute(queries.load("clients/races.sql")["lock_timeout"], {"ms": str(ms)})
    return conn


def _beat(conn: psycopg.Connection, who: Identity, verdict: Verdict, what: str) -> bool:
    try:
        send_heartbeat(conn, who)
        return True
    except psycopg.Error as exc:
        verdict.refuse(f"{what} failed: {said(exc)}")
        return False


def _said(result: object) -> str:
    return said(result) if isinstance(result, BaseException) else "it ended without one"


def _row(conn: psycopg.Connection, who: Identity) -> dict | None:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(checks()["heartbeat_row"], {"uuid": who.uuid}).fetchone()


def _count(conn: psycopg.Connection, who: Identity) -> int:
    return conn.execute(checks()["heartbeat_rows"], {"uuid": who.uuid}).fetchone()[0]


def _shown(row: dict | None) -> str:
    return "no row" if row is None else f"name {row['process_name']!r}, version {row['process_version']!r}"
