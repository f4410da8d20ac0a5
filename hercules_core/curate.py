"""Curating a hierarchy: merge, split, move and dissolve clusters, undo and redo, replay, compare.

Every structural edit is a pure function of a :class:`~hercules_core.hierarchy.Hierarchy`: it
returns a :class:`Change` (the new hierarchy and the log entry appended to its ``edit_log``) and
leaves the input as it was. Afterwards ``validate()`` holds, the ids of untouched clusters are
unchanged (their *indices* may shift when rows are removed), and new clusters get fresh numeric ids
never issued before at their level (``edit_counters["L{level}"]``; removed ids are retired).

What is recomputed, for the clusters whose items changed and their ancestors only: sizes,
centroids (``vectors``: the (weighted) mean of what is below, normalised like the fit's), the
clustering-space centroids (``reducers["clustering"]``), the PCA coordinates (``reductions``), the
level-1 novelty thresholds of ``assign_info`` (and its training agreement), and the evaluation of
the levels whose partition changed, which the edit marks ``"stale"`` and :func:`reevaluate` (or
:func:`resummarize_model`, the background half of an edit) measures again: a level's silhouette takes
longer than the edit. Stability figures of the changed clusters become "not measured".
Samples, representatives and numeric statistics are not stored: the app and the report derive them
from the memberships, so they follow. Titles of new clusters are placeholders (source
``"curated"``) until :func:`resummarize` writes them with the run's summariser; :func:`to_retitle`
lists the clusters to re-summarise (touched + ancestors), and a hand-edited title is never
overwritten: it gets ``edits[cid]["children_changed"]`` (the time) instead.

The log entry (JSON-safe) holds ``seq``, ``op``, ``args``, ``who``, ``at`` (UTC ISO), ``effect``
(ids created / removed / touched, items that changed cluster per level, the clusters to re-title)
and, for undo and redo, the full records of the rows it changed before and after (``before`` /
``after``: level orders, rows with their vectors, item parents, evaluation), plus ``targets``: the
item indices of the clusters it named and created, which :func:`replay` matches by Jaccard overlap.
``undo`` re-applies ``before`` (byte-identical memberships, identical ids and titles), ``redo``
re-applies ``after`` exactly (no re-clustering).

Public names: ``Change``, ``merge``, ``split``, ``move``, ``dissolve``, ``undo``, ``redo``,
``apply_op``, ``to_retitle``, ``resummarize``, ``retitle_cost``, ``reevaluate``, ``stale_levels``,
``edit_model``, ``resummarize_model``, ``export_log``, ``replay``, ``compare``, ``format_compare``, ``OPS``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import kmeans as km
from .errors import HerculesError, InputError
from .hierarchy import CLUSTER_ID_RE, Hierarchy, Level
from .io import decode_array, encode_array

__all__ = ["Change", "merge", "split", "move", "dissolve", "undo", "redo", "to_retitle", "resummarize",
           "retitle_cost", "edit_model", "resummarize_model", "reevaluate", "stale_levels", "export_log", "replay",
           "compare", "format_compare", "apply_op", "OPS",
           "CURATED", "MATCH_THRESHOLD", "LOG_FORMAT"]

CURATED = "curated"  # the source of a placeholder title written by an edit, until it is re-summarised
MATCH_THRESHOLD = 0.5  # replay: an entry applies to the best-matching cluster when its Jaccard reaches this
LOG_FORMAT = "hercules-edit-log"
SPLIT_K_MAX = 50
EDIT_INLINE_MAX_ITEMS = 5_000  # a structural edit saves a larger model with its items file (columnar)
_SPLIT_SALT = 0x5_9117  # split seeds: (run seed, salt, log position)
_AGREEMENT_SAMPLE = 5_000  # training agreement after an edit: on a seeded sample of at most this many items
OPS = ("merge", "split", "move", "dissolve", "undo", "redo")


@dataclass
class Change:
    """The outcome of an edit: the new hierarchy and its log entry (JSON-safe)."""

    hierarchy: Hierarchy
    entry: dict[str, Any]


# ============================================================================ small helpers

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _who(who: object) -> str | None:
    if who is None:
        return None
    text = " ".join(str(who).split())[:100]
    return text or None


def _enc(a: np.ndarray | None) -> dict[str, Any] | None:
    return None if a is None else encode_array(np.asarray(a))


def _dec(d: Any) -> np.ndarray | None:
    return None if d is None else decode_array(d)


def _copy(h: Hierarchy) -> Hierarchy:
    """A copy that shares only the item-level arrays (never changed by an edit)."""
    levels = [replace(h.levels[0], parent=h.levels[0].parent.copy())]
    for lv in h.levels[1:]:
        levels.append(Level(lv.level, list(lv.ids), lv.parent.copy(), lv.size.copy(),
                            None if lv.vectors is None else lv.vectors.copy(),
                            None if lv.desc_embeddings is None else lv.desc_embeddings.copy(),
                            list(lv.titles), list(lv.descriptions), lv.fallback.copy(), list(lv.sources),
                            {k: v.copy() for k, v in lv.reductions.items()}, list(lv.description_marks)))
    reducers = {k: dict(v) for k, v in h.reducers.items()}
    return Hierarchy(levels=levels, config=h.config, dataset=h.dataset, reducers=reducers,
                     evaluation=copy.deepcopy(h.evaluation), stats=copy.deepcopy(h.stats),
                     topic_embedding=h.topic_embedding,
                     assign_info=None if h.assign_info is None else dict(h.assign_info),
                     edits=copy.deepcopy(h.edits), edit_log=list(h.edit_log), redo_log=list(h.redo_log),
                     edit_counters=dict(h.edit_counters))


def _locate(h: Hierarchy, cid: object, what: str = "cluster") -> tuple[int, int]:
    """(level, index) of a cluster id; InputError for anything else."""
    if not isinstance(cid, str) or not CLUSTER_ID_RE.fullmatch(cid):
        raise InputError(f"{str(cid)[:40]!r} is not a cluster id (like L1_4); choose clusters from the hierarchy.")
    if cid.startswith("L0_"):
        raise InputError("Level 0 holds the items themselves: only clusters (level 1 and above) can be edited.")
    try:
        c = h.cluster(cid)
    except KeyError:
        raise InputError(f"The hierarchy has no {what} {cid!r} (it may have been merged, split or dissolved "
                         "by another edit); reload and choose again.") from None
    return c.level, c.index


def _parent_id(h: Hierarchy, level: int, j: int) -> str | None:
    if level >= h.top_level:
        return None
    return h.levels[level + 1].ids[int(h.levels[level].parent[j])]


def _fresh_ids(h: Hierarchy, level: int, n: int, prefer: Iterable[str] = ()) -> list[str]:
    """``n`` ids for new clusters of ``level``, never issued before there (the counter only grows).

    ``prefer`` (replay: the ids the entry created in its own run) are taken when no cluster of the level
    has them and they are at or above the counter, so a replay onto the origin run reuses them."""
    key = f"L{level}"
    used = {int(CLUSTER_ID_RE.fullmatch(c).group(2)) for c in h.levels[level].ids if CLUSTER_ID_RE.fullmatch(c)}
    nxt = max(h.edit_counters.get(key, 0), max(used, default=-1) + 1)
    out = []
    for p in list(prefer)[:n]:
        m = CLUSTER_ID_RE.fullmatch(p) if isinstance(p, str) else None
        if m and int(m.group(1)) == level and int(m.group(2)) >= nxt and int(m.group(2)) not in used \
                and p not in out:
            out.append(p)
    taken = {int(CLUSTER_ID_RE.fullmatch(p).group(2)) for p in out}
    while len(out) < n:
        while nxt in taken:
            nxt += 1
        out.append(f"L{level}_{nxt}")
        nxt += 1
    return out  # _finish moves the counter above them (the input hierarchy is not changed)


def _normalized(h: Hierarchy) -> bool:
    value = (h.stats or {}).get("centroids_normalized")
    if value is None:
        X = h.levels[0].vectors
        return X is not None and bool(np.allclose(np.linalg.norm(X[:1000], axis=1), 1.0, atol=1e-3))
    return bool(value)


def _norm_rows(c: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    return c / np.where(norms > 0, norms, 1.0)


def _item_vectors(h: Hierarchy) -> np.ndarray:
    X = h.levels[0].vectors
    if X is None:
        raise InputError("This model was saved without its item vectors, which structural edits need (to place "
                         "items and recompute centroids); re-run it, or save it with the item vectors.")
    return X


def _clustering_record(h: Hierarchy) -> dict[str, Any] | None:
    from .reduction import CLUSTERING

    rec = h.reducers.get(CLUSTERING)
    return rec if rec is not None and rec.get("method") not in (None, "none") else None


def _stability_levels(h: Hierarchy) -> dict[str, Any]:
    return ((h.stats or {}).get("stability") or {}).get("levels") or {}


# ============================================================================ row records

def _record(h: Hierarchy, level: int, j: int) -> dict[str, Any]:
    """Everything stored about row ``j`` of ``level`` (>= 1), JSON-safe: what undo and redo restore."""
    lv = h.levels[level]
    cid = lv.ids[j]
    rec: dict[str, Any] = {
        "parent": _parent_id(h, level, j), "title": lv.titles[j], "description": lv.descriptions[j],
        "source": lv.sources[j], "fallback": bool(lv.fallback[j]),
        "mark": lv.description_marks[j] if lv.description_marks else None,
        "vector": None if lv.vectors is None else _enc(lv.vectors[j]),
        "desc": None if lv.desc_embeddings is None else _enc(lv.desc_embeddings[j]),
        "red": {s: _enc(r[j]) for s, r in sorted(lv.reductions.items())},
        "edit": copy.deepcopy(h.edits.get(cid)),
    }
    crec = _clustering_record(h)
    if crec is not None and f"centroids_L{level}" in crec:
        rec["clus"] = _enc(np.asarray(crec[f"centroids_L{level}"])[j])
    st = _stability_levels(h).get(str(level))
    if st and len(st.get("jaccard") or []) == len(lv):
        rec["stab"] = [st["jaccard"][j], (st.get("stable_runs") or [0] * len(lv))[j],
                       (st.get("runs_seen") or [0] * len(lv))[j]]
    if level == 1 and h.assign_info and h.assign_info.get("thresholds") is not None:
        thr = np.asarray(h.assign_info["thresholds"])
        if len(thr) == len(lv):
            rec["thr"] = float(thr[j])
    return rec


def _rebuild(h: Hierarchy, orders: Mapping[int, list[str]], rows: Mapping[int, Mapping[str, Mapping[str, Any]]],
             items: tuple[np.ndarray, list[str]] | None) -> Hierarchy:
    """A new hierarchy from ``h``: level ``l``'s rows in ``orders[l]`` (default: ``h``'s order), each
    row as in ``h`` with the fields of ``rows[l][id]`` over it (a new row needs all of them), and the
    items ``items[0]`` under the level-1 clusters ``items[1]`` (ids). Sizes follow from the parents."""
    g = _copy(h)
    top = h.top_level
    new_ids: dict[int, list[str]] = {}
    remap: dict[int, np.ndarray] = {}  # old index -> new index (-1: removed), per level >= 1
    pos: dict[int, dict[str, int]] = {}
    take: dict[int, np.ndarray] = {}  # new index -> old index (-1: new row)
    for level in range(1, top + 1):
        old = h.levels[level]
        order = list(orders.get(level, old.ids))
        if len(set(order)) != len(order):
            raise HerculesError(f"Level {level}: an edit produced duplicate ids.")
        old_pos = {c: i for i, c in enumerate(old.ids)}
        t = np.array([old_pos.get(c, -1) for c in order], dtype=np.int64)
        r = np.full(len(old), -1, dtype=np.int64)
        r[t[t >= 0]] = np.flatnonzero(t >= 0)
        new_ids[level], take[level], remap[level] = order, t, r
        pos[level] = {c: i for i, c in enumerate(order)}
    crec = _clustering_record(h)
    stab = _stability_levels(h)
    for level in range(1, top + 1):
        old, lv, t = h.levels[level], g.levels[level], take[level]
        recs = rows.get(level, {})
        n = len(t)
        src = np.maximum(t, 0)
        new = t < 0
        missing = [c for c, is_new in zip(new_ids[level], new) if is_new and c not in recs]
        if missing:
            raise HerculesError(f"Level {level}: new rows {missing[:3]} have no record.")
        lv.ids = list(new_ids[level])

        def rows_of(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else np.asarray(arr)[src].copy() if len(arr) else np.zeros((n,) + arr.shape[1:], arr.dtype)

        lv.vectors = rows_of(old.vectors)
        lv.desc_embeddings = rows_of(old.desc_embeddings)
        lv.fallback = rows_of(old.fallback).astype(bool)
        lv.reductions = {s: rows_of(r) for s, r in old.reductions.items()}
        lv.titles = [old.titles[i] if i >= 0 else "" for i in t]
        lv.descriptions = [old.descriptions[i] if i >= 0 else "" for i in t]
        lv.sources = [old.sources[i] if i >= 0 else CURATED for i in t]
        lv.description_marks = [old.description_marks[i] if i >= 0 else "" for i in t] if old.description_marks else []
        clus = None
        if crec is not None and f"centroids_L{level}" in crec:
            clus = rows_of(np.asarray(crec[f"centroids_L{level}"]))
        st = stab.get(str(level))
        st_ok = bool(st) and len(st.get("jaccard") or []) == len(old)
        if st_ok:
            jac = [st["jaccard"][i] if i >= 0 else None for i in t]
            sr = [(st.get("stable_runs") or [0] * len(old))[i] if i >= 0 else 0 for i in t]
            rs = [(st.get("runs_seen") or [0] * len(old))[i] if i >= 0 else 0 for i in t]
        thr = None
        if level == 1 and h.assign_info and h.assign_info.get("thresholds") is not None \
                and len(h.assign_info["thresholds"]) == len(old):
            thr = np.asarray(h.assign_info["thresholds"])[src].copy()
        # parents as new indices
        if level < top:
            p_old = old.parent[src]
            parent = np.where(t >= 0, remap[level + 1][p_old], -1).astype(np.int64)
        else:
            parent = np.full(n, -1, dtype=np.int64)
        for cid, rec in recs.items():
            i = pos[level].get(cid)
            if i is None:
                continue  # a record of a row that is not in this state (removed)
            if "parent" in rec:
                p = rec["parent"]
                parent[i] = -1 if p is None else pos[level + 1].get(p, -2) if level < top else -1
                if parent[i] == -2:
                    raise HerculesError(f"{cid}'s parent {p} is not in the hierarchy.")
            for key, attr in (("title", "titles"), ("description", "descriptions"), ("source", "sources")):
                if key in rec:
                    getattr(lv, attr)[i] = rec[key]
            if "fallback" in rec:
                lv.fallback[i] = bool(rec["fallback"])
            if "mark" in rec and lv.description_marks:
                lv.description_marks[i] = rec["mark"] or ""
            if rec.get("vector") is not None and lv.vectors is not None:
                lv.vectors[i] = _dec(rec["vector"])
            if rec.get("desc") is not None and lv.desc_embeddings is not None:
                lv.desc_embeddings[i] = _dec(rec["desc"])
            for s, r in (rec.get("red") or {}).items():
                if s in lv.reductions and r is not None:
                    lv.reductions[s][i] = _dec(r)
            if clus is not None and rec.get("clus") is not None:
                clus[i] = _dec(rec["clus"])
            if st_ok and "stab" in rec:
                jac[i], sr[i], rs[i] = rec["stab"] if rec["stab"] is not None else (None, 0, 0)
            if thr is not None and rec.get("thr") is not None:
                thr[i] = rec["thr"]
            if "edit" in rec:
                if rec["edit"] is None:
                    g.edits.pop(cid, None)
                else:
                    g.edits[cid] = copy.deepcopy(rec["edit"])
        if np.any(parent < 0) and level < top:
            bad = [lv.ids[i] for i in np.flatnonzero(parent < 0)[:3]]
            raise HerculesError(f"Level {level}: {bad} lost their parent in an edit.")
        lv.parent = parent.astype(np.int32)
        if clus is not None:
            g.reducers[_clustering_key()][f"centroids_L{level}"] = clus
        if st_ok:
            g.stats["stability"]["levels"][str(level)] = {**st, "jaccard": jac, "stable_runs": sr, "runs_seen": rs}
        if thr is not None:
            g.assign_info["thresholds"] = thr.astype(np.asarray(h.assign_info["thresholds"]).dtype)
    # removed rows: their hand edits go (their records in the log keep them)
    for level in range(1, top + 1):
        for i in np.flatnonzero(remap[level] < 0):
            g.edits.pop(h.levels[level].ids[i], None)
    # items
    p0 = remap[1][h.levels[0].parent]
    if items is not None:
        idx, pids = items
        p0[np.asarray(idx, dtype=np.int64)] = [pos[1].get(p, -1) for p in pids]
    if np.any(p0 < 0):
        raise HerculesError("An edit left items without a level-1 cluster.")
    g.levels[0].parent = p0.astype(np.int32)
    # sizes, bottom-up
    for level in range(1, top + 1):
        below = g.levels[level - 1]
        g.levels[level].size = np.bincount(below.parent, weights=below.size,
                                           minlength=len(g.levels[level])).astype(np.int64)
    if "clusters_per_level" in g.stats:
        g.stats["clusters_per_level"] = [len(lv) for lv in g.levels[1:]]
    return g


def _clustering_key() -> str:
    from .reduction import CLUSTERING

    return CLUSTERING


# ============================================================================ derived values

def _member_lists(assign: np.ndarray, rows: Iterable[int]) -> dict[int, np.ndarray]:
    rows = sorted(set(int(r) for r in rows))
    if not rows:
        return {}
    order = np.argsort(assign, kind="stable")
    sorted_a = assign[order]
    out = {}
    for r in rows:
        lo, hi = np.searchsorted(sorted_a, [r, r + 1])
        out[r] = order[lo:hi]
    return out


def _recompute(h: Hierarchy, g: Hierarchy, changed: dict[int, set[int]], created: dict[int, list[str]],
               sources: dict[str, list[tuple[int, float]]]) -> None:
    """Centroids, clustering centroids, description embeddings (new rows), projections, thresholds and
    stability (not measured) of the rows of ``g`` whose items changed (``changed``: level -> indices)."""
    cfg = g.config
    normalize = _normalized(g)
    crec = _clustering_record(g)
    X = g.levels[0].vectors
    weighted = bool(getattr(cfg, "weight_by_size", True))
    description_mode = cfg.representation_mode == "description"
    for level in range(1, g.top_level + 1):
        rows = sorted(changed.get(level, set()))
        if not rows:
            continue
        lv, below = g.levels[level], g.levels[level - 1]
        if level == 1:
            members = _member_lists(below.parent, rows)
            for j, m in members.items():
                if lv.vectors is not None and X is not None:
                    c = km.weighted_means(X[m], np.zeros(len(m), np.int64), 1)
                    lv.vectors[j] = _norm_rows(c)[0] if normalize else c[0]
                if crec is not None and "centroids_L1" in crec and crec.get("items") is not None:
                    crec["centroids_L1"][j] = km.weighted_means(np.asarray(crec["items"])[m],
                                                                np.zeros(len(m), np.int64), 1)[0]
                if lv.desc_embeddings is not None and lv.ids[j] in created.get(level, ()) \
                        and below.desc_embeddings is not None \
                        and below.desc_embeddings.shape[1] == lv.desc_embeddings.shape[1]:
                    lv.desc_embeddings[j] = _norm_rows(km.weighted_means(
                        below.desc_embeddings[m], np.zeros(len(m), np.int64), 1))[0]
        else:
            members = _member_lists(below.parent, rows)
            w_all = below.size.astype(np.float64)
            for j, m in members.items():
                w = w_all[m] if weighted else None
                z = np.zeros(len(m), np.int64)
                src = below.desc_embeddings if description_mode and below.desc_embeddings is not None else below.vectors
                if lv.vectors is not None and src is not None and src.shape[1] == lv.vectors.shape[1]:
                    c = km.weighted_means(src[m], z, 1, w)
                    lv.vectors[j] = _norm_rows(c)[0] if normalize else c[0]
                key = f"centroids_L{level}"
                if crec is not None and key in crec and f"centroids_L{level - 1}" in crec:
                    crec[key][j] = km.weighted_means(np.asarray(crec[f"centroids_L{level - 1}"])[m], z, 1, w)[0]
                if lv.desc_embeddings is not None and lv.ids[j] in created.get(level, ()) \
                        and below.desc_embeddings is not None \
                        and below.desc_embeddings.shape[1] == lv.desc_embeddings.shape[1]:
                    lv.desc_embeddings[j] = _norm_rows(km.weighted_means(below.desc_embeddings[m], z, 1, w))[0]
        # new rows whose description embedding could not come from below: the mean of what they came from
        for cid in created.get(level, ()):
            j = lv.ids.index(cid)
            if lv.desc_embeddings is not None and h.levels[level].desc_embeddings is not None and (
                    below.desc_embeddings is None
                                                   or below.desc_embeddings.shape[1] != lv.desc_embeddings.shape[1]):
                src_rows = sources.get(cid) or []
                if src_rows:
                    idx = np.array([i for i, _ in src_rows])
                    wts = np.array([w for _, w in src_rows], dtype=np.float64)
                    lv.desc_embeddings[j] = _norm_rows(km.weighted_means(
                        h.levels[level].desc_embeddings[idx], np.zeros(len(idx), np.int64), 1, wts))[0]
        _project(g, level, rows)
        st = _stability_levels(g).get(str(level))
        if st and len(st.get("jaccard") or []) == len(lv):
            for j in rows:
                st["jaccard"][j], st["stable_runs"][j], st["runs_seen"][j] = None, 0, 0
        if level == 1 and g.assign_info and g.assign_info.get("thresholds") is not None and X is not None:
            _thresholds(g, rows, members)


def _project(g: Hierarchy, level: int, rows: list[int]) -> None:
    from .reduction import project

    lv = g.levels[level]
    for space, attr in (("representation", "vectors"), ("description", "desc_embeddings")):
        arr = getattr(lv, attr)
        if arr is None or space not in lv.reductions:
            continue
        for candidate in (space, "description"):
            params = g.reducers.get(candidate)
            if params is not None and arr.shape[1] == len(params["mean"]):
                lv.reductions[space][rows] = project(params, arr[rows])
                break


def _thresholds(g: Hierarchy, rows: list[int], members: dict[int, np.ndarray]) -> None:
    from .assign import MIN_ITEMS_FOR_OWN_THRESHOLD, NOVEL_QUANTILE

    info = g.assign_info
    thr = np.array(info["thresholds"], copy=True)
    if len(thr) != len(g.levels[1]):
        return
    X, C = g.levels[0].vectors, g.levels[1].vectors
    if "level_threshold" not in info:  # the level-wide threshold, for clusters too small for their own
        diff = X - C[g.levels[0].parent]
        info["level_threshold"] = float(np.quantile(np.sqrt(np.einsum("ij,ij->i", diff, diff)), NOVEL_QUANTILE))
    for j in rows:
        m = members.get(j, np.empty(0, np.int64))
        if len(m) >= MIN_ITEMS_FOR_OWN_THRESHOLD:
            d = X[m] - C[j]
            thr[j] = float(np.quantile(np.sqrt(np.einsum("ij,ij->i", d, d)), NOVEL_QUANTILE))
        else:
            thr[j] = info["level_threshold"]
    info["thresholds"] = thr
    # how often the nearest level-1 centroid is an item's own (what assign reports), on a sample
    n = len(X)
    idx = np.arange(n) if n <= _AGREEMENT_SAMPLE else np.sort(
        np.random.default_rng(int(g.config.random_state)).choice(n, _AGREEMENT_SAMPLE, replace=False))
    nearest, _ = km.nearest_centroids(X[idx], C)
    info["training_agreement"] = round(float(np.mean(nearest == g.levels[0].parent[idx])), 4) if n else 1.0
    info["training_agreement_items"] = int(len(idx))


def _reevaluate(g: Hierarchy, levels: Iterable[int]) -> dict[str, Any]:
    """Re-measure the given levels (the partition or the vectors below changed) in place; the title
    figures are kept and marked as measured before the edit."""
    from .evaluation import evaluate_level

    out = {}
    for level in sorted(set(levels)):
        if not 1 <= level <= g.top_level:
            continue
        old = g.evaluation.get(level) or {}
        new = evaluate_level(g, level, random_state=int(g.config.random_state))
        kept = {k: v for k, v in old.items() if k.startswith("title_")}
        if kept:
            new.update(kept)
            new["notes"] = list(new.get("notes", [])) + ["title_ figures were measured before the curation edits."]
        new["curated"] = True
        new.pop("stale", None)
        g.evaluation[level] = new
        out[str(level)] = new
    return out


# ============================================================================ the edit machinery

@dataclass
class _Plan:
    """What an op decides: the rows (and their order) of the levels it changes, and item moves."""

    level: int
    orders: dict[int, list[str]]
    rows: dict[int, dict[str, dict[str, Any]]]
    items: tuple[np.ndarray, list[str]] | None
    created: dict[int, list[str]]
    removed: dict[int, list[str]]
    targets: dict[str, np.ndarray]  # cluster id named by the op -> its item indices
    sources: dict[str, list[tuple[int, float]]]  # new row -> (old row index at its level, weight)


def _empty_ancestors(h: Hierarchy, level: int, lost: dict[int, int], orders, removed) -> None:
    """Remove the clusters of ``level`` that have no children left (``lost``: old index -> children
    lost), and their ancestors that empty in turn."""
    while lost and level <= h.top_level:
        counts = np.bincount(h.levels[level - 1].parent, minlength=len(h.levels[level]))
        gone = [j for j, n in lost.items() if n >= counts[j]]
        if not gone:
            return
        ids = [h.levels[level].ids[j] for j in gone]
        removed.setdefault(level, []).extend(ids)
        orders[level] = [c for c in orders.get(level, h.levels[level].ids) if c not in set(ids)]
        if level == h.top_level:
            return
        nxt: dict[int, int] = {}
        for j in gone:
            p = int(h.levels[level].parent[j])
            nxt[p] = nxt.get(p, 0) + 1
        lost, level = nxt, level + 1


def _finish(h: Hierarchy, plan: _Plan, op: str, args: dict[str, Any], who: object,
            extra: dict[str, Any] | None = None) -> Change:
    at = _now()
    g = _rebuild(h, plan.orders, plan.rows, plan.items)
    for level, ids in plan.created.items():
        key = f"L{level}"
        g.edit_counters[key] = max([g.edit_counters.get(key, 0)] + [_id_key(c)[1] + 1 for c in ids])
    top = h.top_level
    # which items changed cluster at each level, and which rows' item sets changed
    changed: dict[int, set[int]] = {}
    moved_per_level: dict[str, int] = {}
    a_old = np.arange(h.n_items)
    a_new = np.arange(g.n_items)
    remap_ids: dict[int, np.ndarray] = {}
    for level in range(1, top + 1):
        a_old = h.levels[level - 1].parent[a_old]
        a_new = g.levels[level - 1].parent[a_new]
        pos = {c: i for i, c in enumerate(g.levels[level].ids)}
        r = np.array([pos.get(c, -1) for c in h.levels[level].ids], dtype=np.int64)
        remap_ids[level] = r
        mapped = r[a_old]
        moved = mapped != a_new
        moved_per_level[str(level)] = int(moved.sum())
        rows = set(np.unique(a_new[moved]).tolist()) | set(np.unique(mapped[moved & (mapped >= 0)]).tolist())
        rows |= {pos[c] for c in plan.created.get(level, [])}
        changed[level] = rows
    _recompute(h, g, changed, plan.created, plan.sources)
    # touched: rows whose items or children changed, new rows, and all their ancestors
    touched: set[str] = set()
    parent_changed: set[str] = set()
    for level, recs in plan.rows.items():
        for cid, rec in recs.items():
            if "parent" in rec and cid not in plan.created.get(level, []):
                parent_changed.add(cid)
    for level in range(1, top + 1):
        ids = g.levels[level].ids
        touched |= {ids[j] for j in changed[level]}
    # parents of moved / removed rows lost or gained children: they and their ancestors are touched
    seeds = set(touched) | parent_changed
    for level, ids in plan.removed.items():
        for cid in ids:
            p = _parent_id(h, level, h.cluster(cid).index)
            if p is not None:
                seeds.add(p)
    ancestors: set[str] = set()
    for level, ids in plan.removed.items():  # a parent that lost a child, if it is still there
        for cid in ids:
            p = _parent_id(h, level, h.cluster(cid).index)
            if p is not None and p not in _gone(plan):
                ancestors.add(p)
    for cid in seeds:
        if cid in _gone(plan):
            continue
        c = g.cluster(cid)
        while c.parent is not None:
            c = c.parent
            ancestors.add(c.id)
    removed_all = _gone(plan)
    # a moved cluster keeps its own items: it is not re-titled, only its old and new parents
    retitle_candidates = (touched | ancestors) - (parent_changed - touched) - removed_all
    flagged, retitle = [], []
    for cid in _bottom_up(g, retitle_candidates):
        rec = g.edits.get(cid)
        if rec is not None and "edited" in rec:
            g.edits[cid] = {**rec, "children_changed": at}
            flagged.append(cid)
        else:
            retitle.append(cid)
    # evaluation: levels whose partition changed, and the level above levels whose vectors changed
    eval_levels = {int(l) for l, n in moved_per_level.items() if n} | {
        l + 1 for l in changed if changed[l] and l + 1 <= top} | {l for l in changed if changed[l]}
    # the metrics of those levels are marked stale here and re-measured by reevaluate() (in the background,
    # with the re-titling: a level's silhouette and friends take longer than the edit itself)
    before_eval = {str(l): copy.deepcopy(h.evaluation.get(l)) for l in eval_levels if 1 <= l <= top}
    after_eval = {}
    for key in before_eval:
        if g.evaluation.get(int(key)) is not None:
            g.evaluation[int(key)] = {**g.evaluation[int(key)], "stale": True}
            after_eval[key] = copy.deepcopy(g.evaluation[int(key)])
    g.validate()
    # the entry: records before and after of every row that differs
    created_all = _created_set(plan)
    modified = (touched | ancestors | parent_changed | set(flagged)) - created_all - removed_all
    before, after = _side(h, plan, removed_all | modified), _side(g, plan, created_all | modified)
    before["evaluation"], after["evaluation"] = before_eval, after_eval
    if h.assign_info is not None:
        keys = ("training_agreement", "training_agreement_items", "level_threshold")
        before["assign"] = {k: h.assign_info.get(k) for k in keys}
        after["assign"] = {k: g.assign_info.get(k) for k in keys}
    if plan.items is not None:
        idx = np.asarray(plan.items[0], dtype=np.int64)
        before["items"] = _items_side(h, idx)
        after["items"] = _items_side(g, idx)
    seq = int(h.edit_counters.get("entry", len(h.edit_log)))
    g.edit_counters["entry"] = seq + 1
    entry = {
        "seq": seq, "op": op, "args": args, "who": _who(who), "at": at, "level": plan.level,
        "effect": {
            "created": sorted(created_all, key=_id_key), "removed": sorted(removed_all, key=_id_key),
            "touched": sorted(touched | ancestors | parent_changed, key=_id_key),
            "items_moved": moved_per_level, "retitle": retitle, "flagged": flagged,
        },
        "targets": {cid: _enc(np.asarray(m, dtype=np.int32)) for cid, m in plan.targets.items()},
        "created_items": {cid: _enc(g.members(*_lv_idx(g, cid)).astype(np.int32)) for cid in created_all},
        "before": before, "after": after,
        **(extra or {}),
    }
    g.edit_log = list(h.edit_log) + [entry]
    g.redo_log = []
    return Change(g, entry)


def _created_set(plan: _Plan) -> set[str]:
    return {c for ids in plan.created.values() for c in ids}


def _gone(plan: _Plan) -> set[str]:
    return {c for ids in plan.removed.values() for c in ids}


def _lv_idx(h: Hierarchy, cid: str) -> tuple[int, int]:
    c = h.cluster(cid)
    return c.level, c.index


def _id_key(cid: str) -> tuple[int, int]:
    m = CLUSTER_ID_RE.fullmatch(cid)
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)


def _bottom_up(h: Hierarchy, ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=_id_key)


def _side(h: Hierarchy, plan: _Plan, ids: set[str]) -> dict[str, Any]:
    """The records of ``ids`` (those present in ``h``) and the order of every level that gains or loses rows."""
    levels: dict[str, Any] = {}
    changed_levels = set(plan.created) | set(plan.removed)
    by_level: dict[int, list[str]] = {}
    for cid in ids:
        try:
            level, j = _lv_idx(h, cid)
        except KeyError:
            continue
        by_level.setdefault(level, []).append(cid)
    for level in sorted(changed_levels | set(by_level)):
        entry: dict[str, Any] = {}
        if level in changed_levels:
            entry["order"] = list(h.levels[level].ids)
        entry["rows"] = {cid: _record(h, level, _lv_idx(h, cid)[1]) for cid in sorted(by_level.get(level, []), key=_id_key)}
        levels[str(level)] = entry
    return {"levels": levels}


def _items_side(h: Hierarchy, idx: np.ndarray) -> dict[str, Any]:
    ids = np.asarray(h.levels[1].ids, dtype=object)[h.levels[0].parent[idx]]
    names, codes = np.unique(ids.astype(str), return_inverse=True)
    return {"idx": _enc(idx.astype(np.int32)), "parents": names.tolist(), "codes": _enc(codes.astype(np.int32))}


def _apply_side(h: Hierarchy, side: Mapping[str, Any]) -> Hierarchy:
    orders: dict[int, list[str]] = {}
    rows: dict[int, dict[str, dict[str, Any]]] = {}
    for key, entry in (side.get("levels") or {}).items():
        level = int(key)
        if "order" in entry:
            orders[level] = list(entry["order"])
        rows[level] = dict(entry.get("rows") or {})
    items = None
    if side.get("items"):
        it = side["items"]
        idx = _dec(it["idx"]).astype(np.int64)
        codes = _dec(it["codes"]).astype(np.int64)
        items = (idx, [it["parents"][c] for c in codes])
    g = _rebuild(h, orders, rows, items)
    for key, ev in (side.get("evaluation") or {}).items():
        if ev is None:
            g.evaluation.pop(int(key), None)
        else:
            g.evaluation[int(key)] = copy.deepcopy(ev)
    if g.assign_info is not None:
        for k, v in (side.get("assign") or {}).items():
            if v is None:
                g.assign_info.pop(k, None)
            else:
                g.assign_info[k] = v
    return g


# ============================================================================ the ops

def _check_level_ok(h: Hierarchy) -> None:
    if h.top_level < 1:
        raise InputError("The hierarchy has no clusters to edit.")


def merge(h: Hierarchy, cluster_ids: list[str], *, who: object = None, _prefer: Iterable[str] = ()) -> Change:
    """Merge two or more clusters of one level (any parents) into one new cluster, placed under the
    parent of the largest; parents left without children are removed, up the tree."""
    _check_level_ok(h)
    if isinstance(cluster_ids, str) or not isinstance(cluster_ids, (list, tuple)):
        raise InputError("Choose two or more clusters to merge.")
    ids = list(dict.fromkeys(cluster_ids))
    if len(ids) < 2:
        raise InputError("Choose at least two different clusters to merge.")
    if len(ids) > 1000:
        raise InputError(f"{len(ids):,} clusters were chosen; merge at most 1,000 at once.")
    located = [_locate(h, c) for c in ids]
    levels = {lv for lv, _ in located}
    if len(levels) > 1:
        raise InputError(f"Only clusters of one level can be merged; these are on levels "
                         f"{', '.join(str(l) for l in sorted(levels))}. Choose clusters of the same level.")
    level = levels.pop()
    lv = h.levels[level]
    idx = [j for _, j in located]
    largest = max(idx, key=lambda j: (int(lv.size[j]), -idx.index(j)))
    parent = _parent_id(h, level, largest)
    (new_id,) = _fresh_ids(h, level, 1, _prefer)
    gone = {lv.ids[j] for j in idx}
    orders = {level: [c for c in lv.ids if c not in gone] + [new_id]}
    rows: dict[int, dict[str, dict[str, Any]]] = {level: {new_id: {
        "parent": parent, "title": lv.titles[largest], "description": lv.descriptions[largest],
        "source": CURATED, "fallback": False, "mark": ""}}}
    items = None
    targets = {lv.ids[j]: h.members(level, j) for j in idx}
    if level == 1:
        m = np.sort(np.concatenate([targets[lv.ids[j]] for j in idx]))
        items = (m, [new_id] * len(m))
    else:
        below = h.levels[level - 1]
        rows[level - 1] = {below.ids[c]: {"parent": new_id} for j in idx for c in h.children_of(level, j)}
    removed = {level: sorted(gone, key=_id_key)}
    if level < h.top_level:
        lost: dict[int, int] = {}
        for j in idx:
            p = int(lv.parent[j])
            if _parent_id(h, level, j) != parent:
                lost[p] = lost.get(p, 0) + 1
        # the parent of the largest keeps the merged cluster; others lose their merged children
        _empty_ancestors(h, level + 1, lost, orders, removed)
    sources = {new_id: [(j, float(lv.size[j])) for j in idx]}
    plan = _Plan(level, orders, rows, items, {level: [new_id]}, removed, targets, sources)
    return _finish(h, plan, "merge", {"ids": ids}, who)


def _split_points(h: Hierarchy, level: int, members: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The points level ``level`` was clustered from (the clustering space), for ``members`` of the
    level below, and their k-means weights."""
    cfg = h.config
    crec = _clustering_record(h)
    if level == 1:
        if crec is not None and crec.get("items") is not None:
            return np.asarray(crec["items"])[members], None
        return _item_vectors(h)[members], None
    below = h.levels[level - 1]
    w = below.size[members].astype(np.float64) if cfg.weight_by_size else None
    if cfg.representation_mode == "description" and below.desc_embeddings is not None:
        return below.desc_embeddings[members], w
    if crec is not None and f"centroids_L{level - 1}" in crec:
        return np.asarray(crec[f"centroids_L{level - 1}"])[members], w
    if below.vectors is None:
        raise InputError(f"Level {level - 1} has no vectors in this model: it cannot be re-clustered.")
    return below.vectors[members], w


