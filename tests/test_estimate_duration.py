"""The estimate's duration (speeds measured per model in <cache_dir>/timings.json, else the registry's
defaults) and its note on levels that will be lowered."""

from __future__ import annotations

import json
import os
import logging
import re

import pytest

import model_registry as registry

from hercules_core import HerculesConfig, cost, data
from hercules_run import timings
from hercules_run.pipeline import CacheSettings, ModelIds, RunRequest, run_pipeline
from tests.test_app_logic import data_url

TOPICS = ["cats dogs pets", "stock market prices", "rain snow weather"]


def _csv(n: int = 60) -> str:
    return "id,text\n" + "\n".join(f"{i},text about {TOPICS[i % 3]} number {i}" for i in range(n)) + "\n"


# --------------------------------------------------------------------------- the file

def test_timings_file_round_trip_is_atomic_and_bounded(tmp_path, monkeypatch):
    assert timings.load(tmp_path) == {k: {} for k in timings.KINDS}  # no file yet
    for i in range(timings.KEEP + 3):
        assert timings.record({"llm": {"smollm2": (2.0 * (i + 1), i + 1)}, "other": {timings.OTHER: (1.0, 100)}},
                              tmp_path, now=1000 + i)
    got = timings.load(tmp_path)
    assert len(got["llm"]["smollm2"]) == timings.KEEP  # the latest few only
    assert got["llm"]["smollm2"][-1]["count"] == timings.KEEP + 3
    assert [p.name for p in tmp_path.iterdir()] == [timings.TIMINGS_FILE]  # no temporary file left behind

    for i in range(timings.MAX_IDS + 5):  # many ids: the least recently measured are forgotten
        timings.record({"text_embedder": {f"emb{i}": (1.0, 10)}}, tmp_path, now=2000 + i)
    kept = timings.load(tmp_path)["text_embedder"]
    assert len(kept) == timings.MAX_IDS and "emb0" not in kept and f"emb{timings.MAX_IDS + 4}" in kept
    assert (tmp_path / timings.TIMINGS_FILE).stat().st_size < 20_000

    # a write that fails half way leaves the previous file whole
    before = (tmp_path / timings.TIMINGS_FILE).read_text()
    def disk_full(*_a, **_k):  # the new file's bytes are written, then the disk fills before the rename
        raise OSError(28, "No space left")
    monkeypatch.setattr(timings.io.os, "fsync", disk_full)
    assert timings.record({"llm": {"fake": (1.0, 1)}}, tmp_path) is False
    assert (tmp_path / timings.TIMINGS_FILE).read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [timings.TIMINGS_FILE]


def test_timings_file_never_holds_urls_or_keys(tmp_path):
    timings.record(timings.measure_run({"llm": "openai", "text_embedder": "minilm"}, {},
                                       {"llm_calls": 4, "llm_seconds": 8.0}, {}, {"total": 10.0},
                                       {"space": 0.0, "other": 100_050.0}), tmp_path)
    text = (tmp_path / timings.TIMINGS_FILE).read_text()
    assert set(json.loads(text)) == {"version", *timings.KINDS}
    assert "http" not in text and "key" not in text.lower()


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"version": 99}',
                                     b'{"version": 1, "llm": {"x": [{"seconds": "a", "count": 1}]}}'])
def test_a_corrupt_timings_file_is_ignored_with_a_warning(tmp_path, caplog, content):
    (tmp_path / timings.TIMINGS_FILE).write_bytes(content)
    with caplog.at_level(logging.WARNING):
        rates = timings.rates_for({"llm": "smollm2", "text_embedder": "minilm"}, tmp_path)
    assert rates.llm_seconds_per_call == registry.SMOLLM2_SECONDS_PER_CALL and not rates.llm_measured  # the declared default
    if content.startswith(b'{"version": 1'):  # readable, one bad sample dropped
        assert not caplog.records
    else:
        assert "ignoring the measured timings" in caplog.text
    assert timings.record({"llm": {"smollm2": (3.0, 1)}}, tmp_path)  # the next run replaces it
    assert timings.rates_for({"llm": "smollm2"}, tmp_path).llm_seconds_per_call == 3.0


# --------------------------------------------------------------------------- the estimate

