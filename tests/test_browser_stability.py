"""Per-cluster stability in the explorer, in headless Chromium against the real app: the tree marks
the clusters a re-run would not reproduce, the pane says "stable in m of B re-runs", and the
scatter can be coloured by stability.

The run is a real fit (planted blobs: level 1 finds them, level 2 pairs six equidistant blobs
into three, which a re-run does differently) imported into the app's runs folder, as in
tests/test_browser_ui.py. Screenshots go to tests/artifacts/stability-*.png.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

bs.skip_without_browser()
from devkit.browser_support import browser, new_page, page  # noqa: E402,F401  (the shared fixtures)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from bs.serve_module(tmp_path_factory, stage_delay=0)


@pytest.fixture(scope="module")
def fitted(server, tmp_path_factory):
    from callbacks import page_runs
    from hercules_core import Hercules, HerculesConfig, save_model
    from hercules_core.dataset import Dataset

    rng = np.random.default_rng(1)
    X = np.eye(6, 8) * 30
    X = X[rng.integers(0, 6, 600)] + rng.normal(size=(600, 8))
    ds = Dataset(ids=[str(i) for i in range(600)], modality="numeric", numeric=X.astype(np.float32), numeric_raw=X,
                 feature_names=[f"x{j}" for j in range(8)], scaler_mean=np.zeros(8), scaler_scale=np.ones(8),
                 source="blobs")
    h = Hercules(HerculesConfig(level_cluster_counts=(6, 3), random_state=1)).fit(ds).hierarchy_
    path = tmp_path_factory.mktemp("model") / "model.json"
    save_model(h, path)
    url = "data:application/json;base64," + base64.b64encode(path.read_bytes()).decode()
    rid, message = page_runs.import_model(server.runs_dir, "model.json", url)
    assert rid, message
    return rid, h


def shot(page, name: str) -> None:
    bs.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(bs.ARTIFACTS / f"stability-{name}.png"), full_page=True)


def test_tree_marks_unstable_clusters_and_the_pane_says_how_stable(page, server, fitted):
    from hercules_core.stability import cluster_stability, describe

    run_id, h = fitted
    top = h.top_level
    info = {j: cluster_stability(h, top, j) for j in range(len(h.levels[top]))}
    unstable = {f"L{top}:{j}" for j, i in info.items() if not i["stable"]}
    stable = sorted(f"L{top}:{j}" for j, i in info.items() if i["stable"])
    assert unstable and stable, info  # the data is built to give both
    page.goto(f"{server.url}/explore?run={run_id}")
    page.wait_for_selector("#explore-tree .tree-node", timeout=30_000)
    marked = set(page.evaluate("() => [...document.querySelectorAll('.tree-unstable')]"
                               ".map(e => e.closest('.tree-node').dataset.key)"))
    assert marked == unstable
    assert "re-runs" in page.get_attribute(".tree-unstable >> nth=0", "title")
    shot(page, "tree")
    for key in (sorted(unstable)[0], stable[0]):
        page.locator(f".tree-node[data-key='{key}'] > .tree-label").click()
        page.wait_for_selector(f'.cluster-pane[data-key="{key}"] .pane-stability', timeout=10_000)
        text = page.inner_text(".cluster-pane .pane-stability")
        assert text == describe(info[int(key.split(":")[1])])
        assert ("unstable: " in text) == (key in unstable)
        assert " of 5 re-runs (Jaccard " in text
    # level 1: six planted blobs, each found again in every re-run (the selected node is open)
    child = page.locator(f".tree-node[data-key='{stable[0]}'] .tree-node .tree-label").first
    child.click()
    page.wait_for_selector(".cluster-pane[data-key^='L1:'] .pane-stability", timeout=10_000)
    assert page.inner_text(".cluster-pane .pane-stability").startswith("stable in 5 of 5 re-runs (Jaccard 1.00")
    shot(page, "pane")
    # the scatter can be coloured by stability
    page.select_option("#explore-color-level", "stability")
    page.wait_for_function("() => { const g = document.querySelector('#explore-scatter .js-plotly-plot');"
                           " const c = g && g.data[1].marker.color; return c && String(c[0]).startsWith('rgb('); }",
                           timeout=10_000)
    assert not page.errors, page.errors
