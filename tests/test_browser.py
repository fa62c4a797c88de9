"""The lab as a learner uses it: JupyterLab in a real (headless) Chromium, cells run, widgets clicked."""

import json
import signal
import subprocess
import time
import urllib.request

import nbformat
import psutil
import pytest

from pgqueue.queues import heartbeats, labs
from pgqueue.wait import until
from tests.conftest import REPO, free_port, start_lab
from tests.tools import require_browser

ARTIFACTS = REPO / "test-artifacts"
# starts JupyterLab, its kernels and a browser
pytestmark = pytest.mark.slow

TOKEN = "pgqueue-browser-test"
# JupyterLab settings for the test: render every cell (no windowing, so the page holds every
# output), and no news pop-up over the notebook.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    # the lessons are the repository's own files: a run slower than the autosave interval (120 s)
    # wrote their outputs into notebooks/05 and 08 under a loaded machine
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`python -m pgqueue lab` on a free port with a token; stopped with Ctrl-C afterwards."""
    require_browser()
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
    labs_used = [poc for poc in ("single-call", "notify-listen") if labs.exists(poc)]
    until(
        lambda: sum(_connections("pgqueue worker", poc) for poc in labs_used) == 0,
        10,
        "every worker's connection closing",
    )


@pytest.fixture
def page(lab):
    """A fresh Chromium page whose console errors are collected."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=require_browser(), headless=True, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.console_errors = []
        tab.on("console", lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None)
        yield tab
        browser.close()


def open_notebook(page, base: str, notebook: str) -> None:
    """Open a notebook in a fresh workspace (a new kernel) and wait for the kernel to be idle."""
    workspace = f"t{int(time.time() * 1000)}"
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    until(_idle(page), 60, "the kernel becoming idle")


def _idle(page):
    return lambda: "Idle" in " ".join(page.locator(".jp-StatusBar-TextItem").all_inner_texts())


def _menu(page, menu: str, item: str) -> None:
    page.get_by_role("menuitem", name=menu, exact=True).click()
    page.get_by_text(item, exact=True).click()


def cell(page, notebook: str, cell_id: str):
    """The cell of `notebook` with this nbformat id, as the page shows it."""
    return page.locator(".jp-NotebookPanel .jp-Cell").nth(_index(notebook, cell_id))


def _index(notebook: str, cell_id: str) -> int:
    cells = nbformat.read(REPO / "notebooks" / notebook, as_version=4).cells
    return next(n for n, c in enumerate(cells) if c.get("id") == cell_id)


def _ran(page, first: int = 0, last: int | None = None):
    """Whether every code cell between cell `first` and cell `last` (excluded) shows a number."""

    def ran() -> bool:
        # a cell that failed stops the run: say why at once rather than at the deadline
        assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, _errors(page)
        prompts = page.evaluate(PROMPTS, [first, last])
        return all(p.startswith("[") and p[1:-2].isdigit() for p in prompts)

    return ran


# the input prompts ("[3]:", "[*]:", "[ ]:") of the code cells from index `first` to `last`
PROMPTS = """([first, last]) => [...document.querySelectorAll('.jp-NotebookPanel .jp-Cell')]
  .slice(first, last === null ? undefined : last)
  .filter(c => c.classList.contains('jp-CodeCell'))
  .map(c => c.querySelector('.jp-InputPrompt').innerText.trim())"""


def run_all(page, base: str, notebook: str, timeout: float = 90) -> None:
    """Open a notebook in a fresh workspace, run all its cells, and wait for the last one."""
    open_notebook(page, base, notebook)
    _menu(page, "Run", "Run All Cells")
    until(_ran(page), timeout, f"every cell of {notebook} running", interval=0.5)