def test_estimate_uses_declared_defaults_until_measured(tmp_path):
    est = {"llm": "smollm2", "llm_calls": 128, "n_items": 1225, "texts_to_embed": 1289, "images_to_embed": 0,
           "work": {"space": 2225.0, "other": 150_000.0}}
    cfg = HerculesConfig(level_cluster_counts=(24, 8), llm_concurrency=1)
    models = {"llm": "smollm2", "text_embedder": "minilm"}

    cold = cost.annotate_estimate(est, cfg, timings.rates_for(models, tmp_path))["duration"]
    assert cold["parts"]["llm"] == pytest.approx(128 * registry.SMOLLM2_SECONDS_PER_CALL)
    assert cold["parts"]["embedding"] == pytest.approx(1289 / 100, rel=1e-3)
    assert cold["parts"]["clustering space"] == pytest.approx(2225 * cost.DEFAULT_SPACE_SECONDS_PER_UNIT)
    assert cold["parts"]["other"] == pytest.approx(150_000 * cost.DEFAULT_OTHER_SECONDS_PER_UNIT)
    assert not cold["measured"] and set(cold["unmeasured"]) == {"llm", "embedding", "clustering space", "other"}
    assert cost.duration_text(cold) == ("about 4 min (no measurement yet for embedding, llm, clustering space, "
                                         "other)")

    timings.record({"llm": {"smollm2": (50.0, 100)}, "text_embedder": {"minilm": (10.0, 1000)},
                    "other": {timings.SPACE: (10.0, 1000), timings.OTHER: (20.0, 1_000_000)}}, tmp_path)
    warm = cost.annotate_estimate(est, cfg, timings.rates_for(models, tmp_path))["duration"]
    # a unit's price: the measured seconds with the default's PRIOR_UNITS beside them
    space_s = (10.0 + timings.PRIOR_UNITS[timings.SPACE] * cost.DEFAULT_SPACE_SECONDS_PER_UNIT) / (
        1000 + timings.PRIOR_UNITS[timings.SPACE])
    other_s = (20.0 + timings.PRIOR_UNITS[timings.OTHER] * cost.DEFAULT_OTHER_SECONDS_PER_UNIT) / (
        1_000_000 + timings.PRIOR_UNITS[timings.OTHER])
    assert warm["measured"] and warm["parts"] == {"embedding": pytest.approx(12.89), "llm": pytest.approx(64.0),
                                                  "clustering space": pytest.approx(2225 * space_s, abs=1e-3),
                                                  "other": pytest.approx(150_000 * other_s, abs=1e-3)}
    assert cost.duration_text(warm) == "about 2 min (measured on this machine)"
    # concurrent calls: the LLM part is divided by the concurrency
    four = cost.annotate_estimate(est, HerculesConfig(level_cluster_counts=(24, 8), llm_concurrency=4),
                                  timings.rates_for(models, tmp_path))["duration"]
    assert four["parts"]["llm"] == pytest.approx(16.0)
    # the keyword summariser: no LLM time at all, and nothing to measure for it
    kw = cost.annotate_estimate(dict(est, llm=None, llm_calls=0), cfg,
                                timings.rates_for({"llm": "keywords", "text_embedder": "minilm"}, tmp_path))
    assert "llm" not in kw["duration"]["parts"] and kw["duration"]["measured"]


def test_the_estimate_says_when_levels_will_be_lowered():
    cfg = HerculesConfig(level_cluster_counts=(2000,))
    assert cost.level_notes(1543, cfg) == ["level 1 will have 1,542 clusters, not 2,000 (only 1,543 items)"]
    two = cost.level_notes(1543, HerculesConfig(level_cluster_counts=(2000, 1600)))
    assert two[1] == "level 2 will have 1,541 clusters, not 1,600 (only 1,542 clusters in level 1)"
    assert cost.level_notes(1543, HerculesConfig(level_cluster_counts=(100, 10))) == []
    assert cost.level_notes(1543, HerculesConfig(level_cluster_counts=None)) == []  # automatic k asks for none
    est = cost.annotate_estimate({"n_items": 1543, "clusters_per_level": [1542], "texts_to_embed": 0}, cfg)
    line = cost.format_estimate(est)
    assert line.endswith("; note: level 1 will have 1,542 clusters, not 2,000 (only 1,543 items)")
    assert "about" not in line  # no rates given: no duration


# --------------------------------------------------------------------------- the two doors

