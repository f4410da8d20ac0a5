"""A standalone HTML report of a hierarchy: one file, opens from disk with no server and no internet.

Everything is inline: plotly.js (the 1.2 MB "basic" bundle in ``report_assets/``), the data as
one JSON document, the CSS and the script. A Content-Security-Policy forbids every network
request. The page shows a bubble scatter per level, the hierarchy as a collapsible tree with
titles and descriptions, click-to-highlight of ancestors and descendants, search, and the
per-level metrics.

Titles, descriptions and item texts come from LLMs, users and uploads: the script inserts them
with ``textContent`` only (never ``innerHTML``), and the JSON is escaped so that no text can close
its ``<script>`` element. At most ``ITEMS_MAX`` items are embedded (as points; a fixed random sample
above that); every level-1 cluster lists its most central items, and the report says how many items
were left out.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .hierarchy import Hierarchy
from .io import atomic_write
from .reduction import cluster_positions
from .stability import cluster_stability, describe, level_summary

ITEMS_MAX = 5000
SAMPLES_PER_CLUSTER = 3
SAMPLE_CHARS = 200
_ASSETS = Path(__file__).resolve().parent / "report_assets"
_METRICS = ("silhouette_score", "davies_bouldin_score", "calinski_harabasz_score", "adjusted_rand_score",
            "normalized_mutual_info_score", "v_measure_score", "llm_silhouette_score", "topic_alignment")


def _plotly_js() -> str:
    path = _ASSETS / "plotly-basic.min.js"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs  # the full bundle (4.7 MB): still offline, just bigger

    return get_plotlyjs()


def _r(a: np.ndarray | None) -> list[list[float]] | None:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)[:, :2]
    return [np.round(a[:, 0], 4).tolist(), np.round(a[:, 1], 4).tolist()]


def _cut(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _item_text(h: Hierarchy, i: int) -> str:
    ds = h.dataset
    if ds.modality == "text" and ds.texts is not None:
        return ds.texts[i]
    if ds.modality == "numeric":
        return h.levels[0].descriptions[i]
    return h.levels[0].titles[i]


def _central_items(h: Hierarchy, count: int) -> list[list[int]]:
    """For each level-1 cluster, up to ``count`` member items closest to its centroid."""
    members = h.levels[0].parent.astype(np.int64)
    X, C = h.levels[0].vectors, h.levels[1].vectors
    if X is not None and C is not None and X.shape[1] == C.shape[1]:
        diff = X - C[members]
        dist = np.einsum("ij,ij->i", diff, diff)
    else:
        dist = np.zeros(len(members))
    order = np.lexsort((dist, members))
    bounds = np.searchsorted(members[order], np.arange(len(h.levels[1]) + 1))
    return [order[bounds[j]:min(bounds[j + 1], bounds[j] + count)].tolist() for j in range(len(h.levels[1]))]


def report_data(h: Hierarchy, *, items_max: int = ITEMS_MAX) -> dict[str, Any]:
    """The JSON document the report's script renders (plain lists and strings)."""
    ds = h.dataset
    levels = []
    for level in range(1, h.top_level + 1):
        lv = h.levels[level]
        stab = [cluster_stability(h, level, j) for j in range(len(lv))]
        levels.append({
            # "stable in 5 of 5 re-runs (Jaccard 0.93)" per cluster; None where not measured
            "stability": [None if s is None else describe(s) for s in stab],
            "unstable": [s is not None and not s["stable"] for s in stab],
            "level": level, "ids": list(lv.ids), "titles": list(lv.titles), "descriptions": list(lv.descriptions),
            "sources": list(lv.sources), "fallback": [bool(x) for x in lv.fallback],
            "description_marks": list(lv.description_marks),
            "size": [int(x) for x in lv.size], "parent": [int(x) for x in lv.parent],
            "xy": _r(cluster_positions(h, level, "representation")),  # at the mean of its items
        })
    xy0 = h.levels[0].reductions.get("representation")
    items = None
    if xy0 is not None:
        # above the limit, a fixed random sample of the items is drawn: the density stays visible
        # and the file stays small; the rest is summarised by cluster sizes and central items
        pick = np.arange(h.n_items) if h.n_items <= items_max else \
            np.sort(np.random.default_rng(0).choice(h.n_items, size=items_max, replace=False))
        lv0 = h.levels[0]
        items = {"ids": [lv0.ids[i] for i in pick], "titles": [_cut(lv0.titles[i], 100) for i in pick],
                 "l1": [int(x) for x in lv0.parent[pick]], "xy": _r(xy0[pick])}
    samples = [[[h.levels[0].ids[i], _cut(_item_text(h, i), SAMPLE_CHARS)] for i in idx]
               for idx in _central_items(h, SAMPLES_PER_CLUSTER)]
    metrics = {}
    for level, m in sorted(h.evaluation.items()):
        row = {}
        for k in _METRICS:
            v = m.get(k) if isinstance(m, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                row[k] = round(float(v), 4)
        metrics[str(level)] = row
    models = {k: v for k, v in ((h.stats or {}).get("models") or {}).items() if v}
    return {
        "meta": {"source": ds.source or "", "modality": ds.modality, "n_items": h.n_items,
                 "clusters": [len(lv) for lv in h.levels[1:]], "models": models,
                 "mode": h.config.representation_mode, "topic_seed": h.config.topic_seed or "",
                 "items_embedded": 0 if items is None else len(items["ids"]), "items_max": items_max,
                 "n_edited": len(h.edits), "generated": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "levels": levels, "items": items, "samples": samples, "metrics": metrics, "stability": level_summary(h),
    }


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no ``<`` (so no ``</script>`` or ``<!--``), no ``/``
    (so no template marker), and no line separators that older parsers treat as newlines."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("/", "\\/").replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def report_html(h: Hierarchy, *, items_max: int = ITEMS_MAX) -> str:
    """The whole report as one HTML string."""
    template = (_ASSETS.parent / "report_template.html").read_text(encoding="utf-8")
    data = _script_json(report_data(h, items_max=items_max))
    plotly = _plotly_js().replace("</script", "<\\/script")
    # the JSON has every "/" escaped, so it cannot contain the plotly marker inserted after it
    return template.replace("/*@DATA@*/", data).replace("/*@PLOTLY@*/", plotly)


def save_report(h: Hierarchy, path: str | os.PathLike, **kwargs: Any) -> None:
    """Write :func:`report_html` atomically."""
    atomic_write(path, report_html(h, **kwargs))
