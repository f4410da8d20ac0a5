"""Per-cluster stability: would a cluster come back if the clustering were run again?

After the levels are built, every level is clustered again ``stability_runs`` (B) times, each time
on a random subsample of its points with another seed, by the fit's own k-means (same k, restarts,
backend, weights and resampling) in the same space (the clustering space: UMAP vectors, reduced or
description centroids; no embedding or UMAP is recomputed). A cluster's stability is the Jaccard
overlap, counted in items, between it and its best match in a re-run, restricted to the sampled
points (Hennig's clusterboot, "subsetting" scheme), averaged over the re-runs. Level L >= 2 is
re-clustered from the fit's level L - 1 (the same points the fit clustered), so its figure says
how well that grouping of the clusters below reproduces, given those clusters.

A cluster is *stable* at ``stability_threshold`` (Hennig: above 0.75 a cluster is valid and stable,
0.6-0.75 shows a pattern, below 0.5 it dissolves); "stable in m of B re-runs" counts the re-runs
whose best match reaches the threshold.

Cost rule (:func:`plan`): level 1 dominates. When B re-runs on 80% samples would take a tiny amount
of k-means work (``CHEAP_WORK``), they do; otherwise each re-run clusters a sample of
``stability_budget / B`` of the points level 1's k-means trained on (at most
``kmeans.MAX_POINTS_PER_CENTROID`` per cluster: 1.5% of 1M items at k=1000; at least
``MIN_PER_CLUSTER`` items per cluster), so the re-runs cost about ``stability_budget`` of level 1's
k-means. Upper levels have few points and
always use 80% samples. The result lives in ``Hierarchy.stats["stability"]`` (model.json keeps it;
older models have none and :func:`cluster_stability` returns None for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import kmeans as km

__all__ = ["Plan", "LevelInput", "plan", "measure", "cluster_stability", "level_summary", "describe",
           "stability_values", "format_lines", "PATTERN", "SAMPLE_FRACTION", "CHEAP_WORK", "MIN_PER_CLUSTER"]

SAMPLE_FRACTION = 0.8  # share of the points a re-run clusters when that is cheap (and at upper levels)
CHEAP_WORK = 3e8  # n * k * dims of all re-runs together below which they use SAMPLE_FRACTION (~1 s)
MIN_PER_CLUSTER = 5  # a level-1 re-run samples at least this many items per cluster (else it says little)
PATTERN = 0.6  # Hennig: 0.6-0.75 a pattern, below it the cluster dissolves under perturbation
_SEED_SALT = 0x57AB1E  # the re-runs draw from their own stream: the fit's random draws stay as they were


@dataclass(frozen=True)
class Plan:
    """How level 1 is re-clustered: ``runs`` re-runs on ``fraction`` of the items; ``share`` is
    their k-means work as a share of the fit's level 1; ``cheap`` when that work is negligible."""

    runs: int
    fraction: float
    share: float
    cheap: bool


@dataclass
class LevelInput:
    """What the fit clustered at one level: the points (in the clustering space), their k-means
    weights (None: unweighted), the restarts and the backend it used."""

    points: np.ndarray
    weights: np.ndarray | None
    n_init: int
    backend: str


def plan(n: int, k: int, dims: int, config) -> Plan:
    """The level-1 re-run plan for ``n`` points of ``dims`` dimensions cut into ``k`` clusters."""
    runs = int(config.stability_runs)
    if runs <= 0 or n <= k:
        return Plan(0, 0.0, 0.0, True)
    if runs * SAMPLE_FRACTION * n * k * dims <= CHEAP_WORK:
        return Plan(runs, SAMPLE_FRACTION, runs * SAMPLE_FRACTION, True)
    # the fit's level 1 trains on at most MAX_POINTS_PER_CENTROID points per cluster (then assigns the
    # rest), and so does each re-run: the budget is a share of that training, not of all n points
    trained = min(n, km.MAX_POINTS_PER_CENTROID * k)
    fraction = min(SAMPLE_FRACTION, max(config.stability_budget / runs * trained / n, MIN_PER_CLUSTER * k / n))
    return Plan(runs, fraction, runs * min(fraction * n, trained) / trained, False)


