"""Curating a real run in headless Chromium: merge, split, move, undo and a title edit through the
explore page, checked in the scatter, the tree and the downloaded memberships CSV.

The run is a saved model (600 fortune texts, the deterministic ``FakeEmbedder``) imported into the
app's runs folder; its re-titling uses the keyword summariser (an imported model has no LLM id).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

bs.skip_without_browser()
from devkit.browser_support import browser, page  # noqa: E402,F401  (the shared fixtures)

BUBBLES = 1  # figures.T_BUBBLES
# the page revision the last edit's message carries (-1 before any)
JS_REV = "() => { const m = document.querySelector('#curate-msg [data-rev]'); return m ? +m.dataset.rev : -1; }"
JS_BUBBLE_IDS = "() => document.querySelector('#explore-scatter .js-plotly-plot').data[1].customdata.map(c => c[1])"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from bs.serve_module(tmp_path_factory, stage_delay=0)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return bs.small_text_model(tmp_path_factory.mktemp("model"))


def new_run(server, model_file) -> str:
    return bs.import_run(server.runs_dir, model_file)


def bubble_ids(page) -> list[str]:
    return page.evaluate(JS_BUBBLE_IDS)


def click_cluster(page, cid: str) -> None:
    """Click the bubble of cluster ``cid`` and wait until the pane shows it."""
    j = bubble_ids(page).index(cid)
    x, y = page.evaluate(bs.JS_POINT, [BUBBLES, j])
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    page.wait_for_function("(id) => { const b = document.querySelector('.cluster-pane .pane-id');"
                           " return b && b.innerText === id; }", arg=cid, timeout=15_000)


def choose(page, *cids: str) -> None:
    page.click("#curate-clear")
    page.wait_for_selector("#curate-chips .curate-chip", state="detached", timeout=10_000)
    for n, cid in enumerate(cids, 1):
        click_cluster(page, cid)
        page.click("#curate-add")
        page.wait_for_function("(n) => document.querySelectorAll('#curate-chips .curate-chip').length === n",
                               arg=n, timeout=10_000)


def do(page, button: str, count: int) -> str:
    """Click an edit button; wait for its message and for ``count`` bubbles; return the message."""
    page.wait_for_selector(f"#{button}:not([disabled])", timeout=10_000)
    rev = page.evaluate(JS_REV)
    page.click(f"#{button}")
    page.wait_for_function(f"(r) => ({JS_REV})() > r", arg=rev, timeout=30_000)  # this edit's answer
    assert page.locator("#curate-msg .curate-error").count() == 0, page.inner_text("#curate-msg")
    page.wait_for_function("(n) => document.querySelector('#explore-scatter .js-plotly-plot').data[1].x.length === n",
                           arg=count, timeout=30_000)
    return page.inner_text("#curate-msg")


def settled(page) -> None:
    """No cluster marked "re-titling…" any more (the background titles arrived by polling)."""
    page.wait_for_function("() => !document.body.innerText.includes('re-titling…')", timeout=30_000)


def memberships(page, dest: Path) -> pd.DataFrame:
    with page.expect_download() as d:
        page.click('.download-link[data-file="memberships.csv"]')
    target = dest / f"m{len(list(dest.iterdir()))}.csv"
    d.value.save_as(target)
    return pd.read_csv(target, dtype=str)


def test_curation_journey(page, server, model_file, tmp_path):
    from hercules_core import load_model

    run_id = new_run(server, model_file)
    h0 = load_model(model_file)
    lv = h0.levels[1]
    a, b = next((lv.ids[j], lv.ids[k]) for j in range(len(lv)) for k in range(j + 1, len(lv))
                if lv.parent[j] == lv.parent[k])
    page.goto(f"{server.url}/explore?run={run_id}")
    page.wait_for_selector("#explore-scatter .js-plotly-plot", timeout=30_000)
    page.wait_for_selector(".cluster-pane.overview")
    assert page.locator("#curate-merge").is_disabled() and page.locator("#curate-undo").is_disabled()

    # merge two siblings: one bubble fewer, the merged cluster selected in the tree, the CSV follows
    choose(page, a, b)
    assert "Merge" in do(page, "curate-merge", 19)
    ids = bubble_ids(page)
    assert a not in ids and b not in ids
    merged = next(c for c in ids if c not in lv.ids)
    page.wait_for_function("(id) => { const t = document.querySelector('.tree-selected .tree-id');"
                           " return t && t.innerText === id; }", arg=merged, timeout=15_000)
    settled(page)
    assert page.inner_text(".tree-selected .tree-title") != ""
    df = memberships(page, tmp_path)
    assert set(df["L1_cluster_id"]) == set(ids)
    assert (df["L1_cluster_id"] == merged).sum() == int(h0.cluster(a).size + h0.cluster(b).size)

    # split it in two: the edit selection is the merged cluster already
    page.fill("#curate-split-k", "2")
    do(page, "curate-split", 20)
    parts = [c for c in bubble_ids(page) if c not in lv.ids and c != merged]
    assert len(parts) == 2 and merged not in bubble_ids(page)
    settled(page)

    # move one part under another parent, chosen in the "Move to…" list
    choose(page, parts[0])
    options = page.eval_on_selector_all("#curate-move-to option", "os => os.map(o => o.value).filter(v => v)")
    parent_before = memberships(page, tmp_path).query("L1_cluster_id == @parts[0]")["L2_cluster_id"].iloc[0]
    assert options and parent_before not in options
    page.select_option("#curate-move-to", options[0])
    do(page, "curate-move", 20)
    settled(page)
    moved = memberships(page, tmp_path).query("L1_cluster_id == @parts[0]")
    assert set(moved["L2_cluster_id"]) == {options[0]}

    # undo the move: back under its old parent (the scatter keeps its 20 bubbles)
    do(page, "curate-undo", 20)
    back = memberships(page, tmp_path).query("L1_cluster_id == @parts[0]")
    assert set(back["L2_cluster_id"]) == {parent_before}
    page.wait_for_selector("#curate-redo:not([disabled])", timeout=10_000)
    assert "Move" in page.inner_text("#curate-log") or page.locator(".curate-log-entry").count() >= 2

    # a title edit on the curated hierarchy: pane, tree and the CSV show it
    click_cluster(page, parts[1])
    if page.locator(".edit-form").get_attribute("open") is None:
        page.click(".edit-toggle")
    page.fill("#edit-title", "Curated by hand")
    page.fill("#edit-description", "Typed in the browser.")
    page.click("#edit-save")
    page.wait_for_selector("#edit-msg .edit-ok", timeout=15_000)
    page.wait_for_function("() => document.querySelector('.tree-selected .tree-title').innerText === 'Curated by hand'",
                           timeout=15_000)
    df = memberships(page, tmp_path)
    assert set(df.loc[df["L1_cluster_id"] == parts[1], "L1_title"]) == {"Curated by hand"}
    assert set(df["L1_cluster_id"]) == set(bubble_ids(page)) and len(set(df["L1_cluster_id"])) == 20
    bs.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(bs.ARTIFACTS / "curate-journey.png"), full_page=True)
    assert page.errors == [], page.errors


def test_an_llm_edit_shows_its_cost_and_waits_for_the_ok(page, server, model_file):
    from callbacks import runstore
    from hercules_core import load_model

    run_id = new_run(server, model_file)
    # as if the app had run it with an OpenAI-compatible LLM (none is reachable here)
    runstore.write_json_atomic(server.runs_dir / run_id / "spec.json", {"models": {"llm": "openai"}})
    h0 = load_model(model_file)
    lv = h0.levels[1]
    a, b = next((lv.ids[j], lv.ids[k]) for j in range(len(lv)) for k in range(j + 1, len(lv))
                if lv.parent[j] == lv.parent[k])
    model = server.runs_dir / run_id / "model.json"
    before = model.read_bytes()
    page.goto(f"{server.url}/explore?run={run_id}")
    page.wait_for_selector("#explore-scatter .js-plotly-plot", timeout=30_000)
    choose(page, a, b)
    page.click("#curate-merge")
    page.wait_for_selector("#curate-confirm-text", timeout=15_000)
    text = page.inner_text("#curate-confirm-text")
    assert "LLM call" in text and "openai" in text
    page.click("#curate-confirm-cancel")
    page.wait_for_selector("#curate-confirm-text", state="detached", timeout=10_000)
    assert model.read_bytes() == before and len(bubble_ids(page)) == 20  # cancelled: nothing happened
    page.click("#curate-merge")
    page.wait_for_selector("#curate-confirm-ok", timeout=15_000)
    rev = page.evaluate(JS_REV)
    page.click("#curate-confirm-ok")
    page.wait_for_function(f"(r) => ({JS_REV})() > r", arg=rev, timeout=30_000)
    page.wait_for_function("() => document.querySelector('#explore-scatter .js-plotly-plot').data[1].x.length === 19",
                           timeout=30_000)
    # the LLM cannot be reached: the re-titling says so, the structure stays with placeholder titles
    page.wait_for_selector("#curate-retitle-msg .curate-error", timeout=30_000)
    assert "Re-titling failed" in page.inner_text("#curate-retitle-msg")
    assert page.errors == [], page.errors
