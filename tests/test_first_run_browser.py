"""A new user's first run, as they make it (issue 21): open the new-run page, upload a labelled table
of short texts, change nothing, press Start. With the real offline defaults (MiniLM, the embedded
SmolLM2) the run must use the settings the command line would use for the same file, hit no
context-window error, fall back to keyword titles for at most 10% of its clusters, write no title
with markup, braces or a URL, and end green ("Run finished."), not amber."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]
bs.skip_without_browser()
from devkit.browser_support import browser, page  # noqa: E402,F401  (the shared fixtures)

N_ITEMS = 400
JUNK = re.compile(r"<[^>]*>|&#?\w+;|https?://|www\.|[{}\[\]]")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = bs.AppServer(tmp_path_factory.mktemp("first-run") / "runs", stage_delay=0)
    yield srv
    srv.stop()


def _sample(tmp_path: Path) -> Path:
    """A labelled, stratified sample of the held-in texts (the committed sample when ../shared is absent)."""
    df = pd.read_csv(bs.text_data(), dtype=str)
    if "label" in df.columns and len(df) > N_ITEMS:
        df = df.groupby("label").sample(frac=N_ITEMS / len(df), random_state=0)
    path = tmp_path / "first-texts.csv"
    df.to_csv(path, index=False)
    return path


def test_the_untouched_form_runs_the_default_summariser_well(page, server, tmp_path):  # noqa: F811
    from hercules_core import HerculesConfig, load_model
    from hercules_run import cli
    from model_registry import get_entry

    data = _sample(tmp_path)
    page.goto(server.url + "/")
    page.set_input_files("#data-upload input[type=file]", str(data))
    page.wait_for_selector(".upload-ok", timeout=60_000)
    assert "3 columns" in page.inner_text(".upload-ok")  # id, text and the labels
    page.wait_for_selector("#cost-preview .cost-text", timeout=60_000)
    llm = page.input_value('select[id*=\'"llm"\']')
    if llm != "smollm2":
        assert not get_entry("smollm2", "llm").availability()[0], f"the default summariser is {llm}, not SmolLM2"
        pytest.skip("the embedded SmolLM2 is not installed: the default summariser is another one")
    page.click("#start-run")
    page.wait_for_selector("#job-panel .run-id", timeout=20_000)
    run_id = page.get_attribute("#job-panel .run-id", "title")
    page.wait_for_selector(".run-result", timeout=800_000)
    bs.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(bs.ARTIFACTS / "first-run-result.png"), full_page=True)
    result = page.inner_text(".run-result")
    rdir = server.runs_dir / run_id
    log = (rdir / "run_log.jsonl").read_text() if (rdir / "run_log.jsonl").exists() else ""
    # the settings the command line would use for this file, with no flags
    spec = json.loads((rdir / "spec.json").read_text())
    args = cli.build_parser().parse_args(["run", str(data), "--out", str(tmp_path / "cli")])
    args.llm = args.llm or cli.default_llm()
    assert HerculesConfig.from_dict(spec["config"]) == cli._config(args)
    assert "exceed context window" not in log.lower()
    assert page.query_selector(".run-result-done") is not None, result
    assert "Run finished" in result and "warning" not in result.lower(), result
    h = load_model(rdir / "model.json")
    upper = [(lv.titles[j], lv.descriptions[j], bool(lv.fallback[j]))
             for lv in h.levels[1:] for j in range(len(lv))]
    fallbacks = sum(f for _, _, f in upper)
    print(f"first run: {len(upper)} clusters, {fallbacks} keyword fallbacks; titles: "
          f"{'; '.join(t for t, _, _ in upper[:12])}")
    assert fallbacks <= 0.10 * len(upper), f"{fallbacks} of {len(upper)} clusters fell back to keywords"
    bad = [(t, d) for t, d, _ in upper if JUNK.search(t) or JUNK.search(d)]
    assert bad == [], bad