def _best_jaccard(fit: np.ndarray, rerun: np.ndarray, weights: np.ndarray, k_fit: int, k_rerun: int) -> np.ndarray:
    """For each fit cluster, the largest weighted Jaccard overlap with a re-run cluster (NaN when
    none of its points were sampled). Sparse: only the pairs that share points are counted."""
    key = fit.astype(np.int64) * k_rerun + rerun.astype(np.int64)
    pairs, inv = np.unique(key, return_inverse=True)
    inter = np.bincount(inv.ravel(), weights=weights)
    rows, cols = pairs // k_rerun, pairs % k_rerun
    row_w = np.bincount(fit, weights=weights, minlength=k_fit)
    col_w = np.bincount(rerun, weights=weights, minlength=k_rerun)
    jac = inter / (row_w[rows] + col_w[cols] - inter)
    best = np.full(k_fit, np.nan)
    np.fmax.at(best, rows, jac)
    return best


def _rerun(inp: LevelInput, idx: np.ndarray, k: int, config, rng: np.random.Generator, init: str) -> np.ndarray:
    X = inp.points[idx]
    w = None if inp.weights is None else inp.weights[idx]
    res = km.kmeans(X, k, rng=rng, sample_weight=w, n_init=inp.n_init, max_iter=config.kmeans_max_iter,
                    backend=inp.backend.split("+")[0], large_threshold=config.kmeans_large_threshold, init=init)
    if config.use_resampling:
        res = km.resample_refine(X, res, rng=rng, iterations=config.resampling_iterations,
                                 points_per_cluster=config.resampling_points_per_cluster, sample_weight=w)
    return res.labels


def measure(levels: Sequence, inputs: Sequence[LevelInput], config) -> dict[str, Any] | None:
    """Stability of every cluster of ``levels[1:]`` (``hierarchy.Level`` objects; ``inputs[i]``
    is what level i + 1 was clustered from). Returns the ``stats["stability"]`` record, or None when
    ``stability_runs`` is 0."""
    runs = int(config.stability_runs)
    if runs <= 0 or not inputs:
        return None
    rng = np.random.default_rng([int(config.random_state), _SEED_SALT])
    threshold = float(config.stability_threshold)
    first = inputs[0].points
    p1 = plan(len(first), len(levels[1]), first.shape[1], config)
    out: dict[str, Any] = {"runs": runs, "threshold": threshold, "budget": float(config.stability_budget),
                           "sample_fraction": {}, "levels": {}}
    for li, inp in enumerate(inputs, start=1):
        below, level = levels[li - 1], levels[li]
        n, k = len(inp.points), len(level)
        fraction = p1.fraction if li == 1 else SAMPLE_FRACTION
        m = int(round(fraction * n))
        if m <= k:  # too few points to re-cluster into k groups
            continue
        sizes = below.size.astype(np.float64)
        scores = np.full((runs, k), np.nan)
        for b in range(runs):
            idx = np.sort(rng.choice(n, size=m, replace=False))
            # k-means++ seeds k centres one after another: on a budgeted sample that alone would
            # exceed the budget (measured: 20 s of a 12,000 x 384 re-run at k=1000), so those
            # re-runs seed from random sampled points and rely on the Lloyd iterations
            init = "random" if li == 1 and not p1.cheap else "k-means++"
            labels = _rerun(inp, idx, k, config, rng, init)
            scores[b] = _best_jaccard(below.parent[idx], labels, sizes[idx], k, k)
        seen = np.isfinite(scores)
        with np.errstate(invalid="ignore"):
            mean = np.where(seen.any(0), np.nansum(scores, 0) / np.maximum(seen.sum(0), 1), np.nan)
        stable = (np.nan_to_num(scores, nan=-1.0) >= threshold).sum(0)
        out["sample_fraction"][str(li)] = round(fraction, 4)
        out["levels"][str(li)] = {
            "jaccard": [None if not np.isfinite(v) else round(float(v), 4) for v in mean],
            "stable_runs": [int(s) for s in stable],
            "runs_seen": [int(s) for s in seen.sum(0)],
        }
    return out


