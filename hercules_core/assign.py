"""Assign new items to a fitted hierarchy, without re-running it and without any LLM call.

Each new item goes to the nearest level-1 centroid in the space the model clustered in (its
parents follow from the tree), with its distance to that centroid and a ``novel`` flag when the
distance is above the 95th percentile of the training items' distances in that cluster.

What assignment needs beyond the hierarchy itself is stored in the model JSON as the versioned
``"assign"`` section (:func:`assignment_info`, written at fit time): how the items became vectors,
which embedder made them, the vector dimension and the per-cluster novelty thresholds. Models
saved before it existed say so and ask for a re-run. The numeric scaling (``scaler_mean``,
``scaler_scale``, ``feature_names``) is the dataset's and was already saved.

Vectors reach the clustering space through one function, :func:`to_clustering_space` (the
identity today), so a reduction step before level 1 only has to be added there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .clients.base import ImageEmbedder, TextEmbedder
from .data import default_l0_descriptions, prepare
from .dataset import Dataset
from .errors import ConfigError, HerculesError, InputError
from .hierarchy import Hierarchy
from .kmeans import nearest_centroids

ASSIGN_VERSION = 1
NOVEL_QUANTILE = 0.95
# a cluster with fewer training items than this borrows the level-wide threshold: the 95th
# percentile of one or two distances says nothing about what is usual
MIN_ITEMS_FOR_OWN_THRESHOLD = 5
AGREEMENT_OK = 0.95  # below this share of training items placed in their own cluster, assign says "approximate"
_DEFAULT_SOURCES = {"snippet", "values", "file name"}


class AssignError(HerculesError):
    """The model cannot assign this data (what is missing or different, and what to do)."""


@dataclass
class AssignResult:
    """The outcome of :func:`assign`.

    Attributes
    ----------
    frame : one row per new item: the columns of ``memberships.csv`` (``item_id``,
        ``L{l}_cluster_id``, ``L{l}_title`` for every level) plus ``distance`` and ``novel``.
    labels : (n_new, top_level) int array, the cluster index at levels 1..top of every item.
    distance : float32 (n_new,), distance to the level-1 centroid in the clustering space.
    novel : bool (n_new,).
    vectors : float32 (n_new, d), the items in the clustering space (e.g. for a 2-D projection).
    how : one sentence saying how the new items were turned into vectors.
    """

    frame: pd.DataFrame
    labels: np.ndarray
    distance: np.ndarray
    novel: np.ndarray
    vectors: np.ndarray
    how: str


# ----------------------------------------------------------------------------- the clustering space
def to_clustering_space(h: Hierarchy, vectors: np.ndarray) -> np.ndarray:
    """Map item vectors (what the embedder or the scaler gives) into the space level 1 was
    clustered in. The identity today: a reduction step before level 1 extends it here."""
    return np.ascontiguousarray(vectors, dtype=np.float32)


# ----------------------------------------------------------------------------- what the model stores
def _described(h: Hierarchy) -> bool:
    """True when level-0 descriptions were written by a model (captions or LLM), not derived."""
    return any(s not in _DEFAULT_SOURCES for s in h.levels[0].sources)


_DIST_ROWS = 1 << 15  # rows per block when measuring the training items' distances to their centroids


def assignment_info(h: Hierarchy, agreement: float | None = None) -> dict[str, Any]:
    """The ``"assign"`` section of a model, computed from a fitted hierarchy (needs level-0 vectors).

    ``agreement``: the share of training items whose nearest level-1 centroid is their own, when the
    caller has just measured it with this rule on these vectors and centroids (the fit's last settle
    search); otherwise a full search measures it here."""
    X = h.levels[0].vectors
    if X is None:
        raise ConfigError("assignment_info needs the level-0 vectors of the fitted hierarchy.")
    cfg = h.config
    stats_models = (h.stats or {}).get("models") or {}
    C = h.levels[1].vectors
    X = to_clustering_space(h, X)
    members = h.levels[0].parent
    dist = np.empty(len(X), dtype=np.float32)
    for s in range(0, len(X), _DIST_ROWS):  # a block at a time: X - C[members] whole is 2 copies of X
        diff = X[s:s + _DIST_ROWS] - C[members[s:s + _DIST_ROWS]]
        dist[s:s + _DIST_ROWS] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    # how often the rule used for new items (nearest level-1 centroid) gives a training item its own
    # cluster: 1.0 when the fit settled level 1 to this rule (level1_settle_steps), less without it
    if agreement is None:
        nearest, _ = nearest_centroids(X, C)
        agreement = float(np.mean(nearest == members)) if len(X) else 1.0
    k = len(C)
    level_wide = float(np.quantile(dist, NOVEL_QUANTILE)) if len(dist) else 0.0
    thresholds = np.full(k, level_wide, dtype=np.float64)
    order = np.argsort(members, kind="stable")
    bounds = np.searchsorted(members[order], np.arange(k + 1))
    for j in range(k):
        d = dist[order[bounds[j]:bounds[j + 1]]]
        if len(d) >= MIN_ITEMS_FOR_OWN_THRESHOLD:
            thresholds[j] = float(np.quantile(d, NOVEL_QUANTILE))
    ds = h.dataset
    return {
        "version": ASSIGN_VERSION,
        "modality": ds.modality,
        "representation_mode": cfg.representation_mode,
        "l0_described": _described(h),
        "space": "identity",
        "dim": int(C.shape[1]),
        "text_embedder": stats_models.get("text_embedder"),
        "image_embedder": stats_models.get("image_embedder"),
        "novel_quantile": NOVEL_QUANTILE,
        "thresholds": thresholds.astype(np.float32),
        "training_agreement": round(agreement, 4),
    }


def _info(h: Hierarchy) -> dict[str, Any]:
    info = getattr(h, "assign_info", None)
    if not info:
        raise AssignError("This model has no assignment data (missing the \"assign\" section: novelty thresholds "
                          "and the embedder it used); it was saved before assignment existed. Re-run the "
                          "hierarchy with this version to enable assign.")
    version = info.get("version")
    if not isinstance(version, int) or version > ASSIGN_VERSION:
        raise AssignError(f"The model's assignment data has version {version!r}; this version reads "
                          f"{ASSIGN_VERSION}: upgrade hercules.")
    missing = [k for k in ("modality", "representation_mode", "dim", "thresholds") if info.get(k) is None]
    if missing:
        raise AssignError(f"The model's assignment data is missing {', '.join(missing)}; re-run to enable assign.")
    C = h.levels[1].vectors
    if C is None or len(np.asarray(info["thresholds"])) != len(C):
        raise AssignError("The model's assignment data does not match its level-1 clusters (or the centroids are "
                          "missing); re-run to enable assign.")
    return info


def describe(h: Hierarchy) -> str:
    """How new items are turned into vectors for this model, and how faithful the placement is on
    the training items when the model recorded it (shown by the CLI and app)."""
    info = _info(h)
    text = _how(info)
    agreement = info.get("training_agreement")
    if isinstance(agreement, (int, float)) and not isinstance(agreement, bool) and 0.0 <= agreement <= 1.0:
        text += (f" Placed by the nearest level-1 centroid, a training item lands in its own cluster "
                 f"{agreement:.1%} of the time")
        text += "." if agreement >= AGREEMENT_OK else ": treat the clusters given to new items as approximate."
    return text


def _how(info: dict[str, Any]) -> str:
    mod, mode = info["modality"], info["representation_mode"]
    emb = info.get("text_embedder")
    if mode == "direct":
        if mod == "text":
            return f"Texts are embedded with {emb}, as in training (direct mode)."
        if mod == "image":
            return f"Images are embedded with {info.get('image_embedder')}, as in training (direct mode)."
        return ("Numeric values are standardised with the model's own means and scales, as in training "
                "(direct mode).")
    if info.get("l0_described"):
        if mod == "image":
            return ("Description mode on captions: assigning images would need new captions from a vision "
                    "model, which assign does not call.")
        return (f"Description mode: training clustered model-written descriptions of the items; assign calls "
                f"no LLM, so it embeds the items' default descriptions ({'the text itself' if mod == 'text' else 'the value string'}) "
                f"with {emb} instead: an approximation.")
    what = {"text": "the texts", "numeric": "the value strings (\"a=1.2, b=3\", as in training)",
            "image": "the placeholder descriptions (\"Image <file name>\", as in training)"}[mod]
    return f"Description mode: {what} are embedded with {emb}, exactly as in training."


def embedders_needed(h: Hierarchy) -> list[str]:
    """Which embedders assigning to ``h`` needs: ``"text_embedder"`` and/or ``"image_embedder"``."""
    info = _info(h)
    if info["representation_mode"] == "direct":
        return {"text": ["text_embedder"], "image": ["image_embedder"], "numeric": []}[info["modality"]]
    return [] if (info["modality"] == "image" and info.get("l0_described")) else ["text_embedder"]


# ----------------------------------------------------------------------------- input
def _as_dataset(h: Hierarchy, data: Any, text_column: str | None, id_column: str | None,
                extract_dir: Any) -> Dataset:
    if isinstance(data, Dataset):
        return data
    model_mod = h.dataset.modality
    cols = _columns_of(data)
    if cols is None:  # a list, array, folder or zip: its own content says what it holds
        kw = {"extract_dir": extract_dir} if isinstance(data, str) or hasattr(data, "__fspath__") else {}
        ds = prepare(data, min_items=1, fit_scaler=False, **kw)
        _check_modality(h, ds)
        return ds
    if model_mod == "numeric":
        names = list(h.dataset.feature_names or [])
        missing = [c for c in names if c not in cols]
        if missing:
            raise InputError(f"The data has no column(s) {', '.join(map(repr, missing[:10]))}: the model was built "
                             f"on the numeric columns {', '.join(names[:20])}. Columns of the data: "
                             f"{', '.join(map(str, cols[:20]))}.")
        return prepare(data, modality="numeric", numeric_columns=names, id_column=id_column, min_items=1,
                       fit_scaler=False)
    column = text_column or next((c for c in ("text", "path") if c in cols and (c == "text") == (model_mod == "text")),
                                 None)
    what = "texts" if model_mod == "text" else "image paths"
    if column is None or column not in cols:
        missing = f"no column {column!r}" if column else f"no column named {'text' if model_mod == 'text' else 'path'!r}"
        raise InputError(f"The data has {missing} for the {what} to assign; its columns are "
                         f"{', '.join(map(str, cols[:20]))}. Name the column ({{param}}).", param="text_column")
    return prepare(data, modality=model_mod, text_column=column, id_column=id_column, min_items=1)


def _columns_of(data: Any) -> list[str] | None:
    """Column names of a DataFrame or a table file (None for anything else: a folder, a zip)."""
    from pathlib import Path

    from .data import TABLE_EXTENSIONS, read_table

    if isinstance(data, pd.DataFrame):
        return [str(c) for c in data.columns]
    if not (isinstance(data, str) or hasattr(data, "__fspath__")):
        return None
    p = Path(data)
    if p.is_file() and p.suffix.lower() in TABLE_EXTENSIONS:
        return [str(c) for c in read_table(p).columns]
    return None


def _check_modality(h: Hierarchy, ds: Dataset) -> None:
    model_mod = h.dataset.modality
    if ds.modality != model_mod:
        raise InputError(f"This model clusters {model_mod} items, but the data holds {ds.modality} items. Assign "
                         f"data of the same kind as the model was built on.")


def _embedder_check(expected: str | None, given: Any, kind: str) -> None:
    if given is None:
        raise ConfigError(f"This model needs the {kind} it was built with ({expected}) to assign new items; "
                          "pass it as {setting}.", param=kind.replace(" ", "_"), value=expected)
    got = getattr(given, "model_id", None)
    if expected and got != expected:
        raise ConfigError(f"This model was built with the {kind} {expected!r}, but {got!r} was given: the vectors "
                          f"would not be comparable. Use the same {kind}.")


def item_vectors(h: Hierarchy, ds: Dataset, *, text_embedder: TextEmbedder | None = None,
                 image_embedder: ImageEmbedder | None = None) -> np.ndarray:
    """The new items as vectors of the kind level 0 was built from (before :func:`to_clustering_space`)."""
    info = _info(h)
    _check_modality(h, ds)
    mod, mode, cfg = info["modality"], info["representation_mode"], h.config
    if mode == "direct" and mod == "numeric":
        model = h.dataset
        if len(model.feature_names or []) != ds.numeric_raw.shape[1]:
            raise InputError(f"Dimension mismatch: the model was built on {len(model.feature_names)} numeric "
                             f"variables ({', '.join(model.feature_names[:20])}), the data has "
                             f"{ds.numeric_raw.shape[1]}.")
        if model.scaler_mean is None or model.scaler_scale is None:
            raise AssignError("The model has no numeric scaling (scaler_mean / scaler_scale); re-run to enable assign.")
        # the expression of StandardScaler.transform, as in training
        return ((ds.numeric_raw - model.scaler_mean) / model.scaler_scale).astype(np.float32)
    if mode == "direct" and mod == "image":
        _embedder_check(info.get("image_embedder"), image_embedder, "image embedder")
        return np.asarray(image_embedder.embed_images(list(ds.image_paths)), dtype=np.float32)
    if mod == "image" and info.get("l0_described"):
        raise AssignError(describe(h) + " Re-run the images in direct mode to assign new images.")
    _embedder_check(info.get("text_embedder"), text_embedder, "text embedder")
    if mod == "text":
        texts = list(ds.texts)
    else:
        texts = default_l0_descriptions(ds, cfg.l0_description_max_chars, cfg.prompt_l0_numeric_repr_precision,
                                        cfg.prompt_l0_numeric_repr_max_vals)
    return np.asarray(text_embedder.embed(texts), dtype=np.float32)


# ----------------------------------------------------------------------------- assign
def assign(h: Hierarchy, data: Any, *, text_embedder: TextEmbedder | None = None,
           image_embedder: ImageEmbedder | None = None, text_column: str | None = None,
           id_column: str | None = None, extract_dir: Any = None) -> AssignResult:
    """Assign new items to ``h``: their cluster at every level, distance, and a novelty flag.

    Parameters
    ----------
    h : a fitted (or loaded) hierarchy whose model carries the ``"assign"`` section.
    data : anything :func:`hercules_core.prepare` accepts (texts, a table file, a DataFrame, a
        numeric array, image paths, a folder or zip of images) or a prepared ``Dataset``.
    text_embedder, image_embedder : the models the hierarchy was built with (checked by id). Wrap
        them with the cache (``hercules_core.cache.wrap``) to reuse cached embeddings.
    text_column, id_column : for tables (the text column defaults to ``text``); numeric tables are
        read by the model's own column names.
    extract_dir : where a zip of images is extracted.

    Raises
    ------
    InputError : the data does not fit the model (modality, missing column, dimensions).
    ConfigError / AssignError : the embedder differs, or the model lacks assignment data.
    """
    info = _info(h)
    ds = _as_dataset(h, data, text_column, id_column, extract_dir)
    _check_modality(h, ds)
    raw = item_vectors(h, ds, text_embedder=text_embedder, image_embedder=image_embedder)
    X = to_clustering_space(h, raw)
    C = h.levels[1].vectors
    if X.ndim != 2 or X.shape[1] != C.shape[1] or X.shape[1] != int(info["dim"]):
        raise InputError(f"Dimension mismatch: the model clusters {C.shape[1]}-dimensional vectors, the new items "
                         f"became {X.shape[1] if X.ndim == 2 else X.shape}-dimensional ones. Use the model's embedder.")
    if not np.all(np.isfinite(X)):
        raise InputError("Some new items became vectors with NaN/inf values; check the data.")
    l1, dist = nearest_centroids(X, C)
    thresholds = np.asarray(info["thresholds"], dtype=np.float32)
    novel = dist > thresholds[l1]
    labels = np.empty((len(X), h.top_level), dtype=np.int64)
    idx = l1.astype(np.int64)
    # explicit object columns: pandas would otherwise convert every string to an Arrow string,
    # which took longer than the whole search
    cols: dict[str, Any] = {"item_id": pd.Series(np.asarray(ds.ids, dtype=object), dtype=object)}
    for level in range(1, h.top_level + 1):
        if level > 1:
            idx = h.levels[level - 1].parent[idx]
        labels[:, level - 1] = idx
        lv = h.levels[level]
        cols[f"L{level}_cluster_id"] = pd.Series(np.asarray(lv.ids, dtype=object)[idx], dtype=object)
        cols[f"L{level}_title"] = pd.Series(np.asarray(lv.titles, dtype=object)[idx], dtype=object)
    cols["distance"] = dist
    cols["novel"] = novel
    return AssignResult(frame=pd.DataFrame(cols), labels=labels, distance=dist, novel=novel, vectors=X,
                        how=describe(h))


def save_assignments(result: AssignResult, path: Any) -> None:
    """Write the result frame as CSV (atomically, formula-looking cells escaped, as memberships.csv).

    ``distance`` stays a number (6 significant digits): only text cells are escaped, so a
    spreadsheet still sorts and sums it.
    """
    from .io import atomic_write, frame_csv

    atomic_write(path, frame_csv(result.frame, float_format="%.6g"))
