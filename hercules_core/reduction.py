"""Reducers: PCA per vector space for plots (paper §3.6), and the clustering space.

A reducer is a plain dict of arrays (``mean``, ``components``, ...) so that it is saved with the
model and applied again later without scikit-learn objects. The reference implementation projected
one vector at a time; here every level is projected with one matrix product per block of rows.

The clustering space (second half of this file) is a representation step before level 1: UMAP to
a few dimensions. Level 1 clusters the reduced item vectors and the levels above cluster their
reduced centroids; it is stored as ``h.reducers["clustering"]`` (the reduced items and every
level's reduced centroids: :func:`clustering_centroids`). Every stored level vector stays in the
original space, and new items are assigned there, to the nearest level-1 centroid in
``h.levels[1].vectors`` (``hercules_core.assign``). Placing an item into the UMAP space from its
neighbours (umap-learn's first guess for a new point; a fitted UMAP object cannot be stored in the
JSON model) agreed with level 1 for only 55-66% of fortune_dev8 (leave-one-out), so no transform of
new points is kept. Instead level 1, once clustered here, is settled in the original space to that
nearest-centroid rule (``kmeans.settle_to_nearest``; before, 97% of fortune_dev8's items at 100
clusters and 91% at 20 came back to their own cluster, now all do).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from .errors import InputError
from .hierarchy import Hierarchy

log = logging.getLogger("hercules_core")

SPACES = ("representation", "description")
_BLOCK_ROWS = 1 << 16  # rows centred at a time: bounds the temporary copy for 200k x 384 inputs


def fit_pca(X: np.ndarray, n_components: int, random_state: int, max_fit_rows: int = 50_000) -> dict[str, Any]:
    """Fit PCA on at most ``max_fit_rows`` rows of ``X`` (sampled with ``random_state``).

    Returns
    -------
    dict
        ``mean`` (d,), ``components`` (n_components, d) float64, ``explained_variance_ratio``
        (n_components,) float64, ``n_components`` and ``fitted_on`` (a short description).
        When ``X`` has fewer than ``n_components`` dimensions (or rows), the missing components
        are zero rows, so projections always have ``n_components`` columns.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise InputError(f"PCA needs a 2-D array (rows x dimensions), got shape {X.shape}.")
    if n_components < 1:
        raise InputError(f"n_components must be >= 1, got {n_components}.")
    n, d = X.shape
    if n == 0 or d == 0:
        raise InputError(f"PCA needs at least one row and one dimension, got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise InputError("PCA input contains NaN or infinite values.")
    if n > max_fit_rows:
        # a few thousand rows pin down 2-3 leading components; fitting on 200k adds only time
        rows = np.sort(np.random.default_rng(random_state).choice(n, size=max_fit_rows, replace=False))
        Xf = X[rows]
    else:
        Xf = X
    n_fit = len(Xf)
    k = min(n_components, d, n_fit)
    components = np.zeros((n_components, d), dtype=np.float64)
    ratio = np.zeros(n_components, dtype=np.float64)
    if n_fit >= 2 and np.any(Xf.max(axis=0) != Xf.min(axis=0)):  # else no direction has variance
        # "auto" picks the full solver for small inputs and randomized / covariance_eigh for big ones
        pca = PCA(n_components=k, svd_solver="auto", random_state=random_state).fit(Xf)
        components[:k] = pca.components_
        ratio[:k] = pca.explained_variance_ratio_
        mean = np.asarray(pca.mean_, dtype=np.float64)
    else:
        mean = Xf.mean(axis=0, dtype=np.float64)
    return {
        "mean": mean,
        "components": components,
        "explained_variance_ratio": ratio,
        "n_components": int(n_components),
        "fitted_on": f"{n_fit} of {n} rows, {d} dimensions",
    }


def project(params: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """Project rows of ``X`` with a reducer from :func:`fit_pca`: ``(X - mean) @ components.T``.

    Returns float32 of shape (n, n_components). Computed in blocks of rows (one matrix product
    each) in float32 for float32 input, so a 200k x 384 array needs no float64 copy.
    """
    X = np.asarray(X)
    mean = np.asarray(params["mean"])
    comps = np.asarray(params["components"])
    if X.ndim != 2 or X.shape[1] != mean.shape[0]:
        raise InputError(f"Cannot project an array of shape {X.shape} with a reducer fitted on "
                         f"{mean.shape[0]} dimensions.")
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    mean_c, comps_t = mean.astype(dtype), np.ascontiguousarray(comps.T, dtype=dtype)
    out = np.empty((X.shape[0], comps.shape[0]), dtype=np.float32)
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        block = X[start:start + _BLOCK_ROWS].astype(dtype, copy=False)
        # centring first (rather than X @ C.T - mean @ C.T) avoids cancellation for offset data
        out[start:start + _BLOCK_ROWS] = (block - mean_c) @ comps_t
    return out


def _stack(arrays: list[np.ndarray | None]) -> np.ndarray | None:
    present = [a for a in arrays if a is not None and len(a)]
    if not present or len({a.shape[1] for a in present}) != 1:
        return None
    return np.concatenate(present, axis=0)


def reduce_hierarchy(h: Hierarchy, n_components: int, random_state: int) -> None:
    """Fit one PCA per vector space and store every level's projections in place.

    ``"representation"`` is fitted on ``levels[0].vectors`` (or, if those were not kept, on the
    stacked vectors of levels >= 1); ``"description"`` on ``levels[0].desc_embeddings``, else on the
    stacked description embeddings of levels >= 1. Parameters go to ``h.reducers[space]``;
    ``level.reductions[space]`` is set for every level whose array exists.

    A level's array is projected with the reducer of its own space when the dimensions match.
    In ``description`` mode the vectors of upper levels live in the description space (they are
    centroids of description embeddings), so they are projected with the description reducer when
    only that one matches; an array that matches neither is left without a reduction.
    """
    sources = {
        "representation": ("vectors", [lv.vectors for lv in h.levels]),
        "description": ("desc_embeddings", [lv.desc_embeddings for lv in h.levels]),
    }
    fits: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
    for space, (attr, arrays) in sources.items():
        if arrays[0] is not None and len(arrays[0]):
            X, where = arrays[0], f"levels[0].{attr}"
        else:
            X, where = _stack(arrays[1:]), f"levels[1:].{attr}"
        if X is None:
            h.reducers.pop(space, None)
            continue
        if id(X) not in fits:  # text runs use one array for both spaces: fit it once
            fits[id(X)] = (X, fit_pca(X, n_components, random_state))  # X kept alive: ids stay unique
        params = dict(fits[id(X)][1])
        params["fitted_on"] = f"{where}: {params['fitted_on']}"
        h.reducers[space] = params
    for lv in h.levels:
        done: dict[tuple[int, int], np.ndarray] = {}
        for space, attr in (("representation", "vectors"), ("description", "desc_embeddings")):
            arr = getattr(lv, attr)
            lv.reductions.pop(space, None)
            if arr is None:
                continue
            for candidate in (space, "description"):
                params = h.reducers.get(candidate)
                if params is not None and arr.ndim == 2 and arr.shape[1] == len(params["mean"]):
                    key = (id(arr), id(params["mean"]))  # same array and reducer: project once
                    if key not in done:
                        done[key] = project(params, arr)
                    lv.reductions[space] = done[key]
                    break


def cluster_positions(h: Hierarchy, level: int, space: str = "representation") -> np.ndarray | None:
    """Where the clusters of ``level`` (>= 1) are drawn in the 2-D projection of ``space``.

    ``"representation"``: the mean of the cluster's items' projections (PCA is linear, so this is
    the projection of the items' mean vector). A level's stored projection is that of its own
    vectors, which for embeddings is the *re-normalised* centroid (``normalize_centroids``; unit
    length, so further from the embedding space's origin than its items' mean) and, above level 1,
    the mean of such centroids: projected, it lands away from the cluster's own items. Without
    item projections (a model that kept no item vectors) the stored projection is all there is.

    ``"description"``: the projection of each cluster's own description embedding (its title and
    description, embedded), drawn among the items' description embeddings: where the text the LLM
    wrote lands, not a mean of anything.
    """
    lv = h.levels[level]
    stored = lv.reductions.get(space)
    items = h.levels[0].reductions.get(space)
    if space != "representation" or level == 0 or items is None:
        return stored
    assign = h.assignments(level)
    counts = np.bincount(assign, minlength=len(lv)).astype(np.float64)
    out = np.stack([np.bincount(assign, weights=items[:, c].astype(np.float64), minlength=len(lv))
                    for c in range(items.shape[1])], axis=1) / np.maximum(counts, 1)[:, None]
    return out.astype(np.float32)


# --------------------------------------------------------------------------- clustering space

CLUSTERING = "clustering"  # key in Hierarchy.reducers
CLUSTERING_VERSION = 1  # of the dict stored under that key
_MIN_UMAP_ITEMS = 10  # below this UMAP's spectral layout is not defined; such runs are not reduced
_MIN_NUMERIC_COLUMNS = 16  # "auto" reduces numeric tables with at least this many columns


def choose_method(config, modality: str, n: int, dims: int) -> tuple[str, str]:
    """The reducer a run uses (``"none"`` or ``"umap"``) and why, in words for the run's notes.

    ``"auto"`` reduces embeddings (text, images, and description mode, whose vectors are text
    embeddings): there k-means in the raw space splits topics along directions the labels do not
    follow, and UMAP's neighbour graph keeps the topics apart (measured in docs/benchmarks.md). A numeric
    table is reduced only when it is wide (pixels, spectra, many measurements: a high-dimensional
    space with structure on a manifold, as in digits and breast_cancer); a table of a dozen columns
    is already a low-dimensional space the user chose (UMAP made k-means worse on wine).
    """
    method = config.reduce_method
    if method == "none":
        return "none", "reduce_method='none'"
    if n < _MIN_UMAP_ITEMS:
        return "none", f"{n} items are too few for UMAP (at least {_MIN_UMAP_ITEMS}); clustered as they are"
    if method == "umap":
        return "umap", "reduce_method='umap'"
    if modality == "numeric" and config.representation_mode != "description" and dims < _MIN_NUMERIC_COLUMNS:
        return "none", f"auto: a numeric table of {dims} columns (< {_MIN_NUMERIC_COLUMNS}) is clustered as it is"
    if n < config.reduce_min_items:
        return "none", f"auto: {n} items < reduce_min_items={config.reduce_min_items}; clustered as they are"
    if n > config.reduce_max_items:
        return "none", (f"auto: {n} items > reduce_max_items={config.reduce_max_items}; clustered as they are, "
                        "reduce_method='umap' forces it")
    what = f"{n} rows x {dims} columns" if modality == "numeric" else f"{modality} embeddings of {n} items"
    return "umap", f"auto: {what}"


def umap_params(config, n: int, metric: str) -> dict[str, Any]:
    """umap-learn's parameters for ``n`` items (neighbours and dimensions clamped to what n allows)."""
    return {"n_components": int(min(config.reduce_components, n - 2)),
            "n_neighbors": int(min(config.reduce_neighbors, n - 1)),
            "min_dist": float(config.reduce_min_dist), "metric": metric,
            "random_state": int(config.random_state)}


def fit_rows(n: int, fit_sample: int, random_state: int) -> np.ndarray | None:
    """The rows UMAP is fitted on: None for all ``n``, else a seeded sample of ``fit_sample`` (sorted)."""
    if fit_sample <= 0 or n <= fit_sample:
        return None
    return np.sort(np.random.default_rng(random_state).choice(n, size=fit_sample, replace=False))


_TRANSFORM_ROWS = 200_000  # rows placed by one umap transform call (bounds its graph's memory)


def _cache_key(X: np.ndarray, params: dict[str, Any], version: str, fit_sample: int = 0) -> tuple:
    h = hashlib.sha256()
    meta = {"params": params, "shape": list(X.shape)}
    if fit_rows(len(X), fit_sample, params["random_state"]) is not None:
        meta["fit_sample"] = int(fit_sample)
    h.update(json.dumps(meta, sort_keys=True).encode())
    h.update(np.ascontiguousarray(X, dtype="<f4").tobytes())
    return ("red", f"umap-learn {version}", h.hexdigest())


def _numba_cache_dir(cache: Any) -> None:
    """Let numba keep its compiled code in the project's cache folder (umap-learn compiles ~20 s of
    code per process; what numba can cache, it then loads). Only before numba's first import."""
    directory = getattr(cache, "directory", None)
    if directory is not None and getattr(cache, "enabled", False) and "NUMBA_CACHE_DIR" not in os.environ:
        os.environ["NUMBA_CACHE_DIR"] = str(os.path.join(str(directory), "numba"))


def fit_umap(X: np.ndarray, params: dict[str, Any], *, cache: Any = None,
             fit_sample: int = 0) -> tuple[np.ndarray, bool]:
    """UMAP of the rows of ``X`` with ``params`` (see :func:`umap_params`): float32 (n, n_components).

    ``fit_sample`` > 0 fits on a seeded sample of that many rows when ``X`` has more
    (:func:`fit_rows`) and places the other rows with umap-learn's ``transform`` (their neighbours
    among the sample, then a short optimisation with the sample held fixed), in blocks of rows.

    With a ``cache`` (``hercules_core.cache.Cache``), the result is looked up and stored under
    ``("red", "umap-learn <version>", sha256(params, shape, X))``: the same vectors with the same
    parameters and seed are reduced once. Returns ``(reduced, from_cache)``.
    ``random_state`` makes umap-learn single-threaded, and its result repeatable.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    try:
        from importlib.metadata import version as _version

        umap_version = _version("umap-learn")
    except Exception:  # pragma: no cover - not installed: the import below says so
        umap_version = "unknown"
    key = _cache_key(X, params, umap_version, fit_sample)
    if cache is not None:
        hit = cache.get(key)
        if isinstance(hit, dict) and tuple(hit.get("shape", ())) == (len(X), params["n_components"]):
            return np.frombuffer(hit["data"], dtype="<f4").reshape(hit["shape"]).astype(np.float32), True
    _numba_cache_dir(cache)
    try:
        import umap
    except ImportError:
        raise InputError("reduce_method='umap' needs umap-learn: pip install 'umap-learn>=0.5.7,<0.6', "
                         "or run with {setting}.", param="reduce_method", value="none") from None
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden to 1 by setting random_state": the price of repeatable results
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*disconnected.*", category=UserWarning)
        rows = fit_rows(len(X), fit_sample, params["random_state"])
        if rows is None:
            reduced = umap.UMAP(**params).fit_transform(X)
        else:
            model = umap.UMAP(**params).fit(X[rows])
            reduced = np.empty((len(X), params["n_components"]), dtype=np.float32)
            rest = np.ones(len(X), dtype=bool)
            rest[rows] = False
            reduced[rows] = model.embedding_
            others = np.flatnonzero(rest)
            for start in range(0, len(others), _TRANSFORM_ROWS):
                block = others[start:start + _TRANSFORM_ROWS]
                reduced[block] = model.transform(X[block])
    reduced = np.ascontiguousarray(reduced, dtype=np.float32)
    if reduced.shape != (len(X), params["n_components"]) or not np.all(np.isfinite(reduced)):
        raise InputError(f"UMAP returned an unusable result (shape {reduced.shape}, non-finite values); "
                         "run with {setting}.", param="reduce_method", value="none")
    if cache is not None:
        cache.set(key, {"shape": reduced.shape, "data": reduced.astype("<f4").tobytes()})
    return reduced, False


def clustering_record(method: str, params: dict[str, Any], items: np.ndarray,
                      centroids: dict[int, np.ndarray], fitted_on: str) -> dict[str, Any]:
    """The dict stored as ``h.reducers["clustering"]`` (arrays are saved with the model)."""
    record: dict[str, Any] = {"version": CLUSTERING_VERSION, "method": method, "fitted_on": fitted_on,
                              **{k: v for k, v in params.items()}, "items": np.asarray(items, np.float32)}
    for level, c in centroids.items():
        record[f"centroids_L{level}"] = np.asarray(c, np.float32)
    return record


def clustering_centroids(h: Hierarchy, level: int) -> np.ndarray:
    """The centroids of ``level`` in the space its clusters were formed in.

    With no clustering reducer (``reduce_method="none"``, older models) that is the level's own
    representation vectors; with UMAP, the reduced centroids stored with the model (or the
    original-space vectors for a level that was clustered in the original space, e.g. the upper
    levels of description mode).
    """
    rec = h.reducers.get(CLUSTERING)
    if rec is not None and rec.get("method") != "none" and f"centroids_L{level}" in rec:
        return np.asarray(rec[f"centroids_L{level}"], np.float32)
    vectors = h.levels[level].vectors
    if vectors is None:
        raise InputError(f"Level {level} has no representation vectors in this model.")
    return np.asarray(vectors, np.float32)
