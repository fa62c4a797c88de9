"""Lesson 02's checker: the learner's `send_heartbeat`, tried beat by beat and with racing first beats."""

from __future__ import annotations

import dataclasses
import secrets

import psycopg

from pgqueue import labs, queries
from pgqueue.check.core import Verdict, install, together, written
from pgqueue.heartbeats import Identity, send_heartbeat

RACE_TRIALS = 20  # trials of first beats released together
RACERS = 4  # beats per trial, one connection each
LOCK_TIMEOUT_MS = 2000  # a beat that waits this long for a lock is refused instead of hanging the judge


def _q() -> queries.Queries:
    return queries.load("clients/check.sql")


def heartbeat_upsert(text: str, poc: str = "notify-listen") -> Verdict:
    """Whether the learner's `send_heartbeat` registers, refreshes, keeps the kill switch, races safely."""
    verdict = Verdict("your send_heartbeat")
    if written(text, verdict) is None:
        return verdict
    with labs.scratch(poc, "heartbeats") as lab, lab.connect() as conn:
        if not install(conn, text, verdict, replaces=["send_heartbeat"]):
            return verdict
        _bounded(conn)
        # names drawn anew, and a sibling of the same process and version: an upsert keyed by
        # anything but the uuid shows itself on the sibling's row
        name, version = (
            f"process_{secrets.token_hex(3)}",
            f"{secrets.randbelow(9) + 1}.{secrets.randbelow(20)}.0",
        )
        me, sibling = Identity.new(name, version), Identity.new(name, version)
        other = Identity.new(f"other_{secrets.token_hex(3)}", "1.5.2")
        if not _beat(conn, me, verdict, "a first beat"):
            return verdict
        row = _row(conn, me)
        if not verdict.expect(
            row is not None
            and (row["process_name"], row["process_version"], row["server_name"])
            == (me.name, me.version, me.server),
            "a first beat registers the process (its name, version and server)",
            f"after a first beat of {me.uuid}, process_heartbeats holds {_shown(row)}",
        ):
            return verdict
        for neighbour in (sibling, other):
            _beat(conn, neighbour, verdict, "another process's first beat")
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
            return verdict
        conn.execute(_q()["mark_busy_stopped"], {"uuid": me.uuid})
        # the second beat comes from another host: a worker restarted elsewhere keeps its uuid
        moved = dataclasses.replace(me, server=f"host-{secrets.token_hex(3)}")
        if not _beat(conn, moved, verdict, "a second beat of the same process"):
            return verdict
        again = _row(conn, me)
        verdict.expect(
            _count(conn, me) == 1,
            "a second beat keeps one row per process",
            f"two beats of {me.uuid} left {_count(conn, me)} rows",
        )
        verdict.expect(
            again["last_beat_timestamp"] > row["last_beat_timestamp"],
            "a second beat moves last_beat_timestamp forward",
            f"a second beat left last_beat_timestamp at {row['last_beat_timestamp']}: "
            "the process would look stale while it beats",
        )
        verdict.expect(
            again["server_name"] == moved.server,
            f"a second beat from another server ({moved.server}) records that server",
            f"a second beat of {me.uuid} from server {moved.server!r} left server_name at "
            f"{again['server_name']!r}: the process would be looked for where it no longer runs "
            "(does the update set server_name too?)",
        )
        verdict.expect(
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
        _beat(conn, moved, verdict, "a beat after the kill switch was set")
        killed = _row(conn, me)
        verdict.expect(
            killed is not None and killed["process_kill_switch"],
            "a beat keeps the kill switch an operator set",
            "a beat cleared the kill switch: an operator's kill would be undone by the next heartbeat",
        )
        _race(lab, verdict)
    return verdict


def _race(lab: labs.Scratch, verdict: Verdict) -> None:
    """First beats of one new process released together, RACE_TRIALS times.

    Beats of one process overlap when a worker that lost its connection beats again on a new
    one while the server still runs the first: an upsert must not fail then.
    """
    failed: list[str] = []
    bad_trials = trials = 0
    conns = [_bounded(lab.connect()) for _ in range(RACERS)]
    try:
        while trials < RACE_TRIALS:
            trials += 1
            who = Identity.new("third_process", "1.0.0", secrets.token_hex(6))
            results = together(RACERS, lambda i, who=who: send_heartbeat(conns[i], who))
            errors = [_error(r) for r in results if isinstance(r, BaseException)]
            failed += errors
            bad_trials += bool(errors) or _count(conns[0], who) != 1
            if any("lock timeout" in e for e in errors):
                break  # each further trial would wait out the timeout again: one shows it
    finally:
        for conn in conns:
            conn.close()
    verdict.expect(
        not bad_trials,
        f"{RACERS} overlapping first beats of one process, {RACE_TRIALS} times: no error, one row",
        f"{RACERS} overlapping first beats of one process went wrong in {bad_trials} of {trials} trials"
        + (f": {len(failed)} beats failed ({failed[0]})" if failed else "")
        + (_HELD if any("lock timeout" in f for f in failed) else _ONE_STATEMENT),
    )


_ONE_STATEMENT = "; INSERT ... ON CONFLICT decides in one statement, a check before an insert does not"
_HELD = (
    f"; a beat waited {LOCK_TIMEOUT_MS / 1000:g} s for a lock another beat kept after it ended: a"
    " session-level advisory lock (pg_advisory_lock) is held until the session closes; INSERT ... ON"
    " CONFLICT needs no lock"
)


def _bounded(conn: psycopg.Connection) -> psycopg.Connection:
    """The connection, with a lock timeout: a beat that waits on a lock fails instead of hanging."""
    conn.execute(queries.load("clients/races.sql")["lock_timeout"], {"ms": str(LOCK_TIMEOUT_MS)})
    return conn


def _beat(conn: psycopg.Connection, who: Identity, verdict: Verdict, what: str) -> bool:
    try:
        send_heartbeat(conn, who)
        return True
    except psycopg.Error as exc:
        verdict.refuse(f"{what} failed: {_error(exc)}")
        return False


def _error(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc)


def _row(conn: psycopg.Connection, who: Identity) -> dict | None:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(_q()["heartbeat_row"], {"uuid": who.uuid}).fetchone()


def _count(conn: psycopg.Connection, who: Identity) -> int:
    return conn.execute(_q()["heartbeat_rows"], {"uuid": who.uuid}).fetchone()[0]


def _shown(row: dict | None) -> str:
    return "no row" if row is None else f"name {row['process_name']!r}, version {row['process_version']!r}"
