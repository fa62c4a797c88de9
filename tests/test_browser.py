"""The lab as a learner uses it: JupyterLab in a real (headless) Chromium, cells run, widgets clicked."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import psutil
import pytest

from pgqueue import heartbeats, labs
from pgqueue.wait import until
from tests.conftest import REPO, free_port, start_lab
from tests.tools import require

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
# starts JupyterLab, its kernels and a browser
pytestmark = pytest.mark.slow

TOKEN = "pgqueue-browser-test"
# JupyterLab settings for the test: render every cell (no windowing, so the page holds every
# output), and no news pop-up over the notebook.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    import importlib.util

    require(
        "Playwright (the Python package)",
        importlib.util.find_spec("playwright") is not None,
        "pip install -r requirements-dev.txt",
    )
    # an executable file, not merely a path: a tool hidden by an empty file over it counts as missing
    require(
        f"Chromium ({CHROMIUM})",
        os.access(CHROMIUM, os.X_OK) and os.path.getsize(CHROMIUM) > 0,
        "apt-get install --no-install-recommends chromium",
    )
    return CHROMIUM


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`python -m pgqueue lab` on a free port with a token; stopped with Ctrl-C afterwards."""
    _chromium()
    settings = tmp_path_factory.mktemp("lab-settings")
    for name, values in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = free_port()
    log = open(tmp_path_factory.mktemp("lab-log") / "lab.log", "w")  # noqa: SIM115 (closed below)
    proc = start_lab(port, TOKEN, log, {"JUPYTERLAB_SETTINGS_DIR": str(settings)})
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
            return True
        except OSError:
            return False

    # a deadline, not a wait: on 2 cores shared with the suite's slowest files (bench starts
    # servers and worker processes beside it), JupyterLab once took more than 60 s to answer
    try:
        until(answers, 180, "JupyterLab answering")
    except BaseException:
        proc.send_signal(signal.SIGINT)  # a lab that never answered must not outlive its test
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        raise
    yield base
    family = psutil.Process(proc.pid).children(recursive=True)  # now with the kernels
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert proc.wait(40) == 0
    _, alive = psutil.wait_procs(family, timeout=10)
    log.close()
    assert not alive, f"left running after the lab stopped: {alive}"
    until(lambda: _connections("pgqueue worker") == 0, 10, "every worker's connection closing")


@pytest.fixture
def page(lab):
    """A fresh Chromium page whose console errors are collected."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.console_errors = []
        tab.on("console", lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None)
        yield tab
        browser.close()


def run_all(page, base: str, notebook: str, timeout: float = 90) -> None:
    """Open a notebook in a fresh workspace, run all its cells, and wait for the last one."""
    workspace = f"t{int(time.time() * 1000)}"
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    until(
        lambda: "Idle" in " ".join(page.locator(".jp-StatusBar-TextItem").all_inner_texts()),
        60,
        "the kernel becoming idle",
    )
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    code_cells = page.locator(".jp-CodeCell").count()

    def finished() -> bool:
        prompts = [p.strip() for p in page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]
        return len(prompts) == code_cells and all(p.startswith("[") and p[1:-2].isdigit() for p in prompts)

    until(finished, timeout, f"every cell of {notebook} running", interval=0.5)


def test_notebook_00_shows_every_setup_check_ok(lab, page):
    run_all(page, lab, "00-start-here.ipynb")
    report = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    page.screenshot(path=ARTIFACTS / "00-start-here.png", full_page=True)
    assert report.count("[OK]") >= 10 and "[FAIL]" not in report
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert page.console_errors == []


def test_the_visual_lesson_renders_and_its_controls_reach_the_database(lab, page):
    run_all(page, lab, "08-watch-a-request-flow.ipynb")
    page.screenshot(path=ARTIFACTS / "08-after-run-all.png", full_page=True)
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    plots = page.locator(".js-plotly-plot")
    assert plots.count() >= 4  # four figures, and the dashboard's
    for n in range(plots.count()):
        plots.nth(n).scroll_into_view_if_needed()
        plots.nth(n).screenshot(path=ARTIFACTS / f"08-figure-{n}.png")
    assert page.console_errors == []

    # the kill-switch panel: click the toggle of an idle uploader, as a learner would
    row = (
        page.locator(".widget-hbox", has=page.locator("button.widget-toggle-button"))
        .filter(has_text="uploader 1.0.0")
        .filter(has_text="alive")
        .first
    )
    row.scroll_into_view_if_needed()
    uuid = row.locator("code").inner_text().strip()
    row.locator("button.widget-toggle-button").click()
    until(lambda: _state(uuid) == "killed", 10, "the kill switch reaching the database")
    until(lambda: _connections(uuid) == 0, 10, "the worker exiting (its connection closing)")
    page.screenshot(path=ARTIFACTS / "08-after-kill-click.png", full_page=True)

    # the killed worker leaves the live list; "show all" brings it back, with a red badge
    panel = page.locator(".widget-vbox", has=page.locator("text=show all (killed")).last
    killed_row = panel.locator(".widget-hbox", has=page.locator("code", has_text=uuid))
    until(lambda: killed_row.count() == 0, 10, "the killed worker leaving the live list")
    panel.get_by_text("show all (killed, stopped, stale too)").click()
    until(lambda: killed_row.count() == 1, 10, "show all listing the killed worker")
    badge = killed_row.locator(".pgqueue-state-killed")
    assert badge.inner_text().strip() == "killed"
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(198, 40, 40)"
    panel.screenshot(path=ARTIFACTS / "08-kill-panel-show-all.png")

    # the priority panel's pipeline list shows every option in full
    select = page.locator(".widget-select-multiple select").last
    select.scroll_into_view_if_needed()
    assert select.evaluate("e => e.scrollWidth <= e.clientWidth"), "a pipeline's name is cut off"
    page.locator(".widget-select-multiple").last.screenshot(path=ARTIFACTS / "08-pipeline-list.png")

    # the priority panel: give request 95's pipe job priority 7
    box = page.locator(".widget-inline-hbox", has=page.locator("input")).filter(has_text="pipe job").last
    box.scroll_into_view_if_needed()
    pipe_job = int(box.locator("label").inner_text().split()[-1])
    field = box.locator("input")
    field.fill("7")
    field.press("Enter")
    until(lambda: _priority(pipe_job) == 7, 10, "the new priority reaching the database")
    page.screenshot(path=ARTIFACTS / "08-after-priority.png", full_page=True)


def _state(uuid: str) -> str | None:
    return heartbeats.states("single-call").set_index("process_uuid")["state"].get(uuid)


def _connections(fragment: str) -> int:
    """Open connections to the single-call lab whose application name holds `fragment`."""
    with labs.connect("single-call") as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE %s",
            [f"%{fragment}%"],
        ).fetchone()[0]


def _priority(pipe_job: int) -> int:
    with labs.connect("single-call") as conn:
        return conn.execute(
            "SELECT pipe_job_priority FROM pipe_job_queue WHERE pipe_job_id = %s", [pipe_job]
        ).fetchone()[0]