def run_to(page, notebook: str, cell_id: str, timeout: float = 90) -> None:
    """Run every cell above the cell `cell_id` (where a lesson asks for a click), and wait."""
    target = cell(page, notebook, cell_id)
    target.locator(".jp-InputPrompt").click()
    _menu(page, "Run", "Run All Above Selected Cell")
    until(_ran(page, 0, _index(notebook, cell_id)), timeout, f"{notebook}'s cells above the readback", 0.5)
    until(_idle(page), 30, "the kernel becoming idle")


def run_from(page, notebook: str, cell_id: str, timeout: float = 90) -> str:
    """Run cell `cell_id` (a lesson's readback) and every one below; the readback's output."""
    target = cell(page, notebook, cell_id)
    target.locator(".jp-InputPrompt").click()
    _menu(page, "Run", "Run Selected Cell and All Below")
    until(_ran(page, _index(notebook, cell_id)), timeout, f"{notebook}'s cells from the readback on", 0.5)
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, _errors(page)
    return target.locator(".jp-OutputArea-output").first.inner_text()


def _errors(page) -> str:
    return "\n".join(page.locator("[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts())


def test_notebook_00_shows_every_setup_check_ok(lab, page):
    run_all(page, lab, "00-start-here.ipynb")
    report = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    page.screenshot(path=ARTIFACTS / "00-start-here.png", full_page=True)
    assert report.count("[OK]") >= 10 and "[FAIL]" not in report
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert page.console_errors == []


def _kill_row(page, notebook: str, panel_cell: str, text: str):
    """The row of a kill panel (in the output of cell `panel_cell`) whose label holds `text`."""
    rows = cell(page, notebook, panel_cell).locator(
        ".widget-hbox", has=page.locator("button.widget-toggle-button")
    )
    row = rows.filter(has_text=text).first
    row.scroll_into_view_if_needed()
    return row


def test_lesson_02_reads_back_a_real_click_on_a_kill_toggle(lab, page):
    notebook = "02-send-heartbeats.ipynb"
    open_notebook(page, lab, notebook)
    run_to(page, notebook, "5ac80824")
    # the second beater's toggle (the first is the one the readback kills when nobody clicked)
    row = _kill_row(page, notebook, "792db312", "second_process")
    uuid = row.locator("code").inner_text().strip()
    row.locator("button.widget-toggle-button").click()
    until(lambda: _connections(uuid, "notify-listen") == 0, 10, "the clicked beater exiting")
    said = run_from(page, notebook, "5ac80824")
    page.screenshot(path=ARTIFACTS / "02-after-kill-click.png", full_page=True)
    assert "You killed second_process" in said and uuid in said, said
    assert "Nobody clicked" not in said, said
    # the state diagram as JupyterLab draws it (tests/test_diagrams.py checks its labels)
    diagram = cell(page, notebook, "191116e2").locator(".jp-RenderedMermaid").first
    diagram.scroll_into_view_if_needed()
    diagram.screenshot(path=ARTIFACTS / "02-state-diagram-in-jupyterlab.png")


def test_lesson_04_reads_back_a_real_click_on_a_kill_toggle(lab, page):
    notebook = "04-find-a-job.ipynb"
    open_notebook(page, lab, notebook)
    run_to(page, notebook, "51748129")
    row = _kill_row(page, notebook, "530fa269", "second_process 2.2.0")
    uuid = row.locator("code").inner_text().strip()
    row.locator("button.widget-toggle-button").click()
    until(lambda: _state(uuid) == "killed", 10, "the kill switch reaching the database")
    said = run_from(page, notebook, "51748129")
    page.screenshot(path=ARTIFACTS / "04-after-kill-click.png", full_page=True)
    assert "you clicked: kill second_process" in said and uuid in said, said


def test_lesson_05_reads_back_a_priority_really_typed(lab, page):
    notebook = "05-set-priorities.ipynb"
    open_notebook(page, lab, notebook)
    run_to(page, notebook, "7e068055")
    # busy, the last pipe job of the panel: 10, then Enter, as the lesson asks
    box = (
        cell(page, notebook, "de48bf3c")
        .locator(".widget-inline-hbox", has=page.locator("input"))
        .filter(has_text="pipe job")
        .last
    )
    box.scroll_into_view_if_needed()
    busy = int(box.locator("label").inner_text().split()[-1])
    box.locator("input").fill("10")
    box.locator("input").press("Enter")
    until(lambda: _priority(busy) == 10, 10, "the new priority reaching the database")
    said = run_from(page, notebook, "7e068055")
    page.screenshot(path=ARTIFACTS / "05-after-typing.png", full_page=True)
    assert f"you typed:\n  priority {busy}: 10" in said, said


LESSON_08 = "08-watch-a-request-flow.ipynb"
DASHBOARD_08, READBACK_08 = "3e1abd32", "8dcd44af"  # the dashboard's cell, the controls' readback


def _bars(page, notebook: str, cell_id: str) -> int:
    """How many bars the first figure in a cell's output draws."""
    return cell(page, notebook, cell_id).locator(".js-plotly-plot .bars .point").count()


def test_the_visual_lesson_draws_live_and_reads_back_real_clicks(lab, page):
    open_notebook(page, lab, LESSON_08)
    run_to(page, LESSON_08, READBACK_08)
    page.screenshot(path=ARTIFACTS / "08-before-the-clicks.png", full_page=True)
    plots = page.locator(".js-plotly-plot")
    assert plots.count() >= 4  # four figures, and the dashboard's
    for n in range(plots.count()):
        plots.nth(n).scroll_into_view_if_needed()
        plots.nth(n).screenshot(path=ARTIFACTS / f"08-figure-{n}.png")
    cell(page, LESSON_08, DASHBOARD_08).locator(".js-plotly-plot").first.screenshot(
        path=ARTIFACTS / "08-dashboard.png"
    )
    assert _bars(page, LESSON_08, DASHBOARD_08) > 0, "the live dashboard's timeline is blank"
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
    panel.get_by_text("show all (killed, stopped, stale too)").click()  # as the lesson's check expects

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

    # the lesson's readback reads both clicks, and its checks hold
    said = run_from(page, LESSON_08, READBACK_08)
    page.screenshot(path=ARTIFACTS / "08-after-the-readback.png", full_page=True)
    assert f"kill {uuid}: True" in said and f"priority {pipe_job}: 7" in said, said
    assert "nobody" not in said, said

    # Restart Kernel and Run All: the new dashboard draws too (its figure is a new widget)
    _menu(page, "Kernel", "Restart Kernel and Run All Cells…")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    until(lambda: not _ran(page)(), 30, "the cells running again")
    until(_ran(page), 120, f"every cell of {LESSON_08} running again", interval=0.5)
    timeline = cell(page, LESSON_08, DASHBOARD_08).locator(".js-plotly-plot").first
    timeline.scroll_into_view_if_needed()
    timeline.screenshot(path=ARTIFACTS / "08-dashboard-after-restart-and-run-all.png")
    assert _bars(page, LESSON_08, DASHBOARD_08) > 0, "the dashboard is blank after Restart Kernel and Run All"

    # a second dashboard in the same kernel (its cell run again, the run long over) draws too
    prompt = cell(page, LESSON_08, DASHBOARD_08).locator(".jp-InputPrompt")
    first = prompt.inner_text().strip()
    prompt.click()
    _menu(page, "Run", "Run Selected Cell")
    until(
        lambda: prompt.inner_text().strip() not in (first, "[*]:"), 30, "the dashboard's cell running again"
    )
    until(lambda: _bars(page, LESSON_08, DASHBOARD_08) > 0, 30, "a second dashboard drawing its timeline")
    assert page.console_errors == []


def _state(uuid: str) -> str | None:
    return heartbeats.states("single-call").set_index("process_uuid")["state"].get(uuid)


def _connections(fragment: str, poc: str = "single-call") -> int:
    """Open connections to a lab whose application name holds `fragment`."""
    with labs.connect(poc) as conn:
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
