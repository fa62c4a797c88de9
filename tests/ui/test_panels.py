"""Panels driven from code, through the same observers a click runs, against real workers."""

import json

import psutil
import pytest

from pgqueue import PgQueueError, queries
from pgqueue.queues import fleet, heartbeats, labs, notify_listen, single_call
from pgqueue.queues.heartbeats import Identity
from pgqueue.ui import figures, panels
from pgqueue.wait import until

SC, NL = "single-call", "notify-listen"
FAST_SC = single_call.Options(poll=0.2, work=(0.0, 0.02))
FAST_NL = notify_listen.Options(idle=0.2, work=(0.0, 0.02))


@pytest.fixture
def sc_lab():
    labs.reset(SC, examples=True)


def _registered(count: int, stopped: int = 0) -> list[Identity]:
    """`count` uploaders that beat once in the single-call lab, the last `stopped` of them then stopped."""
    people = [Identity.new("uploader", "1.0.0") for _ in range(count)]
    with labs.connect(SC) as conn:
        for who in people:
            heartbeats.send_heartbeat(conn, who)
        for who in people[count - stopped :]:
            heartbeats.mark_stopped(conn, who.uuid)
    return people


def _beating(poc, members):
    return until(
        lambda: {m.who.uuid for m in members} <= set(heartbeats.states(poc)["process_uuid"]),
        30,
        "the workers' first heartbeats",
    )


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_kill_toggle_stops_a_single_call_worker_within_one_poll(sc_lab, mode):
    with fleet.Fleet(SC) as workers:
        (member,) = workers.start("uploader", "1.0.0", mode=mode, worker_options=FAST_SC)
        _beating(SC, [member])
        panel = panels.KillSwitchPanel(SC)
        panel.set_kill(member.who.uuid)
        workers.wait_exited(member.who.uuid, FAST_SC.poll + 1.0)
        panel.refresh()
        assert "<b>killed</b>" in panel.labels[member.who.uuid].value


def test_the_kill_panel_works_on_the_notify_listen_lab_and_stop_all_stops_every_worker():
    labs.reset(NL, examples=True)
    with fleet.Fleet(NL) as workers:
        members = workers.start("third_process", "1.0.0", 3, worker_options=FAST_NL)
        _beating(NL, members)
        panel = panels.KillSwitchPanel(NL)
        panel.stop_all()
        for member in members:
            workers.wait_exited(member.who.uuid, FAST_NL.timeout)
        assert set(heartbeats.states(NL)["state"]) == {"killed"}


def test_refreshing_the_kill_panel_never_writes_a_switch(sc_lab):
    with fleet.Fleet(SC) as workers:
        (member,) = workers.start("uploader", "1.0.0", worker_options=FAST_SC)
        _beating(SC, [member])
        panel = panels.KillSwitchPanel(SC)
        # set and cleared in one transaction: the worker, polling, can never see it set (two
        # commits let a loaded machine's worker look in between, and it exited, killed)
        switch = queries.load("clients/heartbeats.sql")["set_kill_switch"]
        with labs.connect(SC) as conn, conn.transaction():
            for on in (True, False):
                conn.execute(switch, {"uuid": member.who.uuid, "on": on})
        panel.refresh()
        panel.refresh()
        assert not panel.toggles[member.who.uuid].value and member.alive


def test_a_priority_change_in_the_panel_reorders_what_find_job_hands_out(sc_lab):
    panel = panels.PriorityPanel()
    first, second = single_call.submit(pipe_id=2), single_call.submit(pipe_id=2)
    panel.refresh()
    panel.set_priority(second, 1)
    with labs.connect(SC) as conn:
        got = json.loads(single_call.Worker(Identity.new("first_process", "1.9.2")).find_job(conn, False))
    assert got[0]["pipe_job_id"] == second != first  # first was older: without the change it wins
    assert f"pipe job {second}: priority 1" in panel.message.value


def test_the_priority_form_submits_one_request_through_several_pipelines(sc_lab):
    panel = panels.PriorityPanel()
    panel.submit([2, 4], request_id=70, priority=30)
    pipes = single_call.pipe_jobs().set_index("pipe_job_id")
    mine = pipes[pipes["request_id"] == 70]
    assert sorted(mine["pipe_id"]) == [2, 4] and set(mine["pipe_job_priority"]) == {30}
    assert mine.set_index("pipe_id").loc[4, "jobs"] == 0  # order 2 waits for order 1
    assert set(mine.index) <= set(panel.inputs)


def test_the_fleet_panel_starts_what_it_is_asked_and_leaves_nothing(sc_lab):
    with fleet.Fleet(SC) as workers:
        panel = panels.FleetPanel(workers, FAST_SC)
        panel.start("classification", "1.0.0", 2, mode="thread")
        panel.start("uploader", "1.0.0", 2, mode="process")
        assert len(workers.members(alive=True)) == 4
        _beating(SC, workers.members())
        victim = panel.victim.options[0]
        panel.hard_kill(victim)
        assert not workers.member(victim).alive
        with pytest.raises(PgQueueError, match="no pipeline asks for classification 9.1.0"):
            panel.start("classification", "9.1.0")
        panel.stop()
        assert workers.members(alive=True) == []
        pids = [m.process.pid for m in workers.members() if m.process is not None]
    assert not [pid for pid in pids if psutil.pid_exists(pid)]


