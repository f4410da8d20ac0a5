"""Browser journeys in headless Debian Chromium (Playwright driving /usr/bin/chromium).

Each journey uploads data, configures, runs in the background while the progress bar moves, clicks
a bubble (highlight + pane), opens a tree node, searches, downloads the model JSON and memberships
CSV, and loads the model JSON back into the explorer. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

bs.skip_without_browser()
from devkit.browser_support import browser, page  # noqa: E402,F401  (the shared fixtures)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from bs.serve_module(tmp_path_factory)


def shot(page, name: str) -> None:
    bs.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(bs.ARTIFACTS / f"{name}.png"), full_page=True)


# ----------------------------------------------------------------------------- steps
def upload(page, server, *files: Path) -> None:
    page.goto(server.url + "/")
    page.set_input_files("#data-upload input[type=file]", [str(f) for f in files])
    page.wait_for_selector(".upload-ok, .upload-error", timeout=30_000)


def configure(page, levels: str, **models: str) -> None:
    page.fill('input[id*=\'"levels_text"\']', levels)
    for kind, model in models.items():
        page.select_option(f'select[id*=\'"{kind}"\']', model)
    page.wait_for_selector("#cost-preview .cost-text")


def run_and_watch(page, name: str, timeout: float = 240) -> tuple[str, list[int]]:
    """Start the run; return its id and the progress values seen while it ran."""
    page.click("#start-run")
    page.wait_for_selector("#job-panel .run-id", timeout=10_000)
    run_id = page.get_attribute("#job-panel .run-id", "title")
    seen, shot_taken, t0 = [], False, time.time()
    while time.time() - t0 < timeout:
        v = page.get_attribute("#job-progress .progress-bar", "aria-valuenow")
        seen.append(int(float(v or 0)))
        if not shot_taken and 0 < seen[-1] < 100:
            shot(page, f"{name}-2-progress")
            shot_taken = True
        if page.query_selector(".run-result"):
            break
        time.sleep(0.15)
    return run_id, seen


def click_biggest_bubble(page) -> str:
    sizes = page.evaluate(bs.JS_TRACE, 1)["marker"]["size"]
    j = max(range(len(sizes)), key=lambda i: sizes[i])
    x, y = page.evaluate(bs.JS_POINT, [1, j])
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    level = page.evaluate(bs.JS_TRACE, 1)["customdata"][j][0].split(":")[0]
    key = f"{level}:{j}"
    page.wait_for_selector(f'.cluster-pane[data-key="{key}"]', timeout=15_000)
    return key


def explore_checks(page, name: str) -> None:
    page.wait_for_selector("#explore-scatter .js-plotly-plot", timeout=30_000)
    page.wait_for_selector(".cluster-pane.overview")
    shot(page, f"{name}-3-explore")
    key = click_biggest_bubble(page)
    # highlight in the scatter: the selection at full opacity, the rest faded
    opacity = page.evaluate(bs.JS_TRACE, 1)["marker"]["opacity"]
    j = int(key.split(":")[1])
    assert isinstance(opacity, list) and opacity[j] == 1 and min(opacity) < 0.5
    assert page.evaluate(bs.JS_TRACE, 5)["customdata"][0][0] == key
    # cluster pane and tree follow
    assert page.inner_text(".cluster-pane .pane-id")
    assert "Representative samples" in page.inner_text("#explore-pane")
    page.wait_for_selector(".tree-selected")
    # sunburst emphasises the same node
    colors = page.evaluate("() => document.querySelector('#explore-sunburst .js-plotly-plot').data[0].marker.colors")
    assert "rgba(200,200,200,0.35)" in colors
    shot(page, f"{name}-4-selected")
    # open a tree node by its toggle: its children appear
    toggle = page.locator(".tree-node > .tree-toggle").filter(has_text="▸").first
    node_key = toggle.evaluate("el => el.parentElement.dataset.key")
    toggle.click()
    page.wait_for_function(
        "(k) => { const n = document.querySelector(`.tree-node[data-key='${k}'] > .tree-kids`);"
        " return n && n.children.length > 0; }", arg=node_key, timeout=10_000)
    # a click on a tree label selects it
    label = page.locator(f".tree-node[data-key='{node_key}'] > .tree-label")
    label.click()
    page.wait_for_selector(f'.cluster-pane[data-key="{node_key}"]', timeout=10_000)
    # search for a word of that title; a hit jumps to it
    title = page.inner_text(".cluster-pane .pane-title")
    word = max(title.replace(",", " ").split(), key=len)
    page.fill("#explore-search", word)
    page.press("#explore-search", "Enter")
    page.wait_for_selector(".search-hit", timeout=10_000)
    page.click(".search-hit >> nth=0")
    hit_key = page.get_attribute(".search-hit >> nth=0", "id")
    page.wait_for_function("() => document.querySelector('.cluster-pane').dataset.key !== ''", timeout=10_000)
    assert hit_key and "search-hit" in hit_key
    shot(page, f"{name}-5-search")


def download(page, file: str, dest: Path) -> Path:
    with page.expect_download() as d:
        page.click(f'.download-link[data-file="{file}"]')
    target = dest / d.value.suggested_filename
    d.value.save_as(target)
    return target


def check_downloads(page, run_id: str, n_items: int, tmp_path: Path) -> Path:
    from hercules_core import load_model

    model = download(page, "model.json", tmp_path)
    assert model.name == f"hercules-{run_id}-model.json"
    h = load_model(model)
    assert h.n_items == n_items
    members = pd.read_csv(download(page, "memberships.csv", tmp_path), dtype=str)
    assert len(members) == n_items and list(members["item_id"]) == list(h.levels[0].ids)
    assert f"L{h.top_level}_title" in members.columns
    return model


def reload_model(page, server, model: Path, name: str) -> None:
    page.goto(server.url + "/runs")
    page.wait_for_selector(".runs-table")
    shot(page, f"{name}-7-runs")
    page.set_input_files("#model-upload input[type=file]", str(model))
    page.wait_for_selector(".model-upload-ok", timeout=60_000)
    page.click("#imported-explore")
    page.wait_for_selector("#explore-scatter .js-plotly-plot", timeout=30_000)
    click_biggest_bubble(page)


def journey(page, server, tmp_path, name, files, levels, n_items, what=None, labels=None, **models):
    upload(page, server, *files)
    assert page.query_selector(".upload-ok"), page.inner_text("#data-upload-msg")
    if what == "numeric":
        page.check("#data-what input[value=numeric]")
    if labels is not None:
        page.set_input_files("#labels-upload input[type=file]", str(labels))
        page.wait_for_selector("#labels-upload-msg .text-success", timeout=15_000)
    configure(page, levels, **models)
    shot(page, f"{name}-1-new-run")
    run_id, seen = run_and_watch(page, name)
    result = page.inner_text(".run-result")
    assert "Run finished" in result, result
    assert any(0 < v < 100 for v in seen) and seen[-1] == 100, seen
    assert len({v for v in seen if 0 < v < 100}) >= 3, f"the bar did not move: {sorted(set(seen))}"
    page.click("#result-explore")
    explore_checks(page, name)
    model = check_downloads(page, run_id, n_items, tmp_path)
    page.goto(f"{server.url}/evaluate?run={run_id}")
    page.wait_for_selector(".metrics-table")
    page.wait_for_selector("#eval-confusion .js-plotly-plot, #eval-confusion .no-labels", timeout=20_000)
    shot(page, f"{name}-6-evaluate")
    reload_model(page, server, model, name)
    assert page.errors == [], page.errors


def test_text_journey(page, server, tmp_path):
    data = bs.text_data()
    n = len(pd.read_csv(data))
    journey(page, server, tmp_path, "text", [data], "30,8", n, text_embedder="minilm", llm="keywords")


def test_numeric_journey(page, server, tmp_path):
    journey(page, server, tmp_path, "numeric", [bs.numeric_data(tmp_path)], "12,4", 178, what="numeric",
            text_embedder="fake-hash", llm="fake")


def test_image_journey(page, server, tmp_path):
    zpath, lpath = bs.image_data(tmp_path)
    journey(page, server, tmp_path, "images", [zpath], "20,6", 400, labels=lpath, text_embedder="fake-hash",
            image_embedder="image-features", llm="keywords")


def test_cancel_stops_the_work(page, server):
    upload(page, server, bs.text_data())
    configure(page, "30,8", text_embedder="minilm")
    page.click("#start-run")
    page.wait_for_selector("#job-panel .run-id")
    run_id = page.get_attribute("#job-panel .run-id", "title")
    page.wait_for_function("() => +document.querySelector('#job-progress .progress-bar')"
                           ".getAttribute('aria-valuenow') > 0", timeout=30_000)
    page.click("#job-cancel")
    page.wait_for_selector(".run-result", timeout=15_000)
    assert "cancelled" in page.inner_text(".run-result")
    rdir = server.runs_dir / run_id
    time.sleep(3)  # a job that was not really stopped would go on writing
    from callbacks import runstore

    assert runstore.read_status(rdir)["state"] == "cancelled"
    assert not (rdir / "model.json").exists()
    page.goto(server.url + "/runs")
    page.wait_for_selector(f'tr[data-run="{run_id}"] .run-state')
    assert page.inner_text(f'tr[data-run="{run_id}"] .run-state') == "cancelled"
    shot(page, "cancel-runs")
    assert page.errors == [], page.errors


def test_bad_uploads_explain_themselves(page, server, tmp_path):
    bad = tmp_path / "notes.pdf"
    bad.write_bytes(b"%PDF-1.4")
    page.goto(server.url + "/")  # refused when the upload starts, from its name: nothing is sent
    page.set_input_files("#data-upload input[type=file]", str(bad))
    page.wait_for_selector("#data-upload-size-msg", state="visible", timeout=30_000)
    assert "Unsupported file type" in page.inner_text("#data-upload-size-msg")
    broken = tmp_path / "rows.jsonl"
    broken.write_text('{"text": "ok"}\n{not json\n')
    page.set_input_files("#data-upload input[type=file]", str(broken))
    page.wait_for_selector("text=rows.jsonl line 2 is not valid JSON", timeout=15_000)
    page.click("#start-run")
    page.wait_for_selector(".start-error")
    assert "Upload a data file first" in page.inner_text(".start-error")
    shot(page, "bad-upload")
    page.goto(server.url + "/runs")
    fake = tmp_path / "model.json"
    fake.write_text('{"format": "something-else"}')
    page.set_input_files("#model-upload input[type=file]", str(fake))
    page.wait_for_selector(".model-upload-error", timeout=15_000)
    assert "not a HERCULES model JSON" in page.inner_text(".model-upload-error")
    # the browser logs the refusal of notes.pdf (HTTP 400 from /upload); nothing else went wrong
    assert [e for e in page.errors if "status of 400" not in e] == [], page.errors


def test_two_sessions_run_at_once(browser, server, tmp_path):
    results, errors = {}, []
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    pages = [c.new_page() for c in contexts]
    for p in pages:
        bs.watch_console(p, errors)
    # playwright's sync API is not thread-safe: interleave the two sessions from this thread
    upload(pages[0], server, bs.text_data())
    configure(pages[0], "12,4", text_embedder="fake-hash", llm="keywords")
    upload(pages[1], server, bs.numeric_data(tmp_path))
    pages[1].check("#data-what input[value=numeric]")
    configure(pages[1], "10,3", text_embedder="fake-hash", llm="keywords")
    for p in pages:
        p.click("#start-run")
    for i, p in enumerate(pages):
        p.wait_for_selector("#job-panel .run-id")
        results[i] = p.get_attribute("#job-panel .run-id", "title")
    for p in pages:
        p.wait_for_selector(".run-result", timeout=240_000)
        assert "Run finished" in p.inner_text(".run-result")
    assert results[0] != results[1]
    from callbacks import runstore
    from hercules_core import load_model

    s0, s1 = (runstore.read_status(server.runs_dir / results[i]) for i in range(2))
    assert s0["started_ts"] < s1["finished_ts"] and s1["started_ts"] < s0["finished_ts"], "the runs did not overlap"
    assert s0["pid"] != s1["pid"]

    h0 = load_model(server.runs_dir / results[0] / "model.json")
    h1 = load_model(server.runs_dir / results[1] / "model.json")
    assert (h0.dataset.modality, len(h0.levels[1])) == ("text", 12)
    assert (h1.dataset.modality, len(h1.levels[1]), h1.n_items) == ("numeric", 10, 178)
    for i, p in enumerate(pages):
        p.click("#result-explore")
        p.wait_for_selector("#explore-scatter .js-plotly-plot", timeout=30_000)
        assert ("text items" if i == 0 else "numeric items") in p.inner_text("#explore-header")
    for c in contexts:
        c.close()
    assert errors == [], errors