def split(h: Hierarchy, cluster_id: str, k: int, *, who: object = None, seed: int | None = None,
          _prefer: Iterable[str] = ()) -> Change:
    """Split a cluster into ``k`` new clusters of its level (same parent) by re-clustering its own
    members (its children, or its items at level 1) with the run's k-means settings in the space
    the run clustered in; seeded from the run's seed and the log position, so it is repeatable."""
    _check_level_ok(h)
    level, j = _locate(h, cluster_id)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError("The number of parts k must be a whole number (2 or more).")
    k = int(k)
    lv = h.levels[level]
    members = h.children_of(level, j) if level >= 2 else h.members(1, j)
    what = "children" if level >= 2 else "items"
    if len(members) < 2:
        raise InputError(f"{cluster_id} has only one {'child' if level >= 2 else 'item'}: there is nothing to split.")
    upper = min(len(members), SPLIT_K_MAX)
    if not 2 <= k <= upper:
        raise InputError(f"k must be between 2 and {upper} for {cluster_id} ({len(members):,} {what}); got {k}.")
    cfg = h.config
    position = int(h.edit_counters.get("entry", len(h.edit_log)))
    seed = int(seed) if seed is not None else int(np.random.default_rng(
        [int(cfg.random_state), _SPLIT_SALT, position]).integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    points, weights = _split_points(h, level, members)
    n_init = cfg.kmeans_n_init if level == 1 else int(np.clip(
        cfg.kmeans_upper_work_budget / (points.size * k), 1, cfg.kmeans_upper_n_init))
    result = km.kmeans(points, k, rng=rng, sample_weight=weights, n_init=n_init, max_iter=cfg.kmeans_max_iter,
                       backend=cfg.kmeans_backend, large_threshold=cfg.kmeans_large_threshold)
    if cfg.use_resampling:
        result = km.resample_refine(points, result, rng=rng, iterations=cfg.resampling_iterations,
                                    points_per_cluster=cfg.resampling_points_per_cluster, sample_weight=weights)
    labels = result.labels.astype(np.int64)
    if level == 1 and h.levels[0].vectors is not None:
        # as the fit does: settle to the nearest centroid in the stored space (the rule assign uses)
        labels = km.settle_to_nearest(h.levels[0].vectors[members], labels, k, normalize=_normalized(h),
                                      max_steps=cfg.level1_settle_steps).labels.astype(np.int64)
    if len(np.unique(labels)) < k:
        raise InputError(f"{cluster_id}'s {what} could not be cut into {k} non-empty parts (too many are identical); "
                         "choose a smaller k.")
    new_ids = _fresh_ids(h, level, k, _prefer)
    parent = _parent_id(h, level, j)
    orders = {level: [c for c in lv.ids if c != cluster_id] + new_ids}
    rows: dict[int, dict[str, dict[str, Any]]] = {level: {
        cid: {"parent": parent, "title": f"{lv.titles[j]} ({i + 1} of {k})"[:120],
              "description": lv.descriptions[j], "source": CURATED, "fallback": False, "mark": ""}
        for i, cid in enumerate(new_ids)}}
    items = None
    if level == 1:
        items = (members, [new_ids[c] for c in labels])
    else:
        below = h.levels[level - 1]
        rows[level - 1] = {below.ids[m]: {"parent": new_ids[c]} for m, c in zip(members, labels)}
    sources = {cid: [(j, 1.0)] for cid in new_ids}
    plan = _Plan(level, orders, rows, items, {level: new_ids}, {level: [cluster_id]},
                 {cluster_id: h.members(level, j)}, sources)
    return _finish(h, plan, "split", {"id": cluster_id, "k": k}, who, {"seed": seed})


def move(h: Hierarchy, cluster_id: str, new_parent_id: str, *, who: object = None) -> Change:
    """Move a cluster under another parent (a cluster one level up); a parent left without children
    is removed, up the tree."""
    _check_level_ok(h)
    level, j = _locate(h, cluster_id)
    if level == h.top_level:
        raise InputError(f"{cluster_id} is on the top level: it has no parent to change.")
    plevel, pj = _locate(h, new_parent_id, "parent cluster")
    if plevel != level + 1:
        raise InputError(f"The new parent must be one level up (level {level + 1}); {new_parent_id} is on level "
                         f"{plevel}.")
    old_parent = _parent_id(h, level, j)
    if old_parent == new_parent_id:
        raise InputError(f"{cluster_id} is already under {new_parent_id}; choose another parent.")
    orders: dict[int, list[str]] = {}
    removed: dict[int, list[str]] = {}
    rows = {level: {cluster_id: {"parent": new_parent_id}}}
    _empty_ancestors(h, level + 1, {int(h.levels[level].parent[j]): 1}, orders, removed)
    plan = _Plan(level, orders, rows, None, {}, removed,
                 {cluster_id: h.members(level, j), new_parent_id: h.members(plevel, pj)}, {})
    return _finish(h, plan, "move", {"id": cluster_id, "parent": new_parent_id}, who)


def dissolve(h: Hierarchy, cluster_id: str, *, who: object = None) -> Change:
    """Dissolve a cluster: its children (its items at level 1) go to the nearest remaining sibling
    (same parent) by centroid."""
    _check_level_ok(h)
    level, j = _locate(h, cluster_id)
    lv = h.levels[level]
    siblings = np.flatnonzero(lv.parent == lv.parent[j])
    siblings = siblings[siblings != j]
    if not len(siblings):
        raise InputError(f"{cluster_id} has no sibling (no other cluster under the same parent) to take its "
                         f"{'items' if level == 1 else 'children'}: merge it with another cluster or move it first.")
    if lv.vectors is None:
        raise InputError(f"Level {level} has no centroids in this model: its clusters cannot be dissolved.")
    if level == 1:
        members = h.members(1, j)
        points = _item_vectors(h)[members]
    else:
        members = h.children_of(level, j)
        below = h.levels[level - 1]
        if below.vectors is None:
            raise InputError(f"Level {level - 1} has no vectors in this model.")
        points = below.vectors[members]
    nearest, _ = km.nearest_centroids(points, lv.vectors[siblings])
    targets_ids = [lv.ids[s] for s in siblings[nearest]]
    orders = {level: [c for c in lv.ids if c != cluster_id]}
    rows: dict[int, dict[str, dict[str, Any]]] = {}
    items = None
    if level == 1:
        items = (members, targets_ids)
    else:
        below = h.levels[level - 1]
        rows[level - 1] = {below.ids[m]: {"parent": t} for m, t in zip(members, targets_ids)}
    plan = _Plan(level, orders, rows, items, {}, {level: [cluster_id]}, {cluster_id: h.members(level, j)}, {})
    return _finish(h, plan, "dissolve", {"id": cluster_id}, who)


def _apply_entry(h: Hierarchy, entry: Mapping[str, Any], side: str) -> Hierarchy:
    """``h`` with one side (``before`` / ``after``) of a log entry applied; a damaged entry (a model
    file edited by hand, or imported) is a ModelFileError, not an internal error."""
    from .errors import ModelFileError

    try:
        g = _apply_side(h, entry[side])
        g.validate()
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, HerculesError) as e:
        raise ModelFileError(f"The model's edit log is damaged (entry {str(entry.get('seq'))[:12]}, "
                             f"{str(entry.get('op'))[:20]}: {type(e).__name__}: {str(e)[:200]}); it cannot be "
                             f"{'undone' if side == 'before' else 'redone'}. Download the model to keep it, or "
                             "re-run.") from None
    return g