def test_cli_line_and_app_preview_show_the_duration_and_the_lowered_level(tmp_path, capsys, monkeypatch):
    from callbacks import page_new_run, uploads
    from hercules_run.cli import main

    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(cache_dir))
    (tmp_path / "d.csv").write_text(_csv())
    args = ["run", str(tmp_path / "d.csv"), "--text-column", "text", "--id-column", "id", "--levels", "2000",
            "--embedder", "fake-hash", "--llm", "keywords", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "out1")]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("estimate: "))
    assert re.search(r"^duration: estimated \d+\.\d s, took \d+\.\d s \(\d+\.\d\dx the estimate\)$", err, re.M)
    assert re.search(r"; (about \d+ (s|min)|under 1 s) \(no measurement yet for embedding, other\); note", line)
    assert "note: level 1 will have 59 clusters, not 2,000 (only 60 items)" in line

    desc = uploads.stage(tmp_path / "runs", ["d.csv"], [data_url(_csv().encode())])
    choice = {"text_column": "text", "id_column": "id"}
    models = {"text_embedder": "fake-hash", "llm": "keywords"}
    shown = page_new_run.cost_preview(desc, "text", {"levels_text": "2000"}, "fixed", models, True,
                                      tmp_path / "runs", choice).children
    # the first run measured this machine: the preview (and the next CLI run) use it
    assert re.search(r"; (about \d+ (s|min)|under 1 s) \(measured on this machine\); note", shown)
    assert "level 1 will have 59 clusters, not 2,000 (only 60 items)" in shown
    assert main([*args, "--out", str(tmp_path / "out2")]) == 0
    again = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("estimate: "))
    assert shown == again.removeprefix("estimate: ") + " (60 items)."


