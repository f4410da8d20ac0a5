"""Browser checks of small UI defects a new user met (issue: explore search, model drop zone, data
preview widths, standalone report's metrics table), in headless Chromium against the real app.

The run is a saved model imported into the app's runs folder, as in tests/test_browser_reuse.py.
Screenshots go to tests/artifacts/ui-*.png.
"""

from __future__ import annotations

import base64
import time

import pandas as pd
import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

bs.skip_without_browser()
from devkit.browser_support import browser, new_page, page  # noqa: E402,F401  (the shared fixtures)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from bs.serve_module(tmp_path_factory, stage_delay=0)


@pytest.fixture(scope="module")
def run_id(server, tmp_path_factory):
    from callbacks import page_runs
    from hercules_core import Hercules, HerculesConfig, prepare, save_model
    from hercules_core.clients.fakes import FakeEmbedder

    df = pd.read_csv(bs.text_data())
    ds = prepare(df.iloc[:300], text_column="text", id_column="id", labels_column="label")
    h = Hercules(HerculesConfig(level_cluster_counts=(12, 4)), text_embedder=FakeEmbedder(64)).fit(ds).hierarchy_
    path = tmp_path_factory.mktemp("model") / "model.json"
    save_model(h, path)
    url = "data:application/json;base64," + base64.b64encode(path.read_bytes()).decode()
    rid, message = page_runs.import_model(server.runs_dir, "model.json", url)
    assert rid, message
    return rid


def shot(page, name: str) -> None:
    bs.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(bs.ARTIFACTS / f"ui-{name}.png"), full_page=True)


def _outputs(request) -> str:
    return request.post_data or "" if "_dash-update-component" in request.url else ""


def test_explore_search_runs_as_you_type_once_per_pause(page, server, run_id):
    page.goto(f"{server.url}/explore?run={run_id}")
    page.wait_for_selector("#explore-scatter .js-plotly-plot", timeout=30_000)
    searches = []
    page.on("request", lambda r: searches.append(r) if "explore-search-results.children" in _outputs(r) else None)
    page.click("#explore-search")
    page.keyboard.type("love", delay=60)  # keystrokes faster than the pause the search waits for
    # the results come without Enter and without leaving the box
    page.wait_for_selector("#explore-search-results .search-hit", timeout=10_000)
    time.sleep(1.0)
    assert len(searches) == 1, [r.post_data for r in searches]
    assert page.evaluate("document.activeElement.id") == "explore-search"
    shot(page, "explore-search")
    # a further word after a pause is searched again, still without Enter
    page.keyboard.type(" x", delay=60)
    page.wait_for_selector("#explore-search-results .search-empty", timeout=10_000)
    time.sleep(0.6)
    assert len(searches) == 2
    assert not page.errors, page.errors


JS_DROP = """([selector, name, text]) => {
  const dt = new DataTransfer();
  dt.items.add(new File([text], name, {type: 'text/csv'}));
  const target = document.querySelector(selector);
  for (const type of ['dragenter', 'dragover', 'drop']) {
    target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
  }
}"""


def test_a_table_on_the_model_import_says_it_is_not_a_model(page, server, tmp_path):
    page.goto(server.url + "/runs")
    page.wait_for_selector("#model-upload")
    sent = []
    page.on("request", lambda r: sent.append(r) if "model-upload" in _outputs(r) or "/upload" in r.url else None)
    expected = ("is not a model file: a model is the model.json or .hercules bundle a run wrote; to cluster a table, "
                "use New run")
    # dropped on the box
    page.evaluate(JS_DROP, ["#model-upload", "data $&.csv", "id,text\n1,hello\n"])
    page.wait_for_selector("#model-upload-size-msg", state="visible", timeout=5_000)
    assert page.inner_text("#model-upload-size-msg") == f"data $&.csv {expected}."
    shot(page, "model-drop-csv")
    # chosen in the file dialog ("all files")
    table = tmp_path / "table.xlsx"
    table.write_bytes(b"PK\x03\x04 not really")
    page.set_input_files("#model-upload input[type=file]", str(table))
    page.wait_for_function("(t) => document.getElementById('model-upload-size-msg').innerText === t",
                           arg=f"table.xlsx {expected}.", timeout=5_000)
    time.sleep(0.5)
    assert not sent and not page.query_selector(".model-upload-ok, .model-upload-error")
    # a model file still goes through, and the message of the refused file goes away
    fake = tmp_path / "model.json"
    fake.write_text('{"format": "something-else"}')
    page.set_input_files("#model-upload input[type=file]", str(fake))
    page.wait_for_selector(".model-upload-error", timeout=15_000)
    assert not page.is_visible("#model-upload-size-msg")
    assert not page.errors, page.errors


def test_data_preview_gives_the_text_column_the_spare_width(page, server):
    page.goto(server.url + "/")
    page.set_input_files("#data-upload input[type=file]", str(bs.text_data()))
    page.wait_for_selector("#data-preview .ag-cell", timeout=30_000)
    time.sleep(0.5)
    widths = dict(page.evaluate("""() => Array.from(document.querySelectorAll('#data-preview .ag-header-cell'))
        .map(c => [c.getAttribute('col-id'), c.getBoundingClientRect().width])"""))
    grid = page.evaluate("document.querySelector('#data-preview .ag-body-viewport').clientWidth")
    assert set(widths) == {"id", "text", "label"}
    assert widths["text"] >= 0.6 * grid and widths["id"] < 150 and widths["label"] < 200, (widths, grid)
    assert sum(widths.values()) >= grid - 4  # no empty half
    # the long text wraps (a cell taller than one line), and its tooltip has the whole cell
    first = page.locator('#data-preview .ag-center-cols-container .ag-row[row-index="2"] [col-id="text"]')
    assert first.bounding_box()["height"] > 40
    first.hover()
    page.wait_for_selector(".ag-tooltip", timeout=5_000)
    assert page.inner_text(".ag-tooltip").startswith("In California, Bill Honig")
    shot(page, "data-preview")
    assert not page.errors, page.errors
