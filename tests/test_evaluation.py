import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from hercules_core import evaluation
from hercules_core.config import HerculesConfig
from hercules_core.dataset import Dataset
from hercules_core.errors import InputError
from hercules_core.evaluation import confusion_table, evaluate_all, evaluate_level
from hercules_core.hierarchy import Hierarchy, Level, cluster_id
from devkit.factories import make_hierarchy


def hierarchy_from(X, parents, labels=None, desc=None, **cfg):
    """A hierarchy over items ``X`` whose level l+1 groups level l by ``parents[l]`` (bottom-up)."""
    n = len(X)
    ds = Dataset(ids=[f"i{j}" for j in range(n)], modality="numeric", numeric=X, labels=labels)
    lv0 = Level(0, list(ds.ids), np.zeros(n, np.int32), np.ones(n, np.int64), X, desc, ["t"] * n, ["d"] * n,
                np.zeros(n, bool), ["snippet"] * n)
    levels = [lv0]
    for li, parent in enumerate(parents, start=1):
        below = levels[-1]
        below.parent = np.asarray(parent, np.int32)
        k = int(below.parent.max()) + 1
        size = np.bincount(below.parent, weights=below.size, minlength=k).astype(np.int64)
        vec = np.stack([below.vectors[below.parent == j].mean(0) for j in range(k)]).astype(np.float32)
        levels.append(Level(li, [cluster_id(li, j) for j in range(k)], np.full(k, -1, np.int32), size, vec,
                            vec.copy(), [f"T{j}" for j in range(k)], [f"D{j}" for j in range(k)],
                            np.zeros(k, bool), ["fake"] * k))
    h = Hierarchy(levels, HerculesConfig(level_cluster_counts=None, **cfg), ds)
    h.validate()
    return h


def planted(n_per=40, fine=12, coarse=3, dim=16, seed=0):
    """Well-separated fine clusters grouped into coarse ones; returns (h, fine labels, coarse labels)."""
    rng = np.random.default_rng(seed)
    coarse_of = np.arange(fine) % coarse
    centers = rng.normal(size=(coarse, dim)) * 40
    fine_centers = centers[coarse_of] + rng.normal(size=(fine, dim)) * 8
    y_fine = np.repeat(np.arange(fine), n_per)
    X = (fine_centers[y_fine] + rng.normal(size=(len(y_fine), dim))).astype(np.float32)
    h = hierarchy_from(X, [y_fine, coarse_of], labels=[f"c{c}" for c in coarse_of[y_fine]])
    return h, y_fine, coarse_of[y_fine]


def test_planted_truth_scores_perfectly():
    h, y_fine, y_coarse = planted()
    top = evaluate_level(h, 2)
    assert top["adjusted_rand_score"] == pytest.approx(1.0)
    assert top["normalized_mutual_info_score"] == pytest.approx(1.0)
    assert top["v_measure_score"] == pytest.approx(1.0) and top["n_labelled"] == len(y_coarse)
    assert top["silhouette_score"] > 0.5 and top["children_silhouette_score"] > 0.5
    assert top["n_clusters"] == 3 and top["n_items"] == len(y_fine) and top["level"] == 2
    fine = evaluate_level(h, 1, labels=[str(v) for v in y_fine])
    assert fine["adjusted_rand_score"] == pytest.approx(1.0) and fine["silhouette_score"] > 0.5
    # at level 1 the level below is L0 itself: children_ metrics are the item metrics
    assert fine["children_silhouette_score"] == fine["silhouette_score"]
    assert fine["davies_bouldin_score"] == pytest.approx(skm.davies_bouldin_score(h.levels[0].vectors, y_fine))
    assert fine["calinski_harabasz_score"] == pytest.approx(
        skm.calinski_harabasz_score(h.levels[0].vectors, y_fine), rel=1e-6)


def test_results_are_json_serialisable_and_stored():
    h, _, _ = planted()
    results = evaluate_all(h)
    assert set(results) == {1, 2} and h.evaluation == results
    text = json.dumps(results, allow_nan=False)
    for metrics in json.loads(text).values():
        assert all(v is None or isinstance(v, (int, float, list)) for v in metrics.values())
        for prefix in ("", "children_", "llm_"):
            for name in evaluation.INTERNAL:
                assert prefix + name in metrics


