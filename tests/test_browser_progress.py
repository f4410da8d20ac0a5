"""Browser journeys (headless Chromium) of a run's outcome and of progress that follows the user.

- A run whose LLM (the scripted OpenAI-compatible stub server, as the "openai" LLM) answers junk ends
  amber, "finished with warnings", with its counts, on the job panel, the run page, the runs page and
  the explore overview.
- A slow run survives a reload: the new-run page rejoins it, the run page and the runs page offer
  Cancel to this browser only (another browser sees "started in another browser"), and Cancel from
  the run page (or the runs page) ends it cancelled.

Screenshots go to tests/artifacts/progress-*.png.
"""

from __future__ import annotations

import time

import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

bs.skip_without_browser()
from devkit.browser_support import browser, new_page, page  # noqa: E402,F401  (the shared fixtures)
from devkit.openai_stub_server import StubServer  # noqa: E402
from tests.test_browser import configure, shot, upload  # noqa: E402

from callbacks import runstore  # noqa: E402


@pytest.fixture(scope="module")
def stub():
    # a few transient server errors, then answers that never parse: every LLM title falls back
    with StubServer(script=["500", "500"], default="invalid_json", retry_after="0") as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, stub):
    srv = bs.AppServer(tmp_path_factory.mktemp("app") / "runs", stage_delay=1.5,
                       env={"HERCULES_LLM_BASE_URL": stub.base_url, "HERCULES_LLM_MODEL": "stub-model",
                            "HERCULES_LLM_API_KEY": "test-key", "HERCULES_LLM_TIMEOUT": "10"})
    yield srv
    srv.stop()


def in_view(page, selector: str) -> bool:
    return page.evaluate("(s) => { const r = document.querySelector(s).getBoundingClientRect();"
                         " return r.height > 0 && r.top >= -5 && r.top < window.innerHeight; }", selector)


def wait_in_view(page, selector: str, timeout: float = 5.0) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if in_view(page, selector):
            return True
        time.sleep(0.1)
    return False


def start(page, server, levels="12,4", **models) -> str:
    upload(page, server, bs.text_data())
    configure(page, levels, **models)
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.click("#start-run")
    page.wait_for_selector("#job-panel .run-id", timeout=10_000)
    return page.get_attribute("#job-panel .run-id", "title")


def test_junk_answers_end_amber_everywhere(page, server, stub):
    run_id = start(page, server, text_embedder="fake-hash", llm="openai")
    # Start is at the bottom of a long page: the progress panel at the top comes into view
    assert wait_in_view(page, "#job-panel"), "the progress panel was not brought into view"
    assert page.get_attribute("#start-msg .start-run-page", "href") == f"/run/{run_id}"
    page.wait_for_selector(".run-result", timeout=240_000)
    shot(page, "progress-1-panel-warnings")
    panel = page.inner_text("#job-result")
    assert "finished with warnings" in panel.lower(), panel
    assert page.query_selector("#job-result .run-warnings.alert-warning"), "not amber"
    status = runstore.read_status(server.runs_dir / run_id)
    w = status["warnings"]
    assert status["state"] == "done" and w["fallbacks"] >= 0.5 * w["clusters"] > 0
    counts = f"{w['fallbacks']} of {w['clusters']} summaries fell back to keyword titles"
    assert counts in panel and w["reason"] in panel and w["advice"] in panel
    assert "Title quality" in panel and "L1:" in panel
    assert stub.counts["invalid_json"] > 0

    # the run page: the same amber outcome, with links to Explore and Evaluate
    page.goto(f"{server.url}/run/{run_id}")
    page.wait_for_selector("#run-result .run-warnings", timeout=15_000)
    text = page.inner_text("#run-result")
    assert counts in text and w["reason"] in text
    assert page.get_attribute("#run-result .result-explore-link", "href") == f"/explore?run={run_id}"
    assert not page.is_visible("#run-cancel")
    shot(page, "progress-2-run-page-warnings")

    # the runs page: an amber "finished with warnings" badge with the counts
    page.goto(server.url + "/runs")
    row = f'tr[data-run="{run_id}"]'
    page.wait_for_selector(f"{row} .run-state")
    assert page.inner_text(f"{row} .run-state") == "finished with warnings"
    assert "bg-warning" in page.get_attribute(f"{row} .run-state", "class")
    assert counts in page.inner_text(f"{row} .run-warning-text")
    shot(page, "progress-3-runs-warnings")

    # the explore overview (the run opens and downloads as any finished run)
    page.click(f"{row} .open-run")
    page.wait_for_selector(".cluster-pane.overview .run-warnings", timeout=30_000)
    overview = page.inner_text(".cluster-pane.overview")
    assert counts in overview and "self-retrieval top-1" in overview and w["advice"] in overview
    page.wait_for_selector("#explore-scatter .js-plotly-plot", timeout=30_000)
    shot(page, "progress-4-explore-warnings")
    assert page.errors == [], page.errors