def undo(h: Hierarchy) -> Change:
    """Undo the last edit of ``h.edit_log`` (it goes to ``redo_log``)."""
    if not h.edit_log:
        raise InputError("There is nothing to undo.")
    entry = h.edit_log[-1]
    g = _apply_entry(h, entry, "before")
    g.edit_log, g.redo_log = list(h.edit_log[:-1]), list(h.redo_log) + [entry]
    return Change(g, entry)


def redo(h: Hierarchy) -> Change:
    """Re-apply the last undone edit exactly as it was (no re-clustering, no LLM call)."""
    if not h.redo_log:
        raise InputError("There is nothing to redo.")
    entry = h.redo_log[-1]
    g = _apply_entry(h, entry, "after")
    g.edit_log, g.redo_log = list(h.edit_log) + [entry], list(h.redo_log[:-1])
    return Change(g, entry)


# ============================================================================ title edits

def log_retitle(h: Hierarchy, cluster_id: str, before: dict[str, Any], *, who: object = None) -> dict[str, Any]:
    """Append the log entry of a title edit already applied in place to ``h`` (``before``: the
    cluster's record from :func:`title_record` before the edit). Clears the redo stack."""
    level, j = _lv_idx(h, cluster_id)
    after = title_record(h, cluster_id)
    seq = int(h.edit_counters.get("entry", len(h.edit_log)))
    h.edit_counters["entry"] = seq + 1
    entry = {
        "seq": seq, "op": "retitle", "args": {"id": cluster_id, "title": after["title"],
                                               "description": after["description"]},
        "who": _who(who), "at": _now(), "level": level,
        "effect": {"created": [], "removed": [], "touched": [cluster_id], "items_moved": {}, "retitle": [],
                   "flagged": []},
        "targets": {cluster_id: _enc(h.members(level, j).astype(np.int32))}, "created_items": {},
        "before": {"levels": {str(level): {"rows": {cluster_id: before}}}},
        "after": {"levels": {str(level): {"rows": {cluster_id: after}}}},
    }
    h.edit_log = list(h.edit_log) + [entry]
    h.redo_log = []
    return entry