def test_every_level_scored_in_one_pass_equals_each_level_alone():
    """evaluate_all scores the item vectors of all levels in one pass (upper levels from level 1's
    sums): the same Davies-Bouldin and Calinski-Harabasz as evaluating each level alone, and as
    scikit-learn; a level with one cluster stays undefined."""
    h, y_fine, y_coarse = planted(n_per=30)
    rng = np.random.default_rng(5)
    h = hierarchy_from(h.levels[0].vectors, [rng.permutation(len(y_fine)) % 40, np.arange(40) % 12,
                                             np.arange(12) % 3, np.zeros(3, int)])
    results = evaluate_all(h)
    X64 = h.levels[0].vectors.astype(np.float64)
    for level in (1, 2, 3):
        alone = evaluate_level(h, level)
        for name, sk in (("davies_bouldin_score", skm.davies_bouldin_score),
                         ("calinski_harabasz_score", skm.calinski_harabasz_score)):
            assert results[level][name] == pytest.approx(alone[name], rel=1e-12)
            assert results[level][name] == pytest.approx(sk(X64, h.assignments(level)), rel=1e-9)
    assert results[4]["davies_bouldin_score"] is None and results[4]["silhouette_score"] is None


def test_undefined_metrics_are_none():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    fine = np.arange(30) % 5
    # level 2 has a single cluster; level 1 is fine
    h = hierarchy_from(X, [fine, np.zeros(5, int)], labels=["same"] * 30)
    top = evaluate_level(h, 2)
    for prefix in ("", "children_", "llm_"):
        for name in evaluation.INTERNAL:
            assert top[prefix + name] is None
    assert top["adjusted_rand_score"] is None  # a single ground-truth label: undefined
    assert any("undefined" in note for note in top["notes"])
    # every level-2 cluster has exactly one child: children_ metrics undefined, item metrics fine
    h = hierarchy_from(X, [fine, np.arange(5)])
    top = evaluate_level(h, 2)
    assert top["children_silhouette_score"] is None and top["silhouette_score"] is not None
    # one item per L1 cluster: item-level metrics undefined too
    h = hierarchy_from(X[:4], [np.arange(4), np.array([0, 0, 1, 1])])
    assert evaluate_level(h, 1)["silhouette_score"] is None
    assert evaluate_level(h, 2)["silhouette_score"] is not None


def test_labels_forms_and_errors():
    h, _, y_coarse = planted(n_per=10)
    ids = h.levels[0].ids
    as_dict = {i: f"c{c}" for i, c in zip(ids, y_coarse)}
    assert evaluate_level(h, 2, as_dict)["adjusted_rand_score"] == pytest.approx(1.0)
    partial = {i: v for i, v in list(as_dict.items())[::2]}
    res = evaluate_level(h, 2, partial)
    assert res["n_labelled"] == len(partial) and res["adjusted_rand_score"] == pytest.approx(1.0)
    with_missing = [(None, float("nan"), pd.NA)[j % 3] if j % 4 == 0 else f"c{c}" for j, c in enumerate(y_coarse)]
    res = evaluate_level(h, 2, with_missing)
    assert res["n_labelled"] == sum(isinstance(v, str) for v in with_missing)
    assert res["adjusted_rand_score"] == pytest.approx(1.0)
    with pytest.raises(InputError, match=f"Got 5 labels for {len(ids)} items"):
        evaluate_level(h, 2, ["a"] * 5)
    with pytest.raises(InputError, match="None of the 1 label ids"):
        evaluate_level(h, 2, {"nope": "a"})
    with pytest.raises(InputError, match="between 1 and 2"):
        evaluate_level(h, 3)
    h.dataset.labels = None
    res = evaluate_level(h, 2)
    assert res["adjusted_rand_score"] is None and res["n_labelled"] is None


def test_sample_size_is_honoured(monkeypatch):
    h, y_fine, _ = planted(n_per=100)  # 1,200 items
    seen = []
    real = evaluation.skm.silhouette_score

    def spy(X, labels, **kw):
        seen.append(len(X))
        return real(X, labels, **kw)

    monkeypatch.setattr(evaluation.skm, "silhouette_score", spy)
    res = evaluate_level(h, 1, sample_size=300)
    assert seen[0] == 300  # proportional allocation: 25 of each of the 12 clusters
    assert any("sample of 300 of 1200" in note for note in res["notes"])
    assert res["silhouette_score"] > 0.5
    seen.clear()
    evaluate_level(h, 1)  # default: config.evaluation_sample_size (5000) > n: all points
    assert seen[0] == 1200


