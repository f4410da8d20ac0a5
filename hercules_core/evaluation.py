"""Clustering quality per level (paper §3.7): internal, LLM-based, topic alignment, external.

Every metric is keyed by the name of the scikit-learn function that defines it (Davies-Bouldin and
Calinski-Harabasz are computed here in O(n d), with the same definitions). A metric that is undefined
for the level (one cluster, one point per cluster, missing embeddings, no labels) is ``None`` and,
where the reason is not obvious, ``notes`` says why; evaluation never raises for such cases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn import metrics as skm

from .errors import InputError
from .hierarchy import Hierarchy
from .kmeans import group_sums, sq_dist_to_own
from .title_quality import title_quality

INTERNAL = ("silhouette_score", "davies_bouldin_score", "calinski_harabasz_score")
EXTERNAL = ("adjusted_rand_score", "normalized_mutual_info_score", "homogeneity_score",
            "completeness_score", "v_measure_score")
_FINITE_VALUES = 1 << 22  # values per block when checking that vectors are finite
_CENTROID_ROWS = 2048  # rows per block of the k x k centroid distances (2048 x k float64 at a time)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _dense(labels: np.ndarray) -> np.ndarray:
    """``labels`` as 0..k-1 in the order of their values (np.unique's inverse); for cluster indices
    (small non-negative integers) in O(n) rather than a sort (~60 ms per call at 1M items)."""
    labels = np.asarray(labels).ravel()
    if labels.dtype.kind in "iu" and len(labels) and labels.min() >= 0 and labels.max() < 4 * len(labels):
        return (np.cumsum(np.bincount(labels) > 0) - 1)[labels]
    return np.unique(labels, return_inverse=True)[1].ravel()


def _all_finite(X: np.ndarray) -> bool:
    """No NaN or infinity in ``X``, a block of rows at a time (a boolean copy of 1M x 384 and its
    page faults took ~0.4 s, blocks ~0.15 s)."""
    step = max(1, _FINITE_VALUES // max(1, X[0].size if len(X) else 1))
    return all(np.isfinite(X[s:s + step]).all() for s in range(0, len(X), step))


def _sample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``size`` points, drawn per cluster in proportion to its size.

    Every cluster with two or more points keeps at least two when the budget allows, so a small
    cluster is not dropped from the silhouette (plain random sampling can miss it entirely).
    """
    n = len(labels)
    if n <= size:
        return np.arange(n)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = counts * (size / n)
    quota = np.maximum(np.minimum(counts, 2), np.floor(share).astype(np.int64))
    short = size - int(quota.sum())
    if short > 0:  # seats left by rounding down go to the largest remainders
        room = np.flatnonzero(quota < counts)
        quota[room[np.argsort(quota[room] - share[room], kind="stable")[:short]]] += 1
    order = rng.permutation(n)
    grouped = np.argsort(inv[order], kind="stable")  # clusters together, random order inside
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[grouped] = np.arange(n) - np.repeat(starts, counts)
    keep = order[rank < quota[inv[order]]]
    if len(keep) > size:  # more clusters than the budget can give two points each
        keep = rng.choice(keep, size=size, replace=False)
    return np.sort(keep)


def _davies_bouldin_calinski_harabasz(X: np.ndarray, labelings: list[np.ndarray]) -> list[tuple[float, float]]:
    """Both scores of each labelling of the rows of ``X``, as scikit-learn defines them, in O(n d)
    time and bounded memory.

    scikit-learn loops over clusters with a boolean mask each (O(n k)): ~10 s for 200k items and
    1000 clusters. Here cluster sums are one sparse product and the distances to the centroids are
    taken a block of rows at a time, one pass over ``X`` for all labellings. A labelling that only
    merges clusters of the first (an upper level of the first's) sums the first's cluster sums.
    """
    codes = [_dense(labels) for labels in labelings]
    first = codes[0]
    # float64 sums a block of rows at a time: a sparse product with the whole float32 matrix would
    # first copy it to float64 (3 GB at 1M x 384)
    first_sums, first_counts = group_sums(X, first, int(first.max()) + 1)
    centroids, counts = [], []
    for c in codes:
        k = int(c.max()) + 1
        if c is first:
            sums, cnt = first_sums, first_counts
        else:
            up = np.zeros(len(first_counts), dtype=np.int64)
            up[first] = c  # each first-labelling cluster's cluster here, if this labelling only merges them
            if np.array_equal(up[first], c):
                sums, cnt = group_sums(first_sums, up, k)[0], np.bincount(up, weights=first_counts, minlength=k)
            else:
                sums, cnt = group_sums(X, c, k)
        centroids.append(sums / cnt[:, None])
        counts.append(cnt)
    sq = sq_dist_to_own(X, list(zip(centroids, codes)))
    return [_scores(c, mu, cnt, np.sqrt(d2)) for c, mu, cnt, d2 in zip(codes, centroids, counts, sq)]


def _scores(codes: np.ndarray, centroids: np.ndarray, counts: np.ndarray, dist: np.ndarray) -> tuple[float, float]:
    """Davies-Bouldin and Calinski-Harabasz from the centroids and each row's distance to its own."""
    n, k = len(codes), len(counts)
    intra_disp = float(np.sum(dist ** 2))
    mean = (centroids * counts[:, None]).sum(axis=0) / n
    extra_disp = float(np.sum(counts * np.sum((centroids - mean) ** 2, axis=1)))
    ch = 1.0 if intra_disp == 0 else extra_disp * (n - k) / (intra_disp * (k - 1))
    spread = np.bincount(codes, weights=dist, minlength=k) / counts  # mean distance to the centroid
    worst = np.zeros(k)
    max_dist = 0.0
    for s in range(0, k, _CENTROID_ROWS):  # the k x k centroid distances, a block of rows at a time
        d = cdist(centroids[s:s + _CENTROID_ROWS], centroids)  # exact differences: 0 on the diagonal
        max_dist = max(max_dist, float(d.max()))
        d[d == 0] = np.inf
        worst[s:s + _CENTROID_ROWS] = np.max((spread[s:s + _CENTROID_ROWS, None] + spread[None, :]) / d, axis=1)
    # scikit-learn's convention: 0 when every point sits on its centroid or all centroids coincide
    db = 0.0 if np.allclose(spread, 0) or np.isclose(max_dist, 0) else float(np.mean(worst))
    return db, ch


class _Shared:
    """What the metrics of every level on the (finite) item vectors share, computed once.

    One silhouette sample and its distance matrix: the sample is stratified by level-1 clusters, so
    every cluster of every level above keeps points in it, and the O(s^2) distances are computed
    once instead of once per level. ``scores``: level -> (Davies-Bouldin, Calinski-Harabasz) of the
    items grouped by that level, from one pass over the vectors for all levels (a pass per level
    took ~3 s at 1M x 384); levels with fewer than 2 clusters or one item per cluster are left out.
    """

    def __init__(self, X: np.ndarray, assignments: dict[int, np.ndarray], sample_size: int,
                 rng: np.random.Generator):
        self.X = X
        self.idx = _sample(assignments[1], sample_size, rng)
        self.D = skm.pairwise_distances(np.asarray(X[self.idx], dtype=np.float32))
        n = len(X)
        levels = [lv for lv, a in assignments.items() if 2 <= int(_dense(a).max()) + 1 <= n - 1]
        scores = _davies_bouldin_calinski_harabasz(X, [assignments[lv] for lv in levels]) if levels else []
        self.scores = dict(zip(levels, scores))


def _internal(X: np.ndarray | None, labels: np.ndarray, sample_size: int, rng: np.random.Generator,
              prefix: str, out: dict[str, Any], notes: list[str], what: str,
              shared: _Shared | None = None, scores: tuple[float, float] | None = None) -> None:
    """Silhouette (on a sample), Davies-Bouldin and Calinski-Harabasz (on all points, both linear;
    ``scores`` when they were computed already)."""
    for name in INTERNAL:
        out[prefix + name] = None
    if X is None:
        notes.append(f"{prefix}metrics: {what} are not available.")
        return
    n, k = len(labels), (int(_dense(labels).max()) + 1 if len(labels) else 0)
    if not 2 <= k <= n - 1:
        notes.append(f"{prefix}metrics undefined: {k} clusters for {n} points in {what} "
                     "(need at least 2 clusters and fewer clusters than points).")
        return
    X = np.asarray(X)
    use_shared = shared is not None and shared.X is X
    if not use_shared and not _all_finite(X):  # the shared vectors were checked once
        notes.append(f"{prefix}metrics: {what} contain NaN or infinite values.")
        return
    idx = shared.idx if use_shared else _sample(labels, sample_size, rng)
    if len(idx) < n:
        notes.append(f"{prefix}silhouette_score on a stratified sample of {len(idx)} of {n} points.")
    if 2 <= len(np.unique(labels[idx])) <= len(idx) - 1:
        if use_shared:
            score = skm.silhouette_score(shared.D, labels[idx], metric="precomputed")
        else:
            score = skm.silhouette_score(X[idx], labels[idx])
        out[prefix + "silhouette_score"] = _finite(score)
    db, ch = scores if scores is not None else _davies_bouldin_calinski_harabasz(X, [labels])[0]
    out[prefix + "davies_bouldin_score"], out[prefix + "calinski_harabasz_score"] = _finite(db), _finite(ch)


def _resolve_labels(h: Hierarchy, labels: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Ground truth as (item indices that have a label, their labels as str), or None if none given.

    ``labels`` may be a sequence aligned with the item ids, a mapping id -> label, or None (use the
    dataset's labels). Items whose label is missing (None/NaN, or absent from a mapping) are left out.
    """
    ids = h.levels[0].ids
    if labels is None:
        labels = h.dataset.labels
        if labels is None:
            return None
    if isinstance(labels, Mapping):
        values = [labels.get(i) for i in ids]
        if all(v is None for v in values):
            raise InputError(f"None of the {len(labels)} label ids match the {len(ids)} item ids "
                             f"(first item ids: {', '.join(map(repr, ids[:3]))}).")
    else:
        if isinstance(labels, (str, bytes)) or not isinstance(labels, (Sequence, np.ndarray, pd.Series)):
            raise InputError("labels must be a sequence aligned with the item ids or a dict id -> label.")
        values = list(labels)
        if len(values) != len(ids):
            raise InputError(f"Got {len(values)} labels for {len(ids)} items: give one label per item "
                             "(in item order) or a dict item id -> label.")
    missing = pd.isna(pd.Series(values, dtype=object)).to_numpy()  # None, NaN, pd.NA, NaT
    keep = np.flatnonzero(~missing)
    return keep, np.asarray([str(values[i]) for i in keep], dtype=object)


def _codes(y: np.ndarray) -> np.ndarray:
    # integer codes: scikit-learn's external metrics each sort the labels, and sorting 200k
    # Python strings five times per level cost seconds
    return pd.factorize(y)[0]  # hashed, not sorted: the codes' order does not matter to the metrics


def _entropy(counts: np.ndarray) -> float:
    """scikit-learn's ``_entropy`` from the label counts (natural log; 0 for one label)."""
    pi = counts[counts > 0].astype(np.float64)
    if pi.size <= 1:
        return 0.0
    total = pi.sum()
    return float(-np.sum((pi / total) * (np.log(pi) - math.log(total))))


def _external_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    """The :data:`EXTERNAL` metrics of integer codes ``y`` (truth) and ``pred`` from one sparse
    contingency table, with scikit-learn's definitions and special cases (its functions build the
    table again per metric, sorting all n labels each time: ~12 s per level at 1M items)."""
    table = sp.coo_matrix((np.ones(len(y), dtype=np.int64), (y, pred)),
                          shape=(int(y.max()) + 1, int(pred.max()) + 1)).tocsr()
    table.sum_duplicates()
    rows, cols = np.ravel(table.sum(axis=1)), np.ravel(table.sum(axis=0))
    table = table[rows > 0][:, cols > 0]  # only the labels and clusters present, as scikit-learn counts them
    n_c, n_k = rows[rows > 0], cols[cols > 0]
    n = int(len(y))
    squares = int((table.data.astype(np.int64) ** 2).sum())
    fp = int(table.dot(n_k).sum()) - squares  # pair_confusion_matrix, in Python ints
    fn = int(table.T.dot(n_c).sum()) - squares
    tp = squares - n
    tn = n * n - fp - fn - squares
    ari = 1.0 if fn == 0 and fp == 0 else 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    mi = skm.mutual_info_score(None, None, contingency=table)
    h_c, h_k = _entropy(n_c), _entropy(n_k)
    hom = mi / h_c if h_c else 1.0
    com = mi / h_k if h_k else 1.0
    v = 0.0 if hom + com == 0.0 else 2.0 * hom * com / (hom + com)
    if len(n_c) == len(n_k) == 1:
        nmi = 1.0
    else:
        nmi = 0.0 if mi == 0 else mi / np.mean([h_c, h_k])
    return {"adjusted_rand_score": _finite(ari), "normalized_mutual_info_score": _finite(nmi),
            "homogeneity_score": _finite(hom), "completeness_score": _finite(com), "v_measure_score": _finite(v)}


def _truth_codes(truth: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(labelled item indices, their integer label codes, number of distinct labels): the labels
    sorted and coded once for every level."""
    if truth is None:
        return None
    idx, y = truth
    codes = _codes(y) if len(y) else np.zeros(0, dtype=np.int64)
    return idx, codes, int(codes.max()) + 1 if len(codes) else 0


def _external(truth: tuple[np.ndarray, np.ndarray, int] | None, assign: np.ndarray,
              out: dict[str, Any], notes: list[str]) -> None:
    for name in EXTERNAL:
        out[name] = None
    out["n_labelled"] = None
    if truth is None:
        return
    idx, y, distinct = truth
    out["n_labelled"] = int(len(idx))
    if len(idx) < len(assign):
        notes.append(f"external metrics on the {len(idx)} of {len(assign)} items that have a label.")
    if len(idx) < 2 or distinct < 2:
        notes.append("external metrics undefined: need at least 2 labelled items and 2 distinct labels.")
        return
    out.update(_external_scores(y, np.asarray(assign)[idx]))


def _topic_alignment(h: Hierarchy, level: int, notes: list[str]) -> float | None:
    t, E = h.topic_embedding, h.levels[level].desc_embeddings
    if t is None or E is None:
        return None
    t = np.asarray(t, dtype=np.float64).ravel()
    if E.ndim != 2 or E.shape[1] != t.shape[0]:
        notes.append(f"topic_alignment: topic embedding has {t.shape[0]} dimensions, descriptions {E.shape[1:]}.")
        return None
    E = E.astype(np.float64)
    norms = np.linalg.norm(E, axis=1) * np.linalg.norm(t)
    ok = norms > 0  # a zero vector has no direction: left out rather than counted as 0
    if not ok.any():
        return None
    return _finite(np.mean((E[ok] @ t) / norms[ok]))


def evaluate_level(h: Hierarchy, level: int, labels: Any = None, *, sample_size: int | None = None,
                   random_state: int = 0, _shared: _Shared | None = None,
                   _truth: tuple[np.ndarray, np.ndarray, int] | None | bool = False) -> dict[str, Any]:
    """Metrics of the clusters at ``level`` (>= 1) as a flat, JSON-serialisable dict.

    Parameters
    ----------
    labels : sequence aligned with the item ids, dict id -> label, or None (``h.dataset.labels``).
    sample_size : silhouette is computed on at most this many points (stratified by cluster);
        defaults to ``h.config.evaluation_sample_size``. Davies-Bouldin and Calinski-Harabasz are
        linear in n and use all points.

    Returns
    -------
    dict
        ``level``, ``n_clusters``, ``n_items``; ``silhouette_score``, ``davies_bouldin_score``,
        ``calinski_harabasz_score`` on L0 vectors; the same prefixed ``children_`` on the
        level-below vectors labelled by their parent, and ``llm_`` on the level-below description
        embeddings (when ``config.calculate_llm_internal_metrics``); ``topic_alignment``; the
        external metrics when labels exist (plus ``n_labelled``); ``notes`` (list of str).
    """
    if not 1 <= level <= h.top_level:
        raise InputError(f"level must be between 1 and {h.top_level}, got {level}.")
    sample_size = h.config.evaluation_sample_size if sample_size is None else int(sample_size)
    if sample_size < 2:
        raise InputError(f"sample_size must be >= 2, got {sample_size}.")
    rng = np.random.default_rng(random_state)
    notes: list[str] = []
    assign = h.assignments(level)
    out: dict[str, Any] = {"level": int(level), "n_clusters": len(h.levels[level]), "n_items": h.n_items}

    l0 = _shared.scores.get(level) if _shared is not None and _shared.X is h.levels[0].vectors else None
    _internal(h.levels[0].vectors, assign, sample_size, rng, "", out, notes, "item (L0) vectors", _shared, l0)
    below = h.levels[level - 1]
    if level == 1:  # the level below is L0 itself: identical numbers, no need to compute twice
        for name in INTERNAL:
            out["children_" + name] = out[name]
    else:
        _internal(below.vectors, below.parent, sample_size, rng, "children_", out, notes,
                  f"level {level - 1} vectors")
    llm = h.config.calculate_llm_internal_metrics
    if llm and level == 1 and below.vectors is not None and below.desc_embeddings is below.vectors:
        for name in INTERNAL:  # text runs: the item description embeddings are the item vectors
            out["llm_" + name] = out[name]
    elif llm:
        _internal(below.desc_embeddings, below.parent, sample_size, rng, "llm_", out, notes,
                  f"level {level - 1} description embeddings", _shared)
    else:
        out.update({"llm_" + name: None for name in INTERNAL})
        notes.append("llm_ metrics disabled (calculate_llm_internal_metrics=False).")
    out["topic_alignment"] = _topic_alignment(h, level, notes)
    truth = _truth_codes(_resolve_labels(h, labels)) if _truth is False else _truth
    _external(truth, assign, out, notes)
    out["notes"] = notes
    return out


def evaluate_all(h: Hierarchy, labels: Any = None, *, text_embedder: Any = None) -> dict[int, dict[str, Any]]:
    """Evaluate every level >= 1, store the results in ``h.evaluation`` and return them.

    Each level also gets the ``title_*`` figures of :func:`hercules_core.title_quality.title_quality`
    (self-retrieval needs ``text_embedder``, the run's text embedder).
    """
    shared = None
    X = h.levels[0].vectors
    if X is not None and h.top_level >= 2 and _all_finite(X):
        shared = _Shared(X, {level: h.assignments(level) for level in range(1, h.top_level + 1)},
                         h.config.evaluation_sample_size, np.random.default_rng(h.config.random_state))
    truth = _truth_codes(_resolve_labels(h, labels))  # resolved and coded once for every level
    results = {level: evaluate_level(h, level, labels, random_state=h.config.random_state, _shared=shared,
                                     _truth=truth)
               for level in range(1, h.top_level + 1)}
    for level, quality in title_quality(h, text_embedder).items():
        notes = quality.pop("title_notes")
        results[level].update(quality)
        results[level]["notes"] += notes
    h.evaluation.update(results)
    return results


def confusion_table(h: Hierarchy, level: int, labels: Any = None) -> pd.DataFrame:
    """Counts of items per (cluster at ``level``, ground-truth label): clusters as rows.

    Items without a label are left out; ``labels`` as in :func:`evaluate_level`.
    """
    if not 1 <= level <= h.top_level:
        raise InputError(f"level must be between 1 and {h.top_level}, got {level}.")
    truth = _resolve_labels(h, labels)
    if truth is None:
        raise InputError("No labels: pass labels or prepare the data set with a labels column.")
    idx, y = truth
    names, codes = np.unique(y.astype(str), return_inverse=True)
    k = len(h.levels[level])
    counts = np.zeros((k, len(names)), dtype=np.int64)
    np.add.at(counts, (h.assignments(level)[idx], codes), 1)
    return pd.DataFrame(counts, index=pd.Index(h.levels[level].ids, name="cluster"),
                        columns=pd.Index(names.tolist(), name="label"))