def title_record(h: Hierarchy, cluster_id: str) -> dict[str, Any]:
    """The text fields of a cluster (what a title edit changes), for the log."""
    level, j = _lv_idx(h, cluster_id)
    lv = h.levels[level]
    return {"title": lv.titles[j], "description": lv.descriptions[j], "source": lv.sources[j],
            "fallback": bool(lv.fallback[j]), "mark": lv.description_marks[j] if lv.description_marks else None,
            "edit": copy.deepcopy(h.edits.get(cluster_id))}


# ============================================================================ re-titling

def to_retitle(h: Hierarchy, entry: Mapping[str, Any]) -> list[str]:
    """The clusters to re-summarise after ``entry`` (touched + ancestors, bottom-up), still present in
    ``h`` and not hand-edited; hand-edited ones get ``edits[cid]["children_changed"]`` instead."""
    out = []
    effect = entry.get("effect") or {}
    for cid in list(effect.get("retitle") or []) + list(effect.get("flagged") or []):
        try:
            h.cluster(cid)
        except KeyError:
            continue
        rec = h.edits.get(cid)
        if rec is not None and "edited" in rec:
            if "children_changed" not in rec:
                h.edits[cid] = {**rec, "children_changed": entry.get("at") or _now()}
            continue
        if cid not in out:
            out.append(cid)
    return _bottom_up(h, out)