def test_reload_rejoins_the_run_and_cancel_follows_the_token(browser, page, server):
    run_id = start(page, server, levels="30,8", text_embedder="fake-hash", llm="keywords")
    page.wait_for_function("() => +document.querySelector('#job-progress .progress-bar')"
                           ".getAttribute('aria-valuenow') > 0", timeout=30_000)
    page.reload()
    # the reloaded new-run page rejoins the run: its panel, progress, live log and an enabled Cancel
    page.wait_for_selector("#job-panel .run-id", timeout=15_000)
    assert page.get_attribute("#job-panel .run-id", "title") == run_id
    page.wait_for_selector("#job-cancel:not([disabled])", timeout=10_000)
    page.wait_for_function("() => +document.querySelector('#job-progress .progress-bar')"
                           ".getAttribute('aria-valuenow') > 0", timeout=10_000)
    shot(page, "progress-5-rejoined")
    assert page.get_attribute("#job-panel .run-page-link", "href") == f"/run/{run_id}"

    # another browser sees the run but cannot cancel it
    other = new_page(browser)
    try:
        other.goto(f"{server.url}/run/{run_id}")
        other.wait_for_selector("#run-cancel-note .other-browser", timeout=15_000)
        assert not other.is_visible("#run-cancel")
        other.goto(server.url + "/runs")
        other.wait_for_selector(f'tr[data-run="{run_id}"] .other-browser')
        assert not other.query_selector(f'tr[data-run="{run_id}"] .runs-cancel')
        assert other.errors == [], other.errors
    finally:
        other.context.close()

    # this browser: Cancel on the runs page too; then cancel from the run page
    page.click("#job-panel .run-page-link")
    page.wait_for_selector("#run-cancel", state="visible", timeout=15_000)
    assert int(page.get_attribute("#run-progress .progress-bar", "aria-valuenow")) < 100
    shot(page, "progress-6-run-page-running")
    page.goto(server.url + "/runs")
    page.wait_for_selector(f'tr[data-run="{run_id}"] .runs-cancel')
    shot(page, "progress-7-runs-cancel")
    page.goto(f"{server.url}/run/{run_id}")
    page.click("#run-cancel")
    page.wait_for_selector("#run-result .run-result-cancelled", timeout=15_000)
    shot(page, "progress-8-run-page-cancelled")
    rdir = server.runs_dir / run_id
    time.sleep(3)  # a job that was not really stopped would go on writing
    status = runstore.read_status(rdir)
    assert status["state"] == "cancelled"
    assert not (rdir / "model.json").exists()
    assert "Cancelled." in status.get("log", ""), "the job did not stop at its next step"
    page.goto(server.url + "/runs")
    page.wait_for_selector(f'tr[data-run="{run_id}"] .run-state')
    assert page.inner_text(f'tr[data-run="{run_id}"] .run-state') == "cancelled"
    assert page.errors == [], page.errors


def test_cancel_from_the_runs_page(page, server):
    run_id = start(page, server, levels="30,8", text_embedder="fake-hash", llm="keywords")
    page.goto(server.url + "/runs")
    button = f'tr[data-run="{run_id}"] .runs-cancel'
    page.wait_for_selector(button, timeout=15_000)
    page.click(button)
    page.wait_for_selector(".runs-cancel-msg", timeout=10_000)
    assert "cancelled" in page.inner_text(".runs-cancel-msg")
    page.wait_for_function(f"() => document.querySelector('tr[data-run=\"{run_id}\"] .run-state')"
                           ".innerText === 'cancelled'", timeout=15_000)
    time.sleep(3)
    status = runstore.read_status(server.runs_dir / run_id)
    assert status["state"] == "cancelled" and not (server.runs_dir / run_id / "model.json").exists()
    shot(page, "progress-9-runs-cancelled")
    assert page.errors == [], page.errors