def test_the_dashboard_stops_when_asked_and_when_its_time_is_up(sc_lab):
    asked = panels.Dashboard(SC, seconds=60, interval=0.1).start()
    until(lambda: asked.refreshes >= 2, 10, "two refreshes")
    asked.stop()
    assert not asked.running
    timed = panels.Dashboard(SC, seconds=0.5, interval=0.1).start()
    timed.wait(10)
    assert not timed.running and timed.refreshes >= 1
    assert timed.status.value.startswith("stopped after")


def test_the_dashboard_shows_counts_workers_and_a_timeline(sc_lab):
    with fleet.Fleet(SC) as workers:
        workers.launch(
            [("first_process", "1.9.2", 1), ("second_process", "2.2.0", 1), ("third_process", "5.3.0", 1)],
            worker_options=FAST_SC,
        )
        until(
            lambda: single_call.pipe_jobs().set_index("pipe_job_id").loc[4, "pipe_job_finished"],
            30,
            "pipe job 4 finishing",
        )
        board = panels.Dashboard(SC)
        board.refresh()
    assert "first_process 1.9.2" in board.counts.value
    assert board.workers.value.count("alive") == 3
    bars = sum(len(trace.y) for trace in board.timeline.data)
    assert bars == len(figures.history(SC).dropna(subset=["job_assign_timestamp"]))


def test_the_dashboard_works_on_the_notify_listen_lab_too():
    labs.reset(NL, examples=True)
    with fleet.Fleet(NL) as workers:
        workers.launch(
            [("first_process", "1.0.0", 1), ("second_process", "1.5.2", 1), ("third_process", "1.0.0", 1)],
            worker_options=FAST_NL,
        )
        until(lambda: notify_listen.job_counts()["finished"] == 3, 30, "the example request finishing")
        board = panels.Dashboard(NL)
        board.refresh()
    assert "third_process 1.0.0" in board.counts.value
    assert sum(len(trace.y) for trace in board.timeline.data) == 3


def test_a_panel_keeps_what_a_person_clicked_and_not_what_code_did(sc_lab):
    me, other = _registered(2)
    panel = panels.KillSwitchPanel(SC)
    panel.set_kill(me.uuid)  # code: the lesson's fallback when nobody clicked
    assert panel.clicks == []
    panel.toggles[other.uuid].value = True  # what a click in the browser changes
    assert panel.clicks == [panels.Click("kill", other.uuid, True)]
    assert set(heartbeats.states(SC).query("state == 'killed'")["process_uuid"]) == {me.uuid, other.uuid}

    prio = panels.PriorityPanel()
    pipe_job = single_call.submit(pipe_id=2)
    prio.refresh()
    prio.set_priority(pipe_job, 5)
    prio.inputs[pipe_job].value = 7  # typed by a person
    prio.submit([2], request_id=71)
    assert prio.clicks == [panels.Click("priority", pipe_job, 7)]


def test_the_kill_panel_lists_live_workers_and_shows_all_when_asked(sc_lab):
    alive, killed, stopped = _registered(3, stopped=1)
    heartbeats.set_kill_switch(SC, killed.uuid, True)
    panel = panels.KillSwitchPanel(SC)
    assert panel.shown == [alive.uuid] and len(panel.rows.children) == 1
    assert "1 live worker(s) of 3 registered" in panel.summary.value
    assert "show all" in panel.summary.value
    panel.show_all.value = True  # what ticking the box does
    assert set(panel.shown) == {alive.uuid, killed.uuid, stopped.uuid} and len(panel.rows.children) == 3
    assert panel.clicks == []  # showing more is not a change to the lab
    badges = {u: panel.labels[u].value for u in panel.shown}
    assert panels.state_badge("alive") in badges[alive.uuid]
    assert panels.state_badge("killed") in badges[killed.uuid]
    assert panels.state_badge("stopped") in badges[stopped.uuid]
    assert panels.STATE_COLOURS["killed"] != panels.STATE_COLOURS["alive"] != panels.STATE_COLOURS["stopped"]
    assert panel.toggles[killed.uuid].button_style == "danger"
    assert panel.toggles[alive.uuid].button_style == "warning"
    panel.show_all.value = False
    assert panel.shown == [alive.uuid]


def test_killing_a_worker_in_the_panel_hides_its_row_and_stop_all_flips_only_live_ones(sc_lab):
    first, second, gone = _registered(3, stopped=1)
    panel = panels.KillSwitchPanel(SC)
    panel.toggles[first.uuid].value = True  # a click
    assert panel.shown == [second.uuid]
    assert panel.clicks == [panels.Click("kill", first.uuid, True)]
    panel.stop_all()
    assert [c.target for c in panel.clicks] == [first.uuid, second.uuid]  # not the stopped one
    assert heartbeats.states(SC).set_index("process_uuid").loc[gone.uuid, "state"] == "stopped"


def test_the_pipeline_list_is_wide_enough_for_its_longest_option(sc_lab):
    panel = panels.PriorityPanel()
    longest = max(len(label) for label, _ in panel.pipelines.options)
    assert longest > 30  # e.g. "1: activities classification 1.0.5 (order 1)"
    width = int(panel.pipelines.layout.width.removesuffix("px"))
    assert width >= panels.DESCRIPTION_PX + panels.CHAR_PX * longest