def _requests(h: Hierarchy, level: int, rng: np.random.Generator):
    """The summary requests of every cluster of ``level``, built as the fit builds them."""
    from .data import default_l0_descriptions
    from .summarize import build_requests

    cfg = h.config
    ds = h.dataset
    l0 = h.levels[0]
    l0_desc = list(l0.descriptions) if l0.descriptions else default_l0_descriptions(
        ds, cfg.l0_description_max_chars, cfg.prompt_l0_numeric_repr_precision, cfg.prompt_l0_numeric_repr_max_vals)
    lv = h.levels[level]
    return build_requests(level, list(lv.ids), lv.vectors, h.assignments(level), l0.vectors, ds, l0_desc, cfg, rng,
                          lower_level=h.levels[level - 1] if level > 1 else None)


def retitle_cost(h: Hierarchy, cluster_ids: Iterable[str], *, llm_id: str | None = None) -> dict[str, Any]:
    """What re-titling ``cluster_ids`` costs: ``{"clusters", "llm_calls", "prompt_tokens",
    "completion_tokens"}`` by the estimate of :mod:`hercules_core.cost` (batched as the summariser
    batches; 0 calls without an LLM). Shown before an edit whose re-titling calls an LLM."""
    from .cost import _level_cost

    ids = [c for c in cluster_ids]
    out = {"clusters": len(ids), "llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    llm = llm_id if llm_id is not None else ((h.stats or {}).get("models") or {}).get("llm")
    if not ids or llm in (None, "keywords"):
        return out
    by_level: dict[int, list[str]] = {}
    for cid in ids:
        by_level.setdefault(_lv_idx(h, cid)[0], []).append(cid)
    rng = np.random.default_rng(int(h.config.random_state))
    for level, cids in by_level.items():
        reqs = {r.key: r for r in _requests(h, level, rng)}
        part = _level_cost([reqs[c] for c in cids], h.config)
        for k in ("llm_calls", "prompt_tokens", "completion_tokens"):
            out[k] += part["calls" if k == "llm_calls" else k]
    return out


def resummarize(h: Hierarchy, cluster_ids: Iterable[str], summarizer: Any, *, text_embedder: Any = None,
                entry_seq: int | None = None, who: object = None) -> Change:
    """Re-summarise ``cluster_ids`` with ``summarizer`` (the run's summariser, built by the caller as the
    fit builds it: the same requests, prompts, gate and fallbacks), level by level from the bottom so a
    parent's prompt shows its children's new titles. Hand-edited clusters are skipped (flagged).

    The new texts amend the log entry ``entry_seq`` (default: the last entry) when the clusters are
    among the rows it wrote, so undo and redo restore them with the edit; otherwise a ``resummarize``
    entry is appended. The entry gets ``"resummarized"``: the ids. ``text_embedder`` (optional)
    re-embeds the new descriptions (``desc_embeddings``) where the run has them.
    """
    g = _copy(h)
    ids = [c for c in dict.fromkeys(cluster_ids)]
    for cid in ids:
        _locate(g, cid)
    ids = [c for c in ids if not (g.edits.get(c) or {}).get("edited")]
    by_level: dict[int, list[str]] = {}
    for cid in ids:
        by_level.setdefault(_lv_idx(g, cid)[0], []).append(cid)
    seq = int(h.edit_counters.get("entry", len(h.edit_log)))
    rng = np.random.default_rng([int(h.config.random_state), _SPLIT_SALT, seq, 1])
    done = []
    for level in sorted(by_level):
        reqs = _requests(g, level, rng)
        by_key = {r.key: r for r in reqs}
        wanted = [by_key[c] for c in by_level[level]]
        answers = summarizer.summarize(wanted, level_requests=reqs)
        lv = g.levels[level]
        rows = []
        for cid in by_level[level]:
            s = answers[cid]
            j = lv.ids.index(cid)
            lv.titles[j], lv.descriptions[j], lv.sources[j] = s.title, s.description, s.source
            lv.fallback[j] = bool(s.fallback)
            if lv.description_marks:
                lv.description_marks[j] = s.description_mark
            rows.append(j)
            done.append(cid)
        if text_embedder is not None and lv.desc_embeddings is not None and rows:
            emb = np.asarray(text_embedder.embed([f"{lv.titles[j]}. {lv.descriptions[j]}" for j in rows]),
                             dtype=np.float32)
            if emb.shape == (len(rows), lv.desc_embeddings.shape[1]):
                lv.desc_embeddings[rows] = emb
                _project(g, level, rows)
    target = None
    if g.edit_log:
        cand = g.edit_log[-1] if entry_seq is None else next((e for e in g.edit_log if e.get("seq") == entry_seq), None)
        if cand is not None and cand is g.edit_log[-1]:
            written = {c for lvl in (cand.get("after") or {}).get("levels", {}).values() for c in lvl.get("rows", {})}
            if set(done) <= written:
                target = cand
    if target is not None:
        new = copy.copy(target)
        new["after"] = copy.deepcopy(target["after"])
        for cid in done:
            level, j = _lv_idx(g, cid)
            new["after"]["levels"][str(level)]["rows"][cid] = _record(g, level, j)
        new["resummarized"] = sorted(set(target.get("resummarized", [])) | set(done), key=_id_key)
        new["text_targets"] = {**(target.get("text_targets") or {}), **_text_targets(g, done)}
        g.edit_log[-1] = new
        return Change(g, new)
    # a separate entry: the texts before and after
    before = {"levels": {}}
    after = {"levels": {}}
    for cid in done:
        level, j = _lv_idx(g, cid)
        before["levels"].setdefault(str(level), {"rows": {}})["rows"][cid] = _record(h, level, j)
        after["levels"].setdefault(str(level), {"rows": {}})["rows"][cid] = _record(g, level, j)
    g.edit_counters["entry"] = seq + 1
    entry = {"seq": seq, "op": "resummarize", "args": {"ids": done}, "who": _who(who), "at": _now(),
             "level": min(by_level, default=1),
             "effect": {"created": [], "removed": [], "touched": done, "items_moved": {}, "retitle": [],
                        "flagged": []},
             "targets": {}, "created_items": {}, "before": before, "after": after, "resummarized": done,
             "text_targets": _text_targets(g, done)}
    g.edit_log = list(g.edit_log) + [entry]
    g.redo_log = []
    return Change(g, entry)


def _amendable(g: Hierarchy, entry_seq: int | None) -> dict[str, Any] | None:
    """The log entry ``entry_seq`` (default: the last) if it is the last one, else None."""
    if not g.edit_log:
        return None
    last = g.edit_log[-1]
    return last if entry_seq is None or last.get("seq") == entry_seq else None


def stale_levels(h: Hierarchy) -> list[int]:
    """Levels whose evaluation an edit has made out of date (``reevaluate`` measures them again)."""
    return sorted(l for l, ev in h.evaluation.items() if isinstance(ev, dict) and ev.get("stale"))


def reevaluate(h: Hierarchy, *, entry_seq: int | None = None) -> Change:
    """Measure again the levels whose evaluation edits made stale (:func:`stale_levels`); the result
    amends the last log entry (so undo and redo restore it with the edit). Returns the new hierarchy
    and that entry (``{}`` when nothing was stale)."""
    g = _copy(h)
    levels = stale_levels(g)
    if not levels:
        return Change(g, {})
    fresh = _reevaluate(g, levels)
    target = _amendable(g, entry_seq)
    if target is None:
        return Change(g, {})
    new = copy.copy(target)
    new["after"] = {**target["after"], "evaluation": {**(target["after"].get("evaluation") or {}),
                                                      **copy.deepcopy(fresh)}}
    # a level an earlier edit made stale: undoing this one must give it back stale, as it was
    old_before = target["before"].get("evaluation") or {}
    extra = {k: copy.deepcopy(h.evaluation.get(int(k))) for k in fresh if k not in old_before}
    if extra:
        new["before"] = {**target["before"], "evaluation": {**old_before, **extra}}
    g.edit_log[-1] = new
    return Change(g, new)


def _text_targets(g: Hierarchy, ids: Iterable[str]) -> dict[str, Any]:
    """The items of each re-titled cluster: replay copies its new text where a cluster holds exactly these."""
    return {cid: _enc(g.members(*_lv_idx(g, cid)).astype(np.int32)) for cid in ids}


# ============================================================================ saved models

def _check_args(op: object, args: object) -> dict[str, Any]:
    if op not in OPS:
        raise InputError(f"Unknown edit {str(op)[:20]!r}; one of {', '.join(OPS)}.")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise InputError("The edit's arguments must be an object.")
    return dict(args)


def apply_op(h: Hierarchy, op: str, args: Mapping[str, Any], *, who: object = None) -> Change:
    """Run one op by name (``merge`` {ids}, ``split`` {id, k}, ``move`` {id, parent}, ``dissolve`` {id},
    ``undo``, ``redo``) with arguments as received (checked here)."""
    args = _check_args(op, args)
    if op == "merge":
        return merge(h, args.get("ids"), who=who)
    if op == "split":
        return split(h, args.get("id"), args.get("k"), who=who)
    if op == "move":
        return move(h, args.get("id"), args.get("parent"), who=who)
    if op == "dissolve":
        return dissolve(h, args.get("id"), who=who)
    if op == "undo":
        return undo(h)
    return redo(h)


def _save(h: Hierarchy, model_path: Path, structural: bool) -> None:
    from . import columnar
    from .io import save_model

    if structural:
        # the items file holds every item's cluster id per level and must be rewritten; above
        # EDIT_INLINE_MAX_ITEMS the model moves to the columnar form (saving 20,000 x 384 inline took
        # 1.3-2 s of an edit, columnar 0.3-0.5 s); small models stay one self-contained JSON
        columnar_now = columnar.current_reference(model_path) is not None or h.n_items > EDIT_INLINE_MAX_ITEMS
        items = "columnar" if columnar_now else "inline"
    else:
        items = "keep"
    save_model(h, model_path, include_item_vectors=h.levels[0].vectors is not None, items=items)


def edit_model(model_path: str | os.PathLike, op: str, args: Mapping[str, Any] | None = None, *,
               who: object = None, on_saved: Callable[[Hierarchy], None] | None = None) -> Change:
    """One edit (or undo / redo) of a saved model: under :func:`hercules_core.edits.model_lock`, re-read
    the model, apply, save atomically (the items file is rewritten, since every item's cluster ids
    change), then ``on_saved(h)`` while the lock is still held. Bad requests raise InputError and
    write nothing."""
    from .edits import model_lock
    from .io import load_model

    args = _check_args(op, args)
    with model_lock(model_path):
        h = load_model(model_path, verify=False)
        change = apply_op(h, op, args, who=who)
        _save(change.hierarchy, Path(model_path), structural=change.entry.get("op") not in ("retitle", "resummarize"))
        if on_saved is not None:
            on_saved(change.hierarchy)
    return change


def resummarize_model(model_path: str | os.PathLike, entry_seq: int, summarizer: Any = None, *,
                      text_embedder: Any = None, evaluate: bool = True,
                      on_saved: Callable[[Hierarchy], None] | None = None) -> Change | None:
    """The background half of an edit of a saved model: re-title what edit ``entry_seq`` touched (with
    ``summarizer``; None skips it) and re-measure the levels it made stale (``evaluate``). The work is
    done without the lock (LLM calls take time); the result is written under it if that edit is still
    the last one, else nothing is written and None is returned (it was undone, or another edit came)."""
    from .edits import model_lock
    from .io import load_model

    h = load_model(model_path, verify=False)
    if _amendable(h, entry_seq) is None:
        return None
    g = h
    if summarizer is not None:
        g = resummarize(g, to_retitle(g, g.edit_log[-1]), summarizer, text_embedder=text_embedder,
                        entry_seq=entry_seq).hierarchy
    if evaluate:
        g = reevaluate(g, entry_seq=entry_seq).hierarchy
    new = g.edit_log[-1]
    if new is h.edit_log[-1]:
        return Change(h, new)  # nothing to do
    with model_lock(model_path):
        now = load_model(model_path, verify=False)
        if _amendable(now, entry_seq) is None:
            return None
        side = {"levels": {k: {"rows": v["rows"]} for k, v in new["after"]["levels"].items()},
                "evaluation": new["after"].get("evaluation") or {}}
        out = _apply_side(now, side)
        for cid, rec in g.edits.items():  # flags "children changed since your edit"
            if "children_changed" in rec and cid in out.edits:
                out.edits[cid] = {**out.edits[cid], "children_changed": rec["children_changed"]}
        out.edit_log = list(now.edit_log[:-1]) + [new]
        out.redo_log, out.edit_counters = list(now.redo_log), dict(now.edit_counters)
        out.validate()
        _save(out, Path(model_path), structural=False)
        if on_saved is not None:
            on_saved(out)
    return Change(out, new)


# ============================================================================ replay and compare

def export_log(h: Hierarchy) -> dict[str, Any]:
    """The edit log as a standalone JSON document: the entries and the item ids their targets index."""
    return {"format": LOG_FORMAT, "version": 1, "item_ids": list(h.levels[0].ids), "entries": list(h.edit_log)}


def _load_log(log_or_model: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """(entries, the origin's item ids) from a Hierarchy, an exported log (dict or file) or a model file."""
    from .errors import ModelFileError
    from .io import load_model

    if isinstance(log_or_model, Hierarchy):
        return list(log_or_model.edit_log), list(log_or_model.levels[0].ids)
    doc = log_or_model
    if isinstance(log_or_model, (str, os.PathLike)):
        path = Path(log_or_model)
        if not path.is_file():
            raise InputError(f"{path} does not exist or is not a file; give a model.json with an edit log or an "
                             "exported edit log.")
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
            if b'"format": "hercules-edit-log"' in head or b'"format":"hercules-edit-log"' in head:
                doc = json.loads(path.read_bytes().decode("utf-8"))
            else:
                h = load_model(path)
                return list(h.edit_log), list(h.levels[0].ids)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path} cannot be read as an edit log or a model: {e}.") from None
    if not isinstance(doc, Mapping) or doc.get("format") != LOG_FORMAT:
        raise InputError("Expected a model with an edit log, or an edit log exported by HERCULES "
                         f"(\"format\": \"{LOG_FORMAT}\").")
    entries, ids = doc.get("entries"), doc.get("item_ids")
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries) \
            or not isinstance(ids, list):
        raise ModelFileError("The edit log is malformed: it needs a list of entries and the item ids.")
    return [dict(e) for e in entries], [str(i) for i in ids]


