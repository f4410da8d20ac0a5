"""PCA per vector space for plots (paper §3.6): fitted once, applied to whole arrays.

A reducer is a plain dict of arrays (``mean``, ``components``, ...) so that it is saved with the
model and applied again later without scikit-learn objects. The reference implementation projected
one vector at a time; here every level is projected with one matrix product per block of rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from .errors import InputError
from .hierarchy import Hierarchy

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