def test_a_keyword_run_records_measurements_the_next_estimate_uses(tmp_path):
    src = tmp_path / "d.csv"
    src.write_text(_csv())
    settings = CacheSettings(directory=tmp_path / "cache")

    def request(out):
        return RunRequest(prepare=lambda o: data.prepare(src, text_column="text", id_column="id"),
                          config=HerculesConfig(level_cluster_counts=(4, 2)), out_dir=tmp_path / out,
                          models=ModelIds(text_embedder="fake-hash", llm="keywords"), cache=settings)

    first = run_pipeline(request("a"))
    assert not first.estimate["duration"]["measured"]
    side = first.hierarchy.stats["cost"]["duration"]  # the estimate beside the actual seconds
    assert side["estimated_seconds"] == first.estimate["duration"]["seconds"]
    assert side["actual_seconds"] == pytest.approx(first.report["total_seconds"], abs=0.1)
    saved = timings.load(settings.directory)
    assert saved["text_embedder"]["fake-hash"][0]["count"] >= 60  # the items at least
    assert saved["other"][timings.OTHER][0]["count"] == first.estimate["work"]["other"]  # its units of work
    assert not saved["llm"]  # keywords: no LLM to time

    rates = timings.rates_for({"text_embedder": "fake-hash", "llm": "keywords"}, settings.directory)
    assert rates.embed_measured and rates.other_measured
    second = run_pipeline(request("b"))
    dur = second.estimate["duration"]
    assert dur["measured"] and dur["unmeasured"] == []
    assert dur["parts"]["other"] == pytest.approx(second.estimate["work"]["other"] * rates.other_seconds_per_unit,
                                                  abs=1e-3)

    # --no-cache: the run neither writes the cache folder's timings
    before = (settings.directory / timings.TIMINGS_FILE).read_text()
    run_pipeline(RunRequest(prepare=request("c").prepare, config=HerculesConfig(level_cluster_counts=(4, 2)),
                            out_dir=tmp_path / "c", models=ModelIds(text_embedder="fake-hash", llm="keywords"),
                            cache=CacheSettings(directory=settings.directory, enabled=False)))
    assert (settings.directory / timings.TIMINGS_FILE).read_text() == before


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc (Linux)")
def test_stage_memory_puts_a_stages_allocation_in_that_stage(tmp_path):
    """The per-stage peak (printed by the CLI) names the stage that allocated, not the ones after it."""
    import numpy as np

    seen = []
    mem = timings.StageMemory(lambda stage, done, total: seen.append(stage), reset=True)
    mem("reading", 0, 1)
    mem("big stage: detail", 0, 1)
    block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
    del block
    mem("big stage", 1, 1)  # the same stage (the label before ':')
    mem("small stage", 0, 1)
    stages = mem.finish()
    assert seen == ["reading", "big stage: detail", "big stage", "small stage"]  # the wrapped progress sees all
    assert list(stages) == ["reading", "big stage", "small stage"]
    assert stages["big stage"]["rise_mb"] >= 280
    if mem.resettable:  # the peak was reset when the big stage ended: the small one did not inherit it
        assert stages["small stage"]["rise_mb"] < 50
        assert stages["small stage"]["peak_mb"] < stages["big stage"]["peak_mb"] - 200
    line = timings.StageMemory.format(stages)
    assert "big stage" in line and "= the peak" in line.split("big stage", 1)[1].split(",")[0]

    shared = timings.StageMemory(None)  # a shared process: the process peak is never reset
    shared("one", 0, 1)
    block = np.ones(300 * 2**20 // 8)
    del block
    shared("two", 0, 1)
    assert not shared.resettable and shared.finish()["one"]["rise_mb"] >= 280
    assert timings._status_mb("VmHWM") >= stages["big stage"]["peak_mb"] - 5  # still the process's peak


# --------------------------------------------------------------------------- a million items

def _million(modality: str) -> cost.DataSummary:
    """The estimate's view of issue 18's 1M-item runs: 1M x 384 own vectors with a text, or 1M x 16
    numbers (the estimate sees 256 items and the count)."""
    import numpy as np
    from hercules_core.dataset import Dataset

    rng, m = np.random.default_rng(0), 256
    ids = [str(i) for i in range(m)]
    if modality == "own":
        ds = Dataset(ids=ids, modality="text", texts=["five words of text here"] * m,
                     embeddings=rng.normal(size=(m, 384)).astype(np.float32))
    else:
        x = rng.normal(size=(m, 16)).astype(np.float32)
        ds = Dataset(ids=ids, modality="numeric", numeric=x, numeric_raw=x.astype(float),
                     feature_names=[f"f{j}" for j in range(16)])
    return cost.DataSummary(n_items=1_000_000, sample=ds)


# measured on this machine (docs/scaling.md): quiet, and under other sessions' load (load 3-5)
REAL_1M_SECONDS = {"own": (52.0, 143.5), "numeric": (20.4, 33.0)}


@pytest.mark.parametrize("modality", ["own", "numeric"])
def test_a_million_item_estimate_stays_near_the_measured_run_after_small_runs(tmp_path, modality):
    """Issue 18: after a few small runs (UMAP-dominated: ~0.05 s per item outside the models) the CLI
    estimated "about 12 h 52 min" for a 1M x 384 own-vectors keyword run that took 15 min: the small
    runs' seconds per item were multiplied by a million. The estimate must stay within 4x of the real
    run, with the declared defaults and after small runs recorded what they measured."""
    cfg = HerculesConfig(level_cluster_counts=(1000, 100, 10))
    est = cost.estimate_run(_million(modality), cfg, llm_id="keywords", with_text_embedder=False)
    assert est["texts_to_embed"] == 0 and (est.get("work") or {}).get("space", 0) == 0  # no embedding, no UMAP
    low, high = REAL_1M_SECONDS[modality]

    def estimated() -> float:
        rates = timings.rates_for({"llm": "keywords"}, tmp_path)
        return cost.annotate_estimate(est, cfg, rates)["duration"]["seconds"]

    assert low / 4 <= estimated() <= high * 4  # the declared defaults

    # what small runs record: a 3,000-text run (152 s, 140 of them UMAP) and two 60-item runs (~0.5 s)
    small = HerculesConfig(level_cluster_counts=(30, 5))
    for n, seconds, space in ((3000, 151.8, 140.0), (60, 0.5, 0.0), (60, 0.4, 0.0)):
        ds = _million(modality).sample
        work = cost.estimate_run(cost.DataSummary(n_items=n, sample=ds), small, llm_id="keywords",
                                 with_text_embedder=False)["work"]
        timings.record(timings.measure_run({"llm": "keywords"}, {}, {}, {},
                                           {"total": seconds, "clustering space": space}, work), tmp_path)
    after = estimated()
    assert timings.rates_for({"llm": "keywords"}, tmp_path).other_measured
    assert low / 4 <= after <= high * 4, cost.format_duration(after)


def test_a_small_umap_run_keeps_its_estimate():
    """The growth model must not lose the small runs: 1,225 texts at levels 24,8 with MiniLM and
    keywords, a fresh CLI process, took 67.3 s (35.9 s embedding, UMAP compiling; docs/benchmarks.md).
    With the declared defaults the estimate stays within 2x."""
    from hercules_core.dataset import Dataset

    texts = [f"text about {TOPICS[i % 3]} number {i}" for i in range(256)]
    summary = cost.DataSummary(n_items=1225, sample=Dataset(ids=[str(i) for i in range(256)], modality="text",
                                                            texts=texts))
    cfg = HerculesConfig(level_cluster_counts=(24, 8))
    est = cost.estimate_run(summary, cfg, llm_id="keywords", with_text_embedder=True)
    assert est["work"]["space"] > 0  # UMAP on 1,225 embeddings (reduce_method auto)
    dur = cost.annotate_estimate(est, cfg, timings.rates_for({"llm": "keywords", "text_embedder": "minilm"},
                                                             data={}))["duration"]
    assert 67.3 / 2 <= dur["seconds"] <= 67.3 * 2, dur