class _Matcher:
    """Best match of an origin cluster (its item indices in the origin) among the clusters of the same
    level of the current hierarchy, by Jaccard over the items both runs share."""

    def __init__(self, origin_ids: list[str], h_new: Hierarchy):
        pos = {c: i for i, c in enumerate(h_new.levels[0].ids)}
        self.to_new = np.array([pos.get(c, -1) for c in origin_ids], dtype=np.int64)
        self.shared = np.zeros(h_new.n_items, dtype=bool)
        self.shared[self.to_new[self.to_new >= 0]] = True

    def match(self, g: Hierarchy, level: int, origin_items: np.ndarray) -> tuple[str | None, float]:
        if not 1 <= level <= g.top_level:
            return None, 0.0
        idx = np.asarray(origin_items, dtype=np.int64).ravel()
        t = self.to_new[idx[(idx >= 0) & (idx < len(self.to_new))]]  # a damaged log cannot index outside
        t = t[t >= 0]
        if not len(t):
            return None, 0.0
        assign = g.assignments(level)
        k = len(g.levels[level])
        inter = np.bincount(assign[t], minlength=k).astype(np.float64)
        sizes = np.bincount(assign[self.shared], minlength=k).astype(np.float64)
        jac = inter / np.maximum(len(t) + sizes - inter, 1.0)
        best = int(np.argmax(jac))
        return g.levels[level].ids[best], float(jac[best])


