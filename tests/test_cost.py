"""The cost preview (before a run) and the cost report (after it)."""

import math

import pytest

from hercules_core import Hercules, HerculesConfig, RunLog
from hercules_core.cache import Cache, CachedEmbedder, CachedLLM
from hercules_core.clients.fakes import FakeEmbedder, FakeLLM
from hercules_core.cost import (estimate_run, format_estimate, format_report, plan_levels,
                                run_report)
from hercules_core.levels import auto_counts, top_candidates
from devkit.factories import make_numeric_dataset, make_text_dataset


def _run(ds, cfg, cache=None):
    emb, llm = FakeEmbedder(), FakeLLM()
    log = RunLog()
    e, m = (CachedEmbedder(emb, cache), CachedLLM(llm, cache)) if cache is not None else (emb, llm)
    model = Hercules(cfg, text_embedder=e, llm=m, run_log=log).fit(ds)
    return model, log, emb, llm


def test_fixed_levels_follow_the_batch_arithmetic():
    ds = make_text_dataset(n=200)
    est = estimate_run(ds, HerculesConfig(level_cluster_counts=(20, 5), llm_initial_batch_size=8), llm_id="fake")
    assert est["clusters_per_level"] == [20, 5] and not est["upper_bound"]
    assert [p["calls"] for p in est["per_level"]] == [3, 1]  # ceil(20/8) + ceil(5/8)
    assert est["llm_calls"] == 4
    # the items, then every cluster's description, then every title alone (the title-quality score)
    assert est["texts_to_embed"] == 200 + 25 + 25
    est = estimate_run(ds, HerculesConfig(level_cluster_counts=(20, 5), llm_initial_batch_size=3), llm_id="fake")
    assert [p["calls"] for p in est["per_level"]] == [7, 2]
    line = format_estimate(est)
    assert line.startswith("estimate: 25 clusters in 2 level(s) (20, 5) -> 9 LLM call(s) to fake")


def test_no_llm_means_no_calls_and_topic_seed_is_embedded():
    ds = make_text_dataset(n=100)
    est = estimate_run(ds, HerculesConfig(level_cluster_counts=(10, 3), topic_seed="pets"), llm_id="keywords")
    assert est["llm"] is None and est["llm_calls"] == 0 and est["prompt_tokens"] == 0
    assert est["texts_to_embed"] == 100 + 13 + 13 + 1  # + every title alone
    assert "no LLM calls" in format_estimate(est)


def test_numeric_without_embedder_and_l0_descriptions():
    ds = make_numeric_dataset(n=80, p=4)
    cfg = HerculesConfig(level_cluster_counts=(8, 2))
    est = estimate_run(ds, cfg, llm_id="fake", with_text_embedder=False)
    assert est["texts_to_embed"] == 0 and est["llm_calls"] == 1 + 1
    est = estimate_run(ds, HerculesConfig(level_cluster_counts=(8, 2), use_llm_for_l0_descriptions=True),
                       llm_id="fake")
    assert est["per_level"][0] == {**est["per_level"][0], "level": 0, "clusters": 80, "calls": 10}
    assert est["texts_to_embed"] == 80 + 10 + 10  # + every title alone


def test_auto_k_plans_the_upper_bound():
    """Automatic k: the estimate plans the candidate top k whose levels have the most clusters,
    so the clusters a run summarises never exceed the estimate's."""
    ds = make_text_dataset(n=300)
    cfg = HerculesConfig(level_cluster_counts=None, auto_k_max=40, max_levels=3)
    counts, auto = plan_levels(len(ds), cfg)
    plans = [list(auto_counts(300, k, cfg)) for k in top_candidates(300, cfg)]
    assert auto and counts in plans and sum(counts) == max(map(sum, plans))
    assert counts == [40]  # the plan with the most clusters: 200 below 40 would hold 1.5 items each
    model, _, _, _ = _run(ds, cfg)
    actual = [len(lv) for lv in model.hierarchy_.levels[1:]]
    assert actual in plans and sum(actual) <= sum(counts)


def test_auto_counts_branch_below_the_top_level():
    cfg = HerculesConfig(level_cluster_counts=None)
    assert auto_counts(1225, 12, cfg) == (60, 12)  # 300 clusters would hold 4 items each (< 10)
    assert auto_counts(1225, 9, cfg) == (45, 9)  # not 225: 5 items each
    assert auto_counts(100_000, 10, cfg) == (6250, 1250, 250, 50, 10)  # max_levels=5
    assert auto_counts(30, 8, cfg) == (8,)
    assert auto_counts(1000, 4, HerculesConfig(auto_k_branching=2.5)) == (62, 25, 10, 4)
    assert auto_counts(1000, 4, HerculesConfig(auto_k_min_cluster_size=5)) == (100, 20, 4)
    assert top_candidates(1225, cfg)[:18] == tuple(range(3, 21))  # every k up to 20, then a grid


def test_fixed_levels_stop_where_the_run_stops():
    assert plan_levels(10, HerculesConfig(level_cluster_counts=(20, 5)))[0] == [9, 5]
    assert plan_levels(100, HerculesConfig(level_cluster_counts=(20, 5, 2), max_levels=2))[0] == [20, 5]