def test_stratified_sample_keeps_every_cluster():
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.zeros(10_000, int), np.arange(1, 6).repeat(3)])  # one huge, five tiny
    idx = evaluation._sample(labels, 200, rng)
    assert len(idx) <= 200 and len(np.unique(idx)) == len(idx)
    assert set(np.unique(labels[idx])) == set(range(6))
    many = np.arange(1000).repeat(2)  # more clusters than the budget can hold two points each
    assert len(evaluation._sample(many, 100, rng)) == 100


def test_twenty_thousand_points_is_fast():
    rng = np.random.default_rng(0)
    k, n = 20, 20_000
    centers = rng.normal(size=(k, 32)) * 5
    y = rng.integers(0, k, n)
    X = (centers[y] + rng.normal(size=(n, 32))).astype(np.float32)
    h = hierarchy_from(X, [y, np.arange(k) % 4])
    t = time.perf_counter()
    res = evaluate_level(h, 1)
    elapsed = time.perf_counter() - t
    assert res["silhouette_score"] > 0.3
    assert elapsed < 5.0, f"evaluate_level on 20k points took {elapsed:.2f} s"


def test_llm_metrics_use_description_embeddings():
    h, y_fine, _ = planted()
    rng = np.random.default_rng(1)
    h.levels[0].desc_embeddings = rng.normal(size=(h.n_items, 8)).astype(np.float32)  # noise
    res = evaluate_level(h, 1)
    assert res["llm_silhouette_score"] == pytest.approx(
        skm.silhouette_score(h.levels[0].desc_embeddings, y_fine))
    assert res["llm_silhouette_score"] < 0.1 < res["silhouette_score"]
    h.levels[1].desc_embeddings = None
    res = evaluate_level(h, 2)
    assert res["llm_silhouette_score"] is None
    assert any("level 1 description embeddings are not available" in n for n in res["notes"])
    h.config = h.config.replace(calculate_llm_internal_metrics=False)
    res = evaluate_level(h, 1)
    assert res["llm_silhouette_score"] is None and any("disabled" in n for n in res["notes"])


def test_topic_alignment_is_mean_cosine():
    h = make_hierarchy(ks=(6, 2), dim=8)
    assert evaluate_level(h, 1)["topic_alignment"] is None  # no topic embedding
    t = np.random.default_rng(3).normal(size=8).astype(np.float32)
    h.topic_embedding = t
    E = h.levels[1].desc_embeddings
    t64 = t.astype(np.float64)
    expected = np.mean([e @ t64 / (np.linalg.norm(e) * np.linalg.norm(t64)) for e in E.astype(np.float64)])
    assert evaluate_level(h, 1)["topic_alignment"] == pytest.approx(expected, rel=1e-9)
    h.levels[2].desc_embeddings = np.stack([t * 3, -t])
    assert evaluate_level(h, 2)["topic_alignment"] == pytest.approx(0.0, abs=1e-9)
    h.levels[2].desc_embeddings = None
    assert evaluate_level(h, 2)["topic_alignment"] is None


def test_confusion_table():
    h, _, y_coarse = planted(n_per=10)
    table = confusion_table(h, 1, None)
    assert table.shape == (12, 3) and table.values.sum() == h.n_items
    assert list(table.index) == h.levels[1].ids and list(table.columns) == ["c0", "c1", "c2"]
    assert (np.count_nonzero(table.values, axis=1) == 1).all()  # fine clusters are pure
    top = confusion_table(h, 2, [f"c{c}" for c in y_coarse])
    assert np.array_equal(top.values, np.diag(top.values.diagonal())) and top.values.sum() == h.n_items
    h.dataset.labels = None
    with pytest.raises(InputError, match="No labels"):
        confusion_table(h, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 7, 40])