def _level_of(cid: str) -> int:
    m = CLUSTER_ID_RE.fullmatch(str(cid))
    return int(m.group(1)) if m else -1


def replay(log_or_model: Any, h_new: Hierarchy, *, threshold: float = MATCH_THRESHOLD,
           who: object = "replay") -> tuple[Hierarchy, dict[str, Any]]:
    """Apply an edit log onto another hierarchy (a re-run with another seed, grown data, or the run it
    came from), entry by entry in order: each cluster an entry names is matched to the cluster of the
    same level of ``h_new`` (as edited so far) with the largest Jaccard overlap of items (by item id,
    counted over the items both runs share: items of one run only are left out). An entry applies when
    every match reaches ``threshold`` and the op is valid there; otherwise the report says why.

    Texts an entry wrote (re-summarised or hand-edited titles) are copied where the matched cluster
    holds exactly the same shared items; elsewhere the report lists the clusters to re-title. On the
    run the log came from every match is exact, ids are reused, and the result is the curated
    hierarchy itself (same memberships, ids and titles).

    Returns ``(hierarchy, report)``; report: ``{"entries", "applied", "skipped", "threshold",
    "items": {"origin", "new", "shared"}, "results": [{"seq", "op", "args", "status", "reason",
    "matches": {origin id: [new id, jaccard]}}], "retitle": [ids]}``.
    """
    from .edits import apply_edit

    entries, origin_ids = _load_log(log_or_model)
    matcher = _Matcher(origin_ids, h_new)
    g = h_new
    results, to_retitle_ids, missed_all = [], [], set()
    for e in entries:
        op = e.get("op")
        res = {"seq": e.get("seq"), "op": op, "args": e.get("args"), "status": "skipped", "reason": "",
               "matches": {}}
        results.append(res)
        try:
            targets = {str(cid): _dec(t) for cid, t in (e.get("targets") or {}).items()}
        except (AttributeError, TypeError, ValueError, HerculesError) as exc:
            res["reason"] = f"the log entry is damaged ({type(exc).__name__}: {str(exc)[:200]})"
            continue

        def match(cid: str) -> str | None:
            if cid not in targets:
                res["reason"] = f"the log entry does not record the items of {cid}"
                return None
            new_id, jac = matcher.match(g, _level_of(cid), targets[cid])
            res["matches"][cid] = [new_id, round(jac, 4)]
            if new_id is None or jac < threshold:
                res["reason"] = (f"no cluster on level {_level_of(cid)} matches {cid}'s items "
                                 f"(best Jaccard {jac:.2f} < {threshold:g})")
                return None
            return new_id

        try:
            args = e.get("args") or {}
            prefer = list((e.get("effect") or {}).get("created") or [])
            if op == "merge":
                got = [match(c) for c in args.get("ids", [])]
                if any(x is None for x in got):
                    continue
                if len(set(got)) < 2:
                    res["reason"] = f"the clusters to merge all match {got[0]} in this run: nothing to merge"
                    continue
                change = merge(g, list(dict.fromkeys(got)), who=who, _prefer=prefer)
            elif op == "split":
                cid = match(args.get("id"))
                if cid is None:
                    continue
                change = split(g, cid, args.get("k"), who=who, seed=e.get("seed"), _prefer=prefer)
            elif op == "move":
                cid, parent = match(args.get("id")), match(args.get("parent"))
                if cid is None or parent is None:
                    continue
                change = move(g, cid, parent, who=who)
            elif op == "dissolve":
                cid = match(args.get("id"))
                if cid is None:
                    continue
                change = dissolve(g, cid, who=who)
            elif op == "retitle":
                cid = match(args.get("id"))
                if cid is None:
                    continue
                g = _copy(g)
                apply_edit(g, cid, str(args.get("title")), str(args.get("description")), who=who, at=e.get("at"))
                res.update(status="applied", result={"seq": g.edit_log[-1]["seq"], "created": [], "removed": []})
                continue
            elif op == "resummarize":
                change = None
            else:
                res["reason"] = f"unknown op {str(op)[:20]!r}"
                continue
        except InputError as exc:
            res["reason"] = f"not valid in this run: {exc}"
            continue
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, HerculesError) as exc:
            res["reason"] = f"the log entry is damaged ({type(exc).__name__}: {str(exc)[:200]})"
            continue
        if change is not None:
            g = change.hierarchy
            res.update(status="applied", result={"seq": change.entry["seq"], "created": change.entry["effect"]["created"],
                                                 "removed": change.entry["effect"]["removed"]})
        try:
            g, missed = _copy_texts(g, e, matcher)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, HerculesError):
            missed = []
        to_retitle_ids += missed
        missed_all |= set(missed)
        if op == "resummarize":
            res.update(status="applied" if not missed else "skipped",
                       reason="" if not missed else "the re-titled clusters do not match exactly: re-summarise them")
        elif change is not None:
            to_retitle_ids += [c for c in change.entry["effect"]["retitle"]]
    present = []
    for cid in dict.fromkeys(to_retitle_ids):  # what still has a placeholder or another run's text
        try:
            c = g.cluster(cid)
        except KeyError:
            continue
        if c.source == CURATED or cid in missed_all:
            present.append(cid)
    applied = sum(r["status"] == "applied" for r in results)
    report = {"entries": len(entries), "applied": applied, "skipped": len(entries) - applied, "threshold": threshold,
              "items": {"origin": len(origin_ids), "new": h_new.n_items, "shared": int(matcher.shared.sum())},
              "results": results, "retitle": present}
    return g, report