@pytest.mark.parametrize("max_prompt_tokens", [6000, 1200])
def test_estimate_matches_a_real_fake_run(max_prompt_tokens):
    ds = make_text_dataset(n=200)
    # the estimate plans the calls; the title gate's re-asks (tests/test_title_gate.py) come on top
    cfg = HerculesConfig(level_cluster_counts=(20, 5), max_prompt_tokens=max_prompt_tokens, title_gate=False)
    est = estimate_run(ds, cfg, llm_id="fake")
    model, log, emb, llm = _run(ds, cfg)
    summary = log.summary()
    assert summary["llm_calls"] == llm.calls
    if max_prompt_tokens == 6000:  # batches are planned as the summariser plans them
        assert est["llm_calls"] == llm.calls == 4
    else:  # the token budget, not the batch size, limits; real blocks vary around the representative one
        assert est["per_level"][0]["batch_size"] < 8
        assert 0.5 <= est["llm_calls"] / llm.calls <= 2.0
    assert 0.5 <= est["prompt_tokens"] / summary["prompt_tokens_est"] <= 2.0
    assert 0.25 <= est["completion_tokens"] / summary["completion_tokens_est"] <= 4.0
    assert emb.texts_embedded == est["texts_to_embed"]


def test_run_report_counts_what_reached_the_models(tmp_path):
    ds = make_text_dataset(n=150)
    cfg = HerculesConfig(level_cluster_counts=(12, 4), title_gate=False)  # calls as planned: no re-asks
    cache = Cache(tmp_path)
    model, log, _, llm = _run(ds, cfg, cache)
    first = run_report(model.hierarchy_, log.summary(), cache.stats(), model.timings_)
    assert first["llm"]["calls"] == first["llm"]["requests"] == llm.calls == 3
    assert first["llm"]["prompt_tokens"] == log.summary()["prompt_tokens_est"] > 0
    assert first["llm"]["tokens_source"] == "estimate"
    # items, every cluster's "title. description", every title alone (the title-quality score)
    assert first["embedding"]["texts_embedded"] == 150 + 16 + 16 and first["embedding"]["cache_hits"] == 0
    assert first["clusters_per_level"] == [12, 4]
    assert set(first["seconds"]) >= {"embedding", "clustering", "summarizing"}
    assert math.isclose(first["total_seconds"], model.timings_["total"], abs_tol=1e-3)

    cache2 = Cache(tmp_path)
    model2, log2, _, llm2 = _run(ds, cfg, cache2)
    second = run_report(model2.hierarchy_, log2.summary(), cache2.stats(), model2.timings_)
    assert llm2.calls == 0
    assert second["llm"] == {**second["llm"], "requests": 3, "calls": 0, "cache_hits": 3, "prompt_tokens": 0,
                             "completion_tokens": 0}
    assert second["embedding"]["calls"] == 0 and second["cache"]["misses"] == 0
    lines = format_report(second)
    assert lines[0].startswith("cost: 0 LLM call(s) (3 answered from the cache), 0 prompt + 0 completion")
    assert lines[1].startswith("cache: ") and lines[2].startswith("time: ")


def test_run_report_prefers_reported_tokens_and_works_without_a_cache():
    report = run_report(None, {"llm_calls": 4, "prompt_tokens": 1234, "completion_tokens": 56,
                               "prompt_tokens_est": 9999}, None, {"embedding": 0.5, "total": 1.0})
    assert report["llm"]["calls"] == 4 and report["llm"]["prompt_tokens"] == 1234
    assert report["llm"]["tokens_source"] == "reported"
    assert report["cache"]["enabled"] is False and "cache: off" in format_report(report)


def test_reported_tokens_from_the_run_log_and_zero_for_cached_answers(tmp_path):
    from hercules_core.cost import summary_with_usage

    class UsageLLM(FakeLLM):
        def complete_with_usage(self, prompt, *, schema=None):
            return self.complete(prompt, schema=schema), {"prompt_tokens": 100, "completion_tokens": 10}

    ds = make_text_dataset(n=150)
    cfg = HerculesConfig(level_cluster_counts=(12, 4), title_gate=False)  # calls as planned: no re-asks
    reports = []
    for _ in range(2):
        cache, log = Cache(tmp_path), RunLog()
        model = Hercules(cfg, text_embedder=CachedEmbedder(FakeEmbedder(), cache),
                         llm=CachedLLM(UsageLLM(), cache), run_log=log).fit(ds)
        reports.append(run_report(model.hierarchy_, summary_with_usage(log), cache.stats(), model.timings_))
    assert reports[0]["llm"] == {**reports[0]["llm"], "calls": 3, "prompt_tokens": 300, "completion_tokens": 30,
                                 "tokens_source": "reported"}
    assert reports[1]["llm"] == {**reports[1]["llm"], "calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                 "tokens_source": "reported"}
    # without kept records only the estimates are known
    assert "prompt_tokens" not in summary_with_usage(RunLog(keep_records=False))


@pytest.mark.parametrize("n, cfg", [
    (10, HerculesConfig(level_cluster_counts=(20, 5))),
    (60, HerculesConfig(level_cluster_counts=(6, 2))),
    (100, HerculesConfig(level_cluster_counts=(20, 5, 2), max_levels=2)),
    (40, HerculesConfig(level_cluster_counts=(8, 3, 2), min_clusters_per_level=3)),
])
def test_the_fit_builds_the_levels_the_plan_announces(n, cfg):
    """One plan (levels.next_level) drives both: the estimate's counts are the fit's, clipping included."""
    ds = make_text_dataset(n=n)
    model = Hercules(cfg, text_embedder=FakeEmbedder()).fit(ds)
    assert [len(lv) for lv in model.hierarchy_.levels[1:]] == plan_levels(n, cfg).counts
    assert estimate_run(ds, cfg, llm_id="keywords")["clusters_per_level"] == plan_levels(n, cfg).counts
