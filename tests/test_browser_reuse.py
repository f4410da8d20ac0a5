"""Browser journeys of the reuse features in headless Chromium: edit a title (two tabs at once,
bad edits), assign new data to a finished run, download the standalone report and open it from disk.

The run is a saved model imported into the app's runs folder (the full upload-and-run journey is
tests/test_browser.py); its embedder is the registry's deterministic ``fake-hash``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

bs.skip_without_browser()
from devkit.browser_support import browser, new_page, page  # noqa: E402,F401  (the shared fixtures)

XSS = '<img src=x onerror="window.__xss=1">'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from bs.serve_module(tmp_path_factory, stage_delay=0)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return bs.small_text_model(tmp_path_factory.mktemp("model"))


def new_run(server, model_file) -> str:
    return bs.import_run(server.runs_dir, model_file)



def shot(page, name: str) -> None:
    bs.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(bs.ARTIFACTS / f"reuse-{name}.png"), full_page=True)


def open_explore(page, server, run_id) -> None:
    page.goto(f"{server.url}/explore?run={run_id}")
    page.wait_for_selector("#explore-scatter .js-plotly-plot", timeout=30_000)
    page.wait_for_selector(".cluster-pane.overview")


def click_bubble(page, j: int) -> str:
    x, y = page.evaluate(bs.JS_POINT, [1, j])
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    key = page.evaluate(bs.JS_TRACE, 1)["customdata"][j][0]
    page.wait_for_selector(f'.cluster-pane[data-key="{key}"]', timeout=15_000)
    page.wait_for_selector(f'.edit-form[data-key="{key}"]', timeout=15_000)
    return key


def edit(page, title: str, description: str, expect: str) -> str:
    if page.locator(".edit-form").get_attribute("open") is None:
        page.click(".edit-toggle")
    page.fill("#edit-title", title)
    page.fill("#edit-description", description)
    page.click("#edit-save")
    page.wait_for_selector(f"#edit-msg .{expect}", timeout=15_000)
    return page.inner_text("#edit-msg")


def download(page, selector: str, dest: Path) -> Path:
    with page.expect_download() as d:
        page.click(selector)
    target = dest / d.value.suggested_filename
    d.value.save_as(target)
    return target


def test_edit_journey(page, browser, server, model_file, tmp_path):
    run_id = new_run(server, model_file)
    model_path = server.runs_dir / run_id / "model.json"
    open_explore(page, server, run_id)
    key = click_bubble(page, 0)
    level, index = (int(x) for x in key[1:].split(":"))
    assert edit(page, XSS, "Typed by hand.\nSecond line.", "edit-ok").startswith("Saved")
    cid = f"L{level}_{index}"
    # shown at once: pane, tree, scatter and sunburst, as text
    page.wait_for_function("(t) => document.querySelector('.cluster-pane .pane-title').innerText === t", arg=XSS)
    assert page.inner_text(".tree-selected .tree-title") == XSS
    page.wait_for_function("(t) => document.querySelector('#explore-scatter .js-plotly-plot').data[1]"
                           ".customdata[%d][2] === t" % index, arg=XSS.replace("<", "&lt;").replace(">", "&gt;"))
    labels = page.evaluate("() => document.querySelector('#explore-sunburst .js-plotly-plot').data[0].labels")
    assert any(lbl.startswith("&lt;img") for lbl in labels)
    shot(page, "edit-saved")
    # every download carries the edit
    members = pd.read_csv(download(page, '.download-link[data-file="memberships.csv"]', tmp_path), dtype=str)
    assert XSS in set(members[f"L{level}_title"])
    assert f"by edited] {XSS} — Typed by hand. Second line." in \
        download(page, '.download-link[data-file="hierarchy.txt"]', tmp_path).read_text()
    report = download(page, '.download-link[data-file="report.html"]', tmp_path)
    saved = json.loads(model_path.read_text())
    assert saved["edits"][cid]["original"]["source"] != "edited"
    # bad edits say why and change nothing
    before = model_path.read_bytes()
    assert "cannot be empty" in edit(page, "   ", "x", "edit-error")
    assert "10,240 characters" in edit(page, "y" * 10_240, "x", "edit-error")
    assert model_path.read_bytes() == before
    # the report opened from disk shows the edited title as text
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert page.text_content(f'.node[data-key="{level}:{index}"] .ttl') == XSS
    assert page.evaluate("window.__xss") is None
    assert page.errors == [], page.errors


def test_two_tabs_edit_different_clusters_at_once(browser, server, model_file):
    run_id = new_run(server, model_file)
    pages = [new_page(browser) for _ in range(2)]
    for j, p in enumerate(pages):
        open_explore(p, server, run_id)
        click_bubble(p, j)
        p.click(".edit-toggle")
        p.fill("#edit-title", f"Tab {j} title")
        p.fill("#edit-description", f"Written in tab {j}.")
    for p in pages:  # both saves in flight together
        p.click("#edit-save")
    for p in pages:
        p.wait_for_selector("#edit-msg .edit-ok", timeout=15_000)
    from hercules_core import load_model

    h = load_model(server.runs_dir / run_id / "model.json")
    keys = [pages[j].evaluate(bs.JS_TRACE, 1)["customdata"][j][0] for j in range(2)]
    for j, key in enumerate(keys):
        level, index = (int(x) for x in key[1:].split(":"))
        assert h.levels[level].titles[index] == f"Tab {j} title"
        assert h.levels[level].sources[index] == "edited"
    assert len(h.edits) == 2
    errors = [e for p in pages for e in p.errors]
    for p in pages:
        p.context.close()
    assert errors == [], errors


def test_assign_journey(page, server, model_file, tmp_path):
    run_id = new_run(server, model_file)
    df = pd.read_csv(bs.text_data())
    new = df.iloc[600:660][["id", "text"]].rename(columns={"id": "ticket"})
    path = tmp_path / "next_month.csv"
    new.to_csv(path, index=False)
    open_explore(page, server, run_id)
    page.click(".assign-toggle")
    page.set_input_files("#assign-upload input[type=file]", str(path))
    page.wait_for_selector(".assign-upload-ok", timeout=30_000)
    assert page.input_value("#assign-text-col") == "text"
    page.select_option("#assign-id-col", "ticket")
    page.click("#assign-start")
    page.wait_for_selector(".assign-done", timeout=120_000)
    assert "60 items assigned" in page.inner_text(".assign-done")
    page.wait_for_selector(".assign-grid .ag-row", timeout=15_000)
    header = page.inner_text(".assign-grid .ag-header")
    assert "distance" in header and "novel" in header and "L2_title" in header
    # the new items are drawn into the scatter
    page.wait_for_function("() => (document.querySelector('#explore-scatter .js-plotly-plot').data[6] || {x: []})"
                           ".x.length === 60", timeout=15_000)
    shot(page, "assigned")
    out = pd.read_csv(download(page, ".assign-download", tmp_path), dtype=str)
    assert out["item_id"].tolist() == new["ticket"].astype(str).tolist()
    assert list(out.columns) == ["item_id", "L1_cluster_id", "L1_title", "L2_cluster_id", "L2_title", "distance",
                                 "novel"]
    # bad input: a table without texts, and images for a text model
    bad = tmp_path / "numbers.csv"
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(bad, index=False)
    page.set_input_files("#assign-upload input[type=file]", str(bad))
    _wait_uploaded(page, "numbers.csv")  # not the message of the upload before it: then Assign would take that one
    page.click("#assign-start")
    page.wait_for_selector(".assign-error", timeout=60_000)
    assert "Pick the column that holds the texts" in page.inner_text(".assign-error")
    zpath, _ = bs.image_data(tmp_path, n=4)
    page.set_input_files("#assign-upload input[type=file]", str(zpath))
    _wait_uploaded(page, zpath.name)
    page.click("#assign-start")
    page.wait_for_function("() => document.querySelector('.assign-error') && document.querySelector('.assign-error')"
                           ".innerText.includes('clusters text items, but the upload holds image items')",
                           timeout=60_000)
    assert page.errors == [], page.errors


def test_report_journey(page, server, model_file, tmp_path):
    run_id = new_run(server, model_file)
    open_explore(page, server, run_id)
    report = download(page, '.download-link[data-file="report.html"]', tmp_path)
    assert report.name == f"hercules-{run_id}-report.html"
    requests = []  # what the report's own document asks for (a late callback of the explorer left behind is not)
    page.on("request", lambda r: requests.append(r.url) if r.frame.url.startswith("file:") else None)
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.click('.node[data-key="2:0"]')
    assert page.locator(".node.related").count() >= 1
    page.fill("#search", "L1_3")
    page.click("#results .hit >> nth=0")
    assert page.get_attribute(".node.sel", "data-key") == "1:3"
    shot(page, "report")
    assert [u for u in requests if not u.startswith("file:")] == []
    assert page.errors == [], page.errors


def _wait_uploaded(page, name: str) -> None:
    """Wait until the assign panel says ``name`` was uploaded."""
    page.wait_for_function("(name) => { const ok = document.querySelector('.assign-upload-ok');"
                           " return ok && ok.innerText.includes(name); }", arg=name, timeout=30_000)