def stability_values(h, level: int) -> np.ndarray | None:
    """Mean best-match Jaccard of every cluster of ``level`` (NaN where unmeasured), or None when
    the model has no stability for that level (older models, stability_runs=0)."""
    rec = ((getattr(h, "stats", None) or {}).get("stability") or {}).get("levels", {}).get(str(level))
    if not rec or len(rec.get("jaccard") or []) != len(h.levels[level]):
        return None
    return np.array([np.nan if v is None else float(v) for v in rec["jaccard"]], dtype=float)


def cluster_stability(h, level: int, index: int) -> dict[str, Any] | None:
    """``{"jaccard", "stable_runs", "runs", "threshold", "stable"}`` of one cluster, or None when it
    was not measured (older models, ``stability_runs=0``, level 0)."""
    st = (getattr(h, "stats", None) or {}).get("stability") or {}
    rec = (st.get("levels") or {}).get(str(level))
    if level < 1 or not rec or not 0 <= index < len(rec.get("jaccard") or []):
        return None
    jac = rec["jaccard"][index]
    if jac is None:
        return None
    runs = int((rec.get("runs_seen") or [st.get("runs", 0)] * (index + 1))[index])
    stable_runs = int(rec["stable_runs"][index])
    threshold = float(st.get("threshold", 0.75))
    return {"jaccard": float(jac), "stable_runs": stable_runs, "runs": runs, "threshold": threshold,
            "stable": float(jac) >= threshold}


def describe(info: dict[str, Any] | None) -> str:
    """"stable in 5 of 5 re-runs (Jaccard 0.93)", "unstable: stable in 1 of 5 re-runs (Jaccard 0.41)"."""
    if info is None:
        return "stability not measured"
    text = f"stable in {info['stable_runs']} of {info['runs']} re-runs (Jaccard {info['jaccard']:.2f})"
    return text if info["stable"] else f"unstable: {text}"


def level_summary(h) -> list[dict[str, Any]]:
    """Per measured level: clusters, share stable (mean Jaccard >= threshold), median and minimum
    Jaccard, and how many clusters are stable / a pattern (>= PATTERN) / dissolving; empty for
    models without stability."""
    st = (getattr(h, "stats", None) or {}).get("stability") or {}
    threshold = float(st.get("threshold", 0.75))
    out = []
    for level in range(1, len(h.levels)):
        vals = stability_values(h, level)
        if vals is None:
            continue
        vals = vals[np.isfinite(vals)]
        if not len(vals):
            continue
        out.append({"level": level, "clusters": int(len(vals)), "share_stable": round(float(np.mean(vals >= threshold)), 4),
                    "median": round(float(np.median(vals)), 4), "min": round(float(vals.min()), 4),
                    "n_stable": int(np.sum(vals >= threshold)),
                    "n_pattern": int(np.sum((vals >= min(PATTERN, threshold)) & (vals < threshold))),
                    "n_dissolving": int(np.sum(vals < min(PATTERN, threshold))),
                    "threshold": threshold, "runs": int(st.get("runs", 0))})
    return out


def format_lines(h) -> list[str]:
    """The CLI's closing line: "stability (5 re-runs, Jaccard >= 0.75): L1 18 of 20 stable (90%),
    median 0.91; L2 ..."; empty for models without stability."""
    rows = level_summary(h)
    if not rows:
        return []
    parts = [f"L{r['level']} {r['n_stable']} of {r['clusters']} stable ({r['share_stable']:.0%}), median {r['median']:.2f}"
             for r in rows]
    return [f"stability ({rows[0]['runs']} re-runs, Jaccard >= {rows[0]['threshold']:g}): " + "; ".join(parts)]
