"""Per-cluster stability (hercules_core/stability.py): computed at fit time, saved, shown, and
absent (None) for older models without breaking any view."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hercules_core import Hercules, HerculesConfig, kmeans as km, load_model, save_model, stability
from hercules_core.cost import DataSummary, estimate_run, format_estimate
from hercules_core.dataset import Dataset
from hercules_core.report import report_data
from devkit.factories import make_hierarchy


def _numeric(X: np.ndarray) -> Dataset:
    n, p = X.shape
    return Dataset(ids=[str(i) for i in range(n)], modality="numeric", numeric=X.astype(np.float32),
                   numeric_raw=X, feature_names=[f"x{j}" for j in range(p)], scaler_mean=np.zeros(p),
                   scaler_scale=np.ones(p))


def _planted(n=1200, k=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.eye(k, 8) * 30  # k far-apart blobs
    return _numeric(centers[rng.integers(0, k, n)] + rng.normal(size=(n, 8)))


def _fit(ds, **cfg):
    return Hercules(HerculesConfig(**cfg)).fit(ds).hierarchy_


def test_planted_clusters_are_all_stable():
    h = _fit(_planted(), level_cluster_counts=(6, 2))
    rec = h.stats["stability"]["levels"]["1"]
    assert min(rec["jaccard"]) > 0.98
    assert rec["stable_runs"] == [5] * 6
    info = stability.cluster_stability(h, 1, 0)
    assert info["stable"] and stability.describe(info).startswith("stable in 5 of 5 re-runs")
    assert stability.level_summary(h)[0]["share_stable"] == 1.0


def test_a_uniform_blob_cut_into_k_is_unstable():
    rng = np.random.default_rng(1)
    h = _fit(_numeric(rng.uniform(size=(1500, 4))), level_cluster_counts=(12, 3))
    summary = {r["level"]: r for r in stability.level_summary(h)}
    assert summary[1]["median"] < 0.75
    assert summary[1]["share_stable"] <= 0.25
    unstable = [j for j in range(12) if not stability.cluster_stability(h, 1, j)["stable"]]
    assert unstable and stability.describe(stability.cluster_stability(h, 1, unstable[0])).startswith("unstable")


def test_deterministic_for_a_seed_and_the_fit_is_unchanged():
    ds = _planted(n=600, seed=3)
    a = _fit(ds, level_cluster_counts=(8, 3), random_state=7)
    b = _fit(ds, level_cluster_counts=(8, 3), random_state=7)
    off = _fit(ds, level_cluster_counts=(8, 3), random_state=7, stability_runs=0)
    assert a.stats["stability"]["levels"] == b.stats["stability"]["levels"]
    assert "stability" not in off.stats and stability.level_summary(off) == []
    # the re-runs draw from their own random stream: the hierarchy is the one without them
    for la, lo in zip(a.levels, off.levels):
        assert np.array_equal(la.parent, lo.parent) and la.titles == lo.titles


def test_model_json_round_trip_and_old_models(tmp_path):
    h = _fit(_planted(n=400), level_cluster_counts=(6, 2))
    save_model(h, tmp_path / "model.json")
    back = load_model(tmp_path / "model.json")
    assert back.stats["stability"] == h.stats["stability"]
    assert stability.cluster_stability(back, 1, 2) == stability.cluster_stability(h, 1, 2)
    # a model saved before stability existed: no record, and every reader copes
    doc = json.loads((tmp_path / "model.json").read_text())
    doc["stats"].pop("stability")
    for k in ("stability_runs", "stability_threshold", "stability_budget"):
        doc["config"].pop(k)
    (tmp_path / "old.json").write_text(json.dumps(doc))
    old = load_model(tmp_path / "old.json")
    assert stability.cluster_stability(old, 1, 0) is None
    assert stability.stability_values(old, 1) is None
    assert stability.level_summary(old) == [] and stability.format_lines(old) == []
    data = report_data(old)
    assert data["stability"] == [] and data["levels"][0]["stability"] == [None] * 6
    assert stability.describe(None) == "stability not measured"


def test_shown_in_report_and_cli_line():
    h = make_hierarchy(ks=(8, 3))  # hand-built: no stability
    assert report_data(h)["levels"][0]["unstable"] == [False] * 8
    fit = _fit(_planted(n=400), level_cluster_counts=(6, 2))
    data = report_data(fit)
    assert data["levels"][0]["stability"][0].startswith("stable in 5 of 5 re-runs (Jaccard")
    line = stability.format_lines(fit)[0]
    assert line.startswith("stability (5 re-runs, Jaccard >= 0.75): L1 6 of 6 stable (100%)")


def test_plan_reduces_samples_to_the_budget_and_the_estimate_states_it():
    cfg = HerculesConfig()
    small = stability.plan(2000, 20, 5, cfg)
    assert small.cheap and small.fraction == stability.SAMPLE_FRACTION
    big = stability.plan(200_000, 1000, 384, cfg)
    assert not big.cheap and big.share == pytest.approx(cfg.stability_budget)
    assert big.fraction * 200_000 / 1000 >= stability.MIN_PER_CLUSTER
    assert stability.plan(1000, 10, 4, cfg.replace(stability_runs=0)).runs == 0
    rng = np.random.default_rng(0)
    ds = DataSummary(n_items=200_000, sample=_numeric(rng.normal(size=(100, 384))))  # 200k rows x 384 columns
    est = estimate_run(ds, HerculesConfig(level_cluster_counts=(1000, 100)), llm_id=None)
    assert est["stability"]["share_of_clustering"] == pytest.approx(0.3)
    assert "stability: 5 re-runs on 6% samples of the items, about 30% of level 1's clustering time" \
        in format_estimate(est)
    off = estimate_run(ds, HerculesConfig(level_cluster_counts=(1000, 100), stability_runs=0), llm_id=None)
    assert "stability: off" in format_estimate(off)


def test_best_jaccard_is_weighted_by_items():
    fit = np.array([0, 0, 1, 1])
    rerun = np.array([0, 1, 1, 1])
    w = np.array([10.0, 1.0, 1.0, 1.0])  # the first point stands for 10 items
    best = stability._best_jaccard(fit, rerun, w, 2, 2)
    assert best[0] == pytest.approx(10 / 11) and best[1] == pytest.approx(2 / 3)


def test_plan_budget_counts_the_sample_level_one_trains_on():
    """Level 1 trains on at most MAX_POINTS_PER_CENTROID points per cluster: at 1M items the re-runs
    sample a share of that, not of all items (6% of 1M at k=1000 cost 1.2x level 1's training)."""
    cfg = HerculesConfig()
    p = stability.plan(1_000_000, 1000, 384, cfg)
    trained = km.MAX_POINTS_PER_CENTROID * 1000
    assert p.fraction * 1_000_000 == pytest.approx(cfg.stability_budget / p.runs * trained)
    assert p.runs * p.fraction * 1_000_000 / trained == pytest.approx(cfg.stability_budget)
    assert p.share == pytest.approx(cfg.stability_budget)
    floor = stability.plan(10_000_000, 10_000, 384, cfg)  # the per-cluster minimum still holds
    assert floor.fraction * 10_000_000 >= stability.MIN_PER_CLUSTER * 10_000 - 1e-6