def _copy_texts(g: Hierarchy, e: Mapping[str, Any], matcher: _Matcher) -> tuple[Hierarchy, list[str]]:
    """Copy the texts entry ``e`` wrote onto clusters of ``g`` that hold exactly the same shared items."""
    texts = e.get("text_targets") or {}
    if not texts:
        return g, []
    after = (e.get("after") or {}).get("levels") or {}
    g = _copy(g)
    missed = []
    for cid, items in texts.items():
        level = _level_of(cid)
        rec = ((after.get(str(level)) or {}).get("rows") or {}).get(cid)
        new_id, jac = matcher.match(g, level, _dec(items))
        if rec is None or new_id is None or jac < 1.0:
            if new_id is not None and jac >= MATCH_THRESHOLD:
                missed.append(new_id)
            continue
        j = g.cluster(new_id).index
        lv = g.levels[level]
        lv.titles[j], lv.descriptions[j], lv.sources[j] = rec["title"], rec["description"], rec["source"]
        lv.fallback[j] = bool(rec["fallback"])
        if lv.description_marks:
            lv.description_marks[j] = rec.get("mark") or ""
        if rec.get("desc") is not None and lv.desc_embeddings is not None:
            lv.desc_embeddings[j] = _dec(rec["desc"])
            _project(g, level, [j])
    return g, missed


def compare(h_a: Hierarchy, h_b: Hierarchy, *, threshold: float = MATCH_THRESHOLD) -> dict[str, Any]:
    """Compare two hierarchies of the same (or overlapping) items, level by level.

    Items are matched by id; only the items both hold count (the others are reported in ``items``).
    Per level: ``matched`` (a one-to-one assignment maximising Jaccard, Hungarian method, pairs with
    Jaccard >= ``threshold``), ``splits`` (an A cluster whose items went to two or more B clusters,
    each mostly inside it, together holding at least half of it), ``merges`` (the same, B over A),
    ``new`` (B clusters in none of these), ``vanished`` (A clusters in none), ``retitled`` (matched
    pairs whose titles differ), and two agreement figures: ``ari`` (adjusted Rand index of the two
    partitions of the shared items) and ``weighted_jaccard`` (each A cluster's best-match Jaccard,
    weighted by its items; 1 only for identical partitions). ``agreement`` is the weighted Jaccard.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score

    pos_b = {c: i for i, c in enumerate(h_b.levels[0].ids)}
    ia, ib = [], []
    for i, c in enumerate(h_a.levels[0].ids):
        j = pos_b.get(c)
        if j is not None:
            ia.append(i)
            ib.append(j)
    ia, ib = np.array(ia, dtype=np.int64), np.array(ib, dtype=np.int64)
    out: dict[str, Any] = {"items": {"a": h_a.n_items, "b": h_b.n_items, "shared": int(len(ia))},
                           "threshold": threshold, "levels": [],
                           "agreement_measure": "weighted_jaccard (item-weighted best-match Jaccard); ari also given"}
    if not len(ia):
        out["notes"] = ["The two hierarchies share no item ids: nothing to compare."]
        return out
    for level in range(1, min(h_a.top_level, h_b.top_level) + 1):
        la, lb = h_a.assignments(level)[ia], h_b.assignments(level)[ib]
        ka, kb = len(h_a.levels[level]), len(h_b.levels[level])
        M = np.zeros((ka, kb), dtype=np.float64)
        np.add.at(M, (la, lb), 1.0)
        na, nb = M.sum(1), M.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            J = np.where(M > 0, M / (na[:, None] + nb[None, :] - M), 0.0)
        rows, cols = linear_sum_assignment(-J)
        A, B = h_a.levels[level], h_b.levels[level]
        matched = [{"a": A.ids[r], "b": B.ids[c], "jaccard": round(float(J[r, c]), 4)}
                   for r, c in zip(rows, cols) if J[r, c] >= threshold]
        in_a = {m["a"] for m in matched}
        in_b = {m["b"] for m in matched}
        splits, merges = [], []
        for r in range(ka):
            if na[r] == 0:
                continue
            parts = [c for c in np.flatnonzero(M[r] > 0) if M[r, c] >= 0.5 * nb[c]]
            if len(parts) >= 2 and M[r, parts].sum() >= 0.5 * na[r]:
                splits.append({"a": A.ids[r], "into": [B.ids[c] for c in parts]})
        for c in range(kb):
            if nb[c] == 0:
                continue
            parts = [r for r in np.flatnonzero(M[:, c] > 0) if M[r, c] >= 0.5 * na[r]]
            if len(parts) >= 2 and M[parts, c].sum() >= 0.5 * nb[c]:
                merges.append({"b": B.ids[c], "from": [A.ids[r] for r in parts]})
        a_part = {s["a"] for s in splits} | {x for m in merges for x in m["from"]}
        b_part = {x for s in splits for x in s["into"]} | {m["b"] for m in merges}
        vanished = [c for c in A.ids if c not in in_a and c not in a_part]
        new = [c for c in B.ids if c not in in_b and c not in b_part]
        ta, tb = dict(zip(A.ids, A.titles)), dict(zip(B.ids, B.titles))
        retitled = [{"a": m["a"], "b": m["b"], "title_a": ta[m["a"]], "title_b": tb[m["b"]]}
                    for m in matched if ta[m["a"]] != tb[m["b"]]]
        best = J.max(axis=1) if kb else np.zeros(ka)
        wj = float((na * best).sum() / max(na.sum(), 1.0))
        ari = float(adjusted_rand_score(la, lb))
        out["levels"].append({"level": level, "clusters_a": ka, "clusters_b": kb, "matched": matched,
                              "splits": splits, "merges": merges, "new": new, "vanished": vanished,
                              "retitled": retitled, "ari": round(ari, 4), "weighted_jaccard": round(wj, 4),
                              "agreement": round(wj, 4)})
    if h_a.top_level != h_b.top_level:
        out["notes"] = [f"A has {h_a.top_level} levels, B {h_b.top_level}: levels 1..{min(h_a.top_level, h_b.top_level)} "
                        "are compared."]
    return out


def format_compare(result: Mapping[str, Any]) -> str:
    """The comparison as a text table (one row per level) and the lists below it."""
    it = result["items"]
    lines = [f"items: A {it['a']:,}, B {it['b']:,}, shared {it['shared']:,} (only shared items count)",
             f"{'level':>5} {'A':>6} {'B':>6} {'matched':>8} {'splits':>7} {'merges':>7} {'new':>5} "
             f"{'vanished':>8} {'retitled':>8} {'w.Jaccard':>9} {'ARI':>6}"]
    for r in result["levels"]:
        lines.append(f"{r['level']:>5} {r['clusters_a']:>6} {r['clusters_b']:>6} {len(r['matched']):>8} "
                     f"{len(r['splits']):>7} {len(r['merges']):>7} {len(r['new']):>5} {len(r['vanished']):>8} "
                     f"{len(r['retitled']):>8} {r['weighted_jaccard']:>9.3f} {r['ari']:>6.3f}")
    for r in result["levels"]:
        for s in r["splits"][:20]:
            lines.append(f"L{r['level']} split: {s['a']} -> {', '.join(s['into'])}")
        for m in r["merges"][:20]:
            lines.append(f"L{r['level']} merge: {', '.join(m['from'])} -> {m['b']}")
        if r["new"]:
            lines.append(f"L{r['level']} new in B: {', '.join(r['new'][:20])}")
        if r["vanished"]:
            lines.append(f"L{r['level']} vanished from A: {', '.join(r['vanished'][:20])}")
        for t in r["retitled"][:20]:
            lines.append(f"L{r['level']} retitled: {t['a']} {t['title_a']!r} -> {t['b']} {t['title_b']!r}")
    lines += list(result.get("notes") or [])
    return "\n".join(lines)
