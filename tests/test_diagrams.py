"""Every Mermaid diagram of the lessons and the README, rendered by JupyterLab's Mermaid in Chromium."""

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from tests.conftest import REPO
from tests.tools import require, require_browser

# the Mermaid JupyterLab ships (jupyterlab/static/third-party-licenses.json names its version);
# .ci/run unpacks this one from npm: its dist/mermaid.min.js runs alone in a page
MERMAID_VERSION = "11.16.1"
MERMAID_JS = Path(os.environ.get("PGQUEUE_MERMAID_JS", "/opt/pgqueue-mermaid/package/dist/mermaid.min.js"))
MERMAID_INSTALL = (
    f"mkdir -p /opt/pgqueue-mermaid && cd /opt/pgqueue-mermaid && npm pack mermaid@{MERMAID_VERSION}"
    f" && tar xzf mermaid-{MERMAID_VERSION}.tgz package/dist/mermaid.min.js package/package.json"
)
ARTIFACTS = REPO / "test-artifacts" / "diagrams"
FENCE = re.compile(r"^```mermaid[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Two labels may touch (Mermaid packs them close); overlapping by more than this many pixels
# both ways makes one unreadable.
OVERLAP_PX = 2


def _diagrams() -> list[tuple[str, str]]:
    """(where, text) of every Mermaid block: a notebook's cell by number and id, or README.md."""
    found = []
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for number, cell in enumerate(nb.cells):
            for k, match in enumerate(FENCE.finditer(cell.source)):
                found.append((f"{path.name} cell {number} (id {cell.get('id')}) diagram {k + 1}", match[1]))
    for k, match in enumerate(FENCE.finditer((REPO / "README.md").read_text())):
        found.append((f"README.md diagram {k + 1}", match[1]))
    return found


DIAGRAMS = _diagrams()


def _slug(where: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", where).strip("-")


@pytest.fixture(scope="module")
def mermaid_page():
    """A Chromium page with Mermaid loaded (as JupyterLab configures it: no diagram on load)."""
    chromium = require_browser()
    require(f"Mermaid {MERMAID_VERSION} ({MERMAID_JS})", MERMAID_JS.is_file(), MERMAID_INSTALL)
    unpacked = json.loads((MERMAID_JS.parent.parent / "package.json").read_text())["version"]
    assert unpacked == MERMAID_VERSION, f"{MERMAID_JS} is Mermaid {unpacked}: {MERMAID_INSTALL}"
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as play:
        browser = play.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        page.set_content("<html><body style='background:white'><div id='out'></div></body></html>")
        page.add_script_tag(path=str(MERMAID_JS))
        page.evaluate("() => mermaid.initialize({startOnLoad: false})")
        yield page
        browser.close()


RENDER = """async ([id, text]) => {
  const out = document.getElementById('out');
  out.innerHTML = '';
  try {
    await mermaid.parse(text);
    const {svg} = await mermaid.render(id, text);
    out.innerHTML = svg;
  } catch (e) {
    document.getElementById(id)?.remove();
    document.getElementById('d' + id)?.remove();
    return {error: String(e && e.message || e)};
  }
  // every label's box: a node's text, an edge's label, a state's note
  // (a label nested in another of these classes is counted once, as its outermost box)
  const labels = '.edgeLabel, .nodeLabel, .noteText, .messageText, .labelText';
  const boxes = [];
  for (const el of out.querySelectorAll(labels)) {
    if (el.parentElement.closest(labels)) continue;
    const r = el.getBoundingClientRect();
    const text = el.textContent.trim();
    if (text && r.width > 0 && r.height > 0) boxes.push({text, x: r.x, y: r.y, w: r.width, h: r.height});
  }
  // every node's shape (a flowchart's box, a state, a sequence diagram's participant), for the
  // edge labels that must not lie on one
  const nodes = [];
  for (const el of out.querySelectorAll('g.node, g.stateGroup, rect.actor')) {
    const r = el.getBoundingClientRect();
    const text = el.textContent.trim();
    if (r.width > 0 && r.height > 0) nodes.push({text, x: r.x, y: r.y, w: r.width, h: r.height});
  }
  const edges = [...out.querySelectorAll('.edgeLabel')].map(el => {
    const r = el.getBoundingClientRect();
    return {text: el.textContent.trim(), x: r.x, y: r.y, w: r.width, h: r.height};
  }).filter(b => b.text && b.w > 0 && b.h > 0);
  return {boxes, nodes, edges};
}"""


def _on_nodes(edges: list[dict], nodes: list[dict]) -> list[str]:
    """Edge labels drawn over a node (a state or a box), which hides the node's text or border."""
    seen = []
    for a in edges:
        for b in nodes:
            dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if dx > OVERLAP_PX and dy > OVERLAP_PX and not (b["w"] > 3 * a["w"] and b["h"] > 3 * a["h"]):
                seen.append(f"{a['text']!r} on node {b['text'][:40]!r} ({dx:.0f} x {dy:.0f} px)")
    return seen


def _overlaps(boxes: list[dict]) -> list[str]:
    """Pairs of labels drawn over each other, one nested in the other not counted (a node's text)."""
    seen = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            nested = a["text"] in b["text"] or b["text"] in a["text"]
            if dx > OVERLAP_PX and dy > OVERLAP_PX and not nested:
                seen.append(f"{a['text']!r} and {b['text']!r} ({dx:.0f} x {dy:.0f} px)")
    return seen


def test_the_pinned_mermaid_is_the_one_jupyterlab_ships():
    import jupyterlab

    licenses = Path(jupyterlab.__file__).parent / "static" / "third-party-licenses.json"
    shipped = {p["name"]: p["versionInfo"] for p in json.loads(licenses.read_text())["packages"]}
    assert shipped["mermaid"] == MERMAID_VERSION, (
        f"JupyterLab ships Mermaid {shipped['mermaid']}: set MERMAID_VERSION to it"
    )


def test_the_lessons_have_diagrams():
    assert len(DIAGRAMS) >= 15, f"only {len(DIAGRAMS)} Mermaid diagrams found: the fence regex broke?"


@pytest.mark.parametrize(("where", "text"), DIAGRAMS, ids=[_slug(w) for w, _ in DIAGRAMS])
def test_the_diagram_renders_with_no_labels_over_each_other(mermaid_page, where, text):
    result = mermaid_page.evaluate(RENDER, [f"m{abs(hash(where))}", text])
    if "error" in result:
        # Mermaid's message points at the line of the diagram (its lines count from 1)
        pytest.fail(f"{where}: Mermaid cannot render it:\n{result['error']}", pytrace=False)
    svg = mermaid_page.locator("#out svg")
    svg.screenshot(path=ARTIFACTS / f"{_slug(where)}.png")
    overlaps = _overlaps(result["boxes"]) + _on_nodes(result["edges"], result["nodes"])
    assert not overlaps, (
        f"{where}: labels drawn over each other: {'; '.join(overlaps)} "
        f"(see {(ARTIFACTS / _slug(where)).relative_to(REPO)}.png)"
    )
    (ARTIFACTS / f"{_slug(where)}.json").write_text(json.dumps(result["boxes"], indent=1))
