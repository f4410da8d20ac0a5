"""The standalone HTML report: self-contained, small, and safe with hostile titles; opened from a
file:// URL in headless Chromium with the network cut off."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from hercules_core import Hercules, HerculesConfig
from hercules_core.clients.fakes import FakeEmbedder
from hercules_core.dataset import Dataset
from hercules_core.edits import apply_edit
from hercules_core.evaluation import evaluate_all
from hercules_core.reduction import reduce_hierarchy
from hercules_core.report import ITEMS_MAX, report_data, report_html, save_report
from devkit import browser_support as bs
from devkit.factories import make_hierarchy, make_text_dataset

XSS = '<img src=x onerror="window.__xss=1"></script><script>window.__xss=2</script>'


@pytest.fixture(scope="module")
def small():
    h = make_hierarchy(make_text_dataset(150), ks=(12, 4))
    reduce_hierarchy(h, 2, 0)
    evaluate_all(h)
    apply_edit(h, "L2_0", XSS, "An edited description with </script> and <b>tags</b>.")
    return h


def test_the_data_is_escaped_and_complete(small):
    html = report_html(small)
    # no text from the model can close the data's <script> element or add markup
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    assert "<" not in data and "/*@" not in data
    doc = json.loads(data)
    assert doc["levels"][1]["titles"][0] == XSS and doc["levels"][1]["sources"][0] == "edited"
    assert doc["meta"]["items_embedded"] == 150 and len(doc["items"]["ids"]) == 150
    assert len(doc["samples"]) == 12 and all(1 <= len(s) <= 3 for s in doc["samples"])
    assert set(doc["metrics"]) == {"1", "2"} and "silhouette_score" in doc["metrics"]["1"]
    # self-contained: no URL to fetch anything from
    assert not re.search(r'<(script|link|img)[^>]+(src|href)=', html)
    assert "default-src 'none'" in html


def test_items_beyond_the_limit_are_summarised_not_embedded(small):
    doc = report_data(small, items_max=100)
    assert len(doc["items"]["ids"]) == 100 and doc["meta"]["items_embedded"] == 100
    assert set(doc["items"]["ids"]) < set(small.levels[0].ids)
    assert len(doc["samples"]) == 12  # every level-1 cluster still lists its central items


def test_a_20000_item_run_stays_under_5_mb(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choice(words, size=25)) for _ in range(20_000)]
    ds = Dataset(ids=[f"item-{i:05d}" for i in range(20_000)], modality="text", texts=texts, source="synthetic")
    h = Hercules(HerculesConfig(level_cluster_counts=(200, 40, 8)), text_embedder=FakeEmbedder(64)).fit(ds).hierarchy_
    path = tmp_path / "report.html"
    save_report(h, path)
    size = path.stat().st_size
    print(f"\nreport of a 20,000-item run (levels 200/40/8): {size / 1e6:.2f} MB")
    assert size <= 5_000_000
    assert ITEMS_MAX < 20_000 and f'"items_embedded":{ITEMS_MAX}' in path.read_text()


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(bs.CHROMIUM), reason=f"{bs.CHROMIUM} is missing")
def test_report_works_from_disk_without_network(small, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    path = tmp_path / "report.html"
    save_report(small, path)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=bs.CHROMIUM, args=bs.CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors, requests = [], []
        bs.watch_console(page, errors)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.evaluate("document.querySelectorAll('#scatter .point').length") >= 150 + 12
        # the hostile title is shown as text and never runs
        node = page.locator('.node[data-key="2:0"]')
        assert node.locator(".ttl").inner_text() == XSS
        node.click()
        assert page.inner_text("#detail-body .title") == XSS
        assert page.evaluate("window.__xss") is None
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        # click-to-highlight: the selection's children and its items are emphasised, the rest faded
        assert page.locator(".node.related").count() >= 1
        opacity = page.evaluate("document.getElementById('scatter').data[1].marker.opacity")
        kids = [j for j, p_ in enumerate(small.levels[1].parent) if p_ == 0]
        assert all(opacity[j] == 1 for j in kids) and min(opacity) < 0.5
        # clicking a bubble selects its cluster
        page.select_option("#level", "2")
        page.wait_for_function("document.getElementById('scatter').data[1].x.length === 4")
        x, y = page.evaluate("""() => { const gd = document.getElementById('scatter'), fl = gd._fullLayout,
            t = gd._fullData[1], r = gd.getBoundingClientRect();
            return [r.left + fl._size.l + fl.xaxis.l2p(t.x[1]), r.top + fl._size.t + fl.yaxis.l2p(t.y[1])]; }""")
        page.mouse.click(x, y)
        page.wait_for_function("document.querySelector('.node.sel') && document.querySelector('.node.sel').dataset.key === '2:1'")
        # search finds by title and jumps to the hit
        page.fill("#search", "title 1.5")
        page.click("#results .hit >> nth=0")
        assert page.get_attribute(".node.sel", "data-key") == "1:5"
        assert page.inner_text("#metrics").count("L") >= 2
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert [u for u in requests if not u.startswith("file:")] == []
    assert errors == [], errors


def test_metrics_table_scrolls_inside_its_card(small, tmp_path):
    """A wide metrics table scrolls sideways inside its card instead of running past it."""
    html = report_html(small)
    assert re.search(r'<div id="metrics" class="table-scroll">', html)
    assert re.search(r"\.table-scroll \{[^}]*overflow-x: auto", html)
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(bs.CHROMIUM):
        pytest.skip(f"{bs.CHROMIUM} is missing")
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=bs.CHROMIUM, args=bs.CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        box = page.evaluate("""() => {
            const m = document.getElementById('metrics'), s = m.closest('section'), t = m.querySelector('table');
            const r = (e) => e.getBoundingClientRect();
            return {section: r(s).right, box: r(m).right, table: r(t).right, scroll: m.scrollWidth, client: m.clientWidth,
                    overflow: getComputedStyle(m).overflowX, page: document.documentElement.scrollWidth}; }""")
        bs.ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(bs.ARTIFACTS / "report-1000px.png"), full_page=True)
        browser.close()
    assert box["overflow"] == "auto" and box["box"] <= box["section"], box
    assert box["scroll"] > box["client"], box  # at 1000 px this table is wider than its card: it scrolls
    assert box["page"] <= 1000, box