def test_davies_bouldin_and_calinski_harabasz_match_sklearn(dtype, k):
    rng = np.random.default_rng(k)
    labels = np.concatenate([np.arange(k), rng.integers(0, k, 3000)]) * 3 + 5  # non-contiguous label values
    X = (rng.normal(size=(k, 10))[(labels - 5) // 3] * 2 + rng.normal(size=(len(labels), 10)) + 100).astype(dtype)
    # with an upper level (merges the clusters: its sums come from theirs) and an unrelated labelling
    merged = (labels // 2) % 5
    other = rng.integers(0, 3, len(labels))
    scores = evaluation._davies_bouldin_calinski_harabasz(X, [labels, merged, other])
    X64 = X.astype(np.float64)  # scikit-learn's float32 arithmetic is the less precise of the two
    for (db, ch), y in zip(scores, [labels, merged, other]):
        assert db == pytest.approx(skm.davies_bouldin_score(X64, y), rel=1e-9)
        assert ch == pytest.approx(skm.calinski_harabasz_score(X64, y), rel=1e-9)
    # summed from the fine clusters' sums or from the rows: the same to rounding
    assert evaluation._davies_bouldin_calinski_harabasz(X, [merged])[0] == pytest.approx(scores[1], rel=1e-12)


def test_davies_bouldin_and_calinski_harabasz_degenerate():
    X = np.repeat(np.eye(3), 4, axis=0)  # every point on its centroid
    labels = np.repeat(np.arange(3), 4)
    assert evaluation._davies_bouldin_calinski_harabasz(X, [labels]) == [(
        skm.davies_bouldin_score(X, labels), skm.calinski_harabasz_score(X, labels))]


def test_sample_uses_the_whole_budget():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 37, 10_007)
    idx = evaluation._sample(labels, 1000, rng)
    assert len(idx) == 1000 and len(np.unique(idx)) == 1000
    share = np.bincount(labels[idx], minlength=37) / np.bincount(labels, minlength=37)
    assert share.min() > 0.08 and share.max() < 0.12  # close to 1000 / 10007 in every cluster


def test_missing_item_vectors_give_none_with_notes():
    h, _, _ = planted(n_per=10)
    h.levels[0].vectors = None  # a model saved with include_item_vectors=False
    h.levels[0].desc_embeddings = None
    res = evaluate_level(h, 1)
    assert all(res[p + name] is None for p in ("", "children_", "llm_") for name in evaluation.INTERNAL)
    assert any("item (L0) vectors are not available" in n for n in res["notes"])
    assert any("level 0 description embeddings are not available" in n for n in res["notes"])
    assert res["adjusted_rand_score"] is not None
    h.levels[0].desc_embeddings = h.levels[1].vectors[h.assignments(1)]  # shared object case is exercised
    h.levels[0].vectors = h.levels[0].desc_embeddings
    shared = evaluate_level(h, 1)
    assert shared["llm_silhouette_score"] == shared["silhouette_score"] is not None


@pytest.mark.parametrize("case", ["random", "one_label", "one_cluster", "perfect", "singletons", "gaps"])
def test_external_metrics_match_sklearn(case):
    """The external metrics come from one contingency table per level; each equals scikit-learn's."""
    rng = np.random.default_rng(7)
    n = 3000
    y = rng.integers(0, 12, n)
    pred = (y + (rng.random(n) < 0.3) * rng.integers(0, 9, n)) % 9
    if case == "one_label":
        y = np.zeros(n, dtype=np.int64)
    elif case == "one_cluster":
        pred = np.zeros(n, dtype=np.int64)
    elif case == "perfect":
        pred = y.copy()
    elif case == "singletons":
        y, pred = np.arange(50), np.arange(50)[::-1].copy()
    elif case == "gaps":  # codes with unused values in between (clusters no labelled item is in)
        pred = pred * 3
    got = evaluation._external_scores(np.unique(y, return_inverse=True)[1], pred)
    for name in evaluation.EXTERNAL:
        assert got[name] == pytest.approx(getattr(skm, name)(y, pred), rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("labels", [np.array([7, 3, 3, 9, 0]), np.array([-2, 5, -2]), np.array(["b", "a", "b"]),
                                    np.arange(10)[::-1] * 1000, np.array([4], np.uint8)])
def test_dense_codes_are_uniques_inverse(labels):
    assert np.array_equal(evaluation._dense(labels), np.unique(labels, return_inverse=True)[1])


def test_all_finite_checks_every_block(monkeypatch):
    monkeypatch.setattr(evaluation, "_FINITE_VALUES", 21)  # 7 rows per block
    X = np.zeros((1000, 3), np.float32)
    assert evaluation._all_finite(X) and evaluation._all_finite(X[:0])
    X[999, 2] = np.inf  # in the last, partial block
    assert not evaluation._all_finite(X)
    X[999, 2], X[0, 0] = 0, np.nan
    assert not evaluation._all_finite(X)
