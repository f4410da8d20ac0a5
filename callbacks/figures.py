"""Pure figure builders (plain plotly dicts) and the selection patches that keep clicks cheap.

The scatter has fixed trace slots (``T_*``): a click only rewrites per-bubble opacity / outline
arrays and the three small overlay traces with a ``dash.Patch``, never the whole figure.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
from dash import Patch
from plotly.colors import qualitative, sample_colorscale

from hercules_core.stability import stability_values

from .explore_model import ExploreModel, make_key

PALETTE = tuple(qualitative.Dark24 + qualitative.Light24)
FADED = "rgba(200,200,200,0.35)"
T_ITEMS, T_BUBBLES, T_LABELS, T_CONTEXT, T_SEL_ITEMS, T_SELECTED = range(6)
ITEMS_MAX = 5000  # L0 items are drawn as points only up to this many items
SEL_ITEMS_MAX = 2000  # above ITEMS_MAX, a selection's own items are drawn when it has at most this many
SIZE_SCALES = ("linear", "sqrt", "log")
# what the scatter draws where, said under its title (positions: ExploreModel.xy)
SPACE_NOTES = {"representation": "2-D PCA of the item vectors; each bubble sits at the mean of its items",
               "description": "2-D PCA of description embeddings; each bubble sits where its own title and "
                              "description embed, not at its items' mean"}
BASE_OPACITY, FADE_OPACITY = 0.85, 0.12
STABILITY = "stability"  # the colour-by option that colours clusters by their stability (red 0 .. green 1)
UNMEASURED = "#999999"  # a cluster without a stability figure


def esc(text: Any, limit: int | None = None) -> str:
    """Untrusted text for plotly labels: truncated, and markup characters made literal."""
    s = " ".join(str(text).split())
    if limit is not None and len(s) > limit:
        s = s[:limit - 1] + "…"
    return html.escape(s, quote=False)


def rounded(a: np.ndarray, digits: int = 4) -> list[float]:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def bubble_sizes(counts: np.ndarray, scale: str = "sqrt", min_px: float = 8.0, max_px: float = 60.0) -> np.ndarray:
    """Marker diameters in pixels for item counts: linear, sqrt or log scaling onto [min_px, max_px]."""
    c = np.asarray(counts, dtype=np.float64)
    m = float(c.max()) if c.size else 1.0
    if m <= 0:
        return np.full(c.shape, min_px)
    if scale == "linear":
        f = c / m
    elif scale == "log":
        f = np.log1p(c) / math.log1p(m)
    else:
        f = np.sqrt(c / m)
    return min_px + (max_px - min_px) * f


def colors_for(em: ExploreModel, level: int, color_level: int) -> list[str]:
    """Colour of each node of ``level``: the colour of its ancestor at ``color_level``."""
    color_level = max(color_level, level)
    anc = em.map_to(level, color_level)
    return [PALETTE[int(a) % len(PALETTE)] for a in anc]


def stability_colors(em: ExploreModel, level: int) -> list[str] | None:
    """Colour of each cluster of ``level`` by its mean best-match Jaccard (None: not measured)."""
    vals = stability_values(em.h, level)
    if vals is None:
        return None
    return [UNMEASURED if not np.isfinite(v) else sample_colorscale("RdYlGn", [float(v)])[0] for v in vals]


def _empty_trace(name: str, **marker: Any) -> dict[str, Any]:
    return {"type": "scattergl", "mode": "markers", "name": name, "x": [], "y": [], "customdata": [],
            "hovertemplate": "%{customdata[1]}<br>%{customdata[2]}<extra></extra>", "marker": marker,
            "showlegend": False}


def scatter_figure(em: ExploreModel, level: int, space: str = "representation", color_level: int | None = None,
                   size_scale: str = "sqrt", selection: str | None = None,
                   items_max: int = ITEMS_MAX) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bubble scatter of ``level``'s clusters in a 2-D PCA space, and its small view descriptor."""
    h = em.h
    level = min(max(int(level), 1), em.top)
    if space not in em.spaces():
        space = "representation"
    by_stability = color_level == STABILITY and stability_colors(em, level) is not None
    color_level = em.top if color_level is None or color_level == STABILITY else min(max(int(color_level), level),
                                                                                     em.top)
    lv = h.levels[level]
    bubble_colors = stability_colors(em, level) if by_stability else colors_for(em, level, color_level)
    xy = em.xy(level, space)
    sizes = bubble_sizes(lv.size, size_scale)
    view = {"level": level, "space": space, "color_level": color_level, "size_scale": size_scale,
            "items": h.n_items <= items_max}
    if by_stability:
        view["color_by"] = STABILITY
    items = _empty_trace("items", size=4, opacity=0.5)
    if view["items"]:
        ixy = em.xy(0, space)
        if ixy is None:
            view["items"] = False
        else:
            items.update(x=rounded(ixy[:, 0]), y=rounded(ixy[:, 1]),
                         customdata=[[make_key(0, j), esc(i, 60), esc(t, 80)]
                                     for j, (i, t) in enumerate(zip(h.levels[0].ids, h.levels[0].titles))])
            item_colors = ([bubble_colors[int(a)] for a in em.map_to(0, level)] if by_stability
                           else colors_for(em, 0, color_level))
            items["marker"] = {"size": 4, "opacity": 0.5, "color": item_colors}
    bubbles = {
        "type": "scattergl", "mode": "markers", "name": f"L{level} clusters", "showlegend": False,
        "x": rounded(xy[:, 0]), "y": rounded(xy[:, 1]),
        "customdata": [[make_key(level, j), esc(cid), esc(t, 80), int(s)]
                       for j, (cid, t, s) in enumerate(zip(lv.ids, lv.titles, lv.size))],
        "hovertemplate": "%{customdata[1]} · %{customdata[3]} items<br>%{customdata[2]}<extra></extra>",
        "marker": {"size": np.round(sizes, 1).tolist(), "sizemode": "diameter", "color": bubble_colors,
                   "opacity": BASE_OPACITY, "line": {"width": 0.5, "color": "#333"}},
    }
    big = [j for j in np.argsort(-lv.size, kind="stable")[:15] if sizes[j] >= 22]
    labels = {"type": "scatter", "mode": "text", "name": "titles", "showlegend": False, "hoverinfo": "skip",
              "x": rounded(xy[big, 0]), "y": rounded(xy[big, 1]), "text": [esc(lv.titles[j], 28) for j in big],
              "textfont": {"size": 11, "color": "#222"}}
    context = _empty_trace("ancestors", symbol="circle-open", size=[], color="#000", line={"width": 2})
    sel_items = _empty_trace("selected items", size=5, color="#111", opacity=0.9)
    selected = _empty_trace("selection", symbol="circle-open-dot", size=26, color="#d62728", line={"width": 3})
    fig = {
        "data": [items, bubbles, labels, context, sel_items, selected],
        "layout": {
            "margin": {"l": 10, "r": 10, "t": 44, "b": 10}, "height": 520, "dragmode": "pan",
            "title": {"text": f"Level {level} clusters ({len(lv)}) · {space} space"
                              f"<br><sup>{SPACE_NOTES[space]}</sup>", "font": {"size": 13}},
            "xaxis": {"showticklabels": False, "zeroline": False, "title": {"text": "PC 1"}},
            "yaxis": {"showticklabels": False, "zeroline": False, "title": {"text": "PC 2"}},
            "uirevision": f"{level}-{space}", "hovermode": "closest", "clickmode": "event",
            "plot_bgcolor": "#fbfbfd",
        },
    }
    for path, value in highlight_values(em, view, selection).items():
        node = fig["data"][path[0]]
        for k in path[1:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return fig, view


def highlight_values(em: ExploreModel, view: dict[str, Any], selection: str | None) -> dict[tuple, Any]:
    """``{(trace, key, ...): value}``: what a selection changes in the scatter (also used unselected)."""
    level, space = int(view["level"]), view["space"]
    parsed = em.parse(selection)
    out: dict[tuple, Any] = {}
    empty = {"x": [], "y": [], "customdata": []}
    if parsed is None:
        out[(T_BUBBLES, "marker", "opacity")] = BASE_OPACITY
        out[(T_BUBBLES, "marker", "line", "width")] = 0.5
        if view.get("items"):
            out[(T_ITEMS, "marker", "opacity")] = 0.5
        for t in (T_CONTEXT, T_SEL_ITEMS, T_SELECTED):
            for k, v in empty.items():
                out[(t, k)] = v
        return out
    sl, si = parsed
    rel = em.related(level, sl, si)
    out[(T_BUBBLES, "marker", "opacity")] = np.where(rel, 1.0, FADE_OPACITY).tolist()
    width = np.where(rel, 2.5, 0.3)
    if sl == level:
        width[si] = 4.0
    out[(T_BUBBLES, "marker", "line", "width")] = width.tolist()
    if view.get("items"):
        out[(T_ITEMS, "marker", "opacity")] = np.where(em.related(0, sl, si), 0.95, 0.06).tolist()
    # ancestors drawn at other levels than the bubbles': rings, bigger the higher
    anc = [(b, j) for b, j in em.ancestors(sl, si) if b != level]
    ax, ay, acd, asz = [], [], [], []
    for b, j in anc:
        pxy = em.xy(b, space)
        if pxy is None:
            continue
        ax.append(round(float(pxy[j, 0]), 4))
        ay.append(round(float(pxy[j, 1]), 4))
        acd.append([make_key(b, j), esc(em.h.levels[b].ids[j]), esc(em.h.levels[b].titles[j], 80)])
        asz.append(30 + 10 * (b - level))
    out[(T_CONTEXT, "x")], out[(T_CONTEXT, "y")], out[(T_CONTEXT, "customdata")] = ax, ay, acd
    out[(T_CONTEXT, "marker", "size")] = asz
    # the selection's items, when the item layer is not drawn
    sx, sy, scd = [], [], []
    if not view.get("items"):
        members = em.members(sl, si)
        ixy = em.xy(0, space)
        if ixy is not None and len(members) <= SEL_ITEMS_MAX:
            sx, sy = rounded(ixy[members, 0]), rounded(ixy[members, 1])
            scd = [[make_key(0, int(j)), esc(em.h.levels[0].ids[j], 60), esc(em.h.levels[0].titles[j], 60)]
                   for j in members]
    out[(T_SEL_ITEMS, "x")], out[(T_SEL_ITEMS, "y")], out[(T_SEL_ITEMS, "customdata")] = sx, sy, scd
    pxy = em.xy(sl, space)
    lvs = em.h.levels[sl]
    if pxy is not None:
        out[(T_SELECTED, "x")], out[(T_SELECTED, "y")] = [round(float(pxy[si, 0]), 4)], [round(float(pxy[si, 1]), 4)]
        out[(T_SELECTED, "customdata")] = [[make_key(sl, si), esc(lvs.ids[si]), esc(lvs.titles[si], 80)]]
    else:
        out[(T_SELECTED, "x")], out[(T_SELECTED, "y")], out[(T_SELECTED, "customdata")] = [], [], []
    return out


def highlight_patch(em: ExploreModel, view: dict[str, Any], selection: str | None) -> Patch:
    """A ``dash.Patch`` of the scatter for a new selection (size ~ bubbles + selection, not items)."""
    patch = Patch()
    for path, value in highlight_values(em, view, selection).items():
        node = patch["data"][path[0]]
        for k in path[1:-1]:
            node = node[k]
        node[path[-1]] = value
    return patch


# ----------------------------------------------------------------------------- sunburst
def _sunburst_colors(em: ExploreModel) -> list[str]:
    out = []
    for level in range(em.top, 0, -1):
        out.extend(colors_for(em, level, em.top))
    return out


def sunburst_figure(em: ExploreModel, selection: str | None = None) -> dict[str, Any]:
    """Every cluster (levels >= 1) as a sunburst sector sized by item count, top level inside."""
    h = em.h
    ids_, labels, parents, values, hover = [], [], [], [], []
    for level in range(em.top, 0, -1):
        lv = h.levels[level]
        for j in range(len(lv)):
            ids_.append(make_key(level, j))
            labels.append(esc(lv.titles[j], 24))
            p = int(lv.parent[j])
            parents.append("" if p < 0 else make_key(level + 1, p))
            values.append(int(lv.size[j]))
            hover.append(f"{esc(lv.ids[j])} · {int(lv.size[j])} items<br>{esc(lv.titles[j], 80)}")
    fig = {"data": [{"type": "sunburst", "ids": ids_, "labels": labels, "parents": parents, "values": values,
                     "branchvalues": "total", "hovertext": hover, "hoverinfo": "text", "maxdepth": 3,
                     "insidetextorientation": "radial", "marker": {"colors": _sunburst_colors(em)}}],
           "layout": {"margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "height": 430, "uirevision": "sunburst"}}
    if selection is not None:
        fig["data"][0]["marker"]["colors"] = sunburst_colors(em, selection)
    return fig


def sunburst_colors(em: ExploreModel, selection: str | None) -> list[str]:
    base = _sunburst_colors(em)
    parsed = em.parse(selection)
    if parsed is None:
        return base
    sl, si = parsed
    keep = np.concatenate([em.related(level, sl, si) for level in range(em.top, 0, -1)])
    return [c if k else FADED for c, k in zip(base, keep)]


def sunburst_patch(em: ExploreModel, selection: str | None) -> Patch:
    patch = Patch()
    patch["data"][0]["marker"]["colors"] = sunburst_colors(em, selection)
    return patch


# ----------------------------------------------------------------------------- evaluation
SCORE_METRICS = (("silhouette_score", "silhouette (items)"), ("children_silhouette_score", "silhouette (children)"),
                 ("llm_silhouette_score", "silhouette (descriptions)"), ("adjusted_rand_score", "ARI"),
                 ("normalized_mutual_info_score", "NMI"), ("v_measure_score", "V-measure"),
                 ("topic_alignment", "topic alignment"))
DB_METRICS = (("davies_bouldin_score", "items"), ("children_davies_bouldin_score", "children"),
              ("llm_davies_bouldin_score", "descriptions"))


def metrics_figure(evaluation: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """Scores across levels: [-1, 1] scores on the left, Davies-Bouldin (lower is better) on the right."""
    levels = sorted(int(k) for k in evaluation)
    data = []
    # V-measure (beta=1) is NMI with arithmetic normalisation: one line when the numbers agree
    ys_of = {name: [evaluation.get(lv, evaluation.get(str(lv), {})).get(name) for lv in levels]
             for name, _ in SCORE_METRICS}
    nmi, vm = ys_of["normalized_mutual_info_score"], ys_of["v_measure_score"]
    merged = any(y is not None for y in nmi) and all(
        (a is None) == (b is None) and (a is None or math.isclose(a, b, abs_tol=1e-9)) for a, b in zip(nmi, vm))
    for axis, metrics in (("", SCORE_METRICS), ("2", DB_METRICS)):
        for name, label in metrics:
            ys = [evaluation.get(lv, evaluation.get(str(lv), {})).get(name) for lv in levels]
            if all(y is None for y in ys) or (merged and name == "v_measure_score"):
                continue
            if merged and name == "normalized_mutual_info_score":
                label = "NMI = V-measure"
            data.append({"type": "scatter", "mode": "lines+markers", "name": label, "x": [f"L{lv}" for lv in levels],
                         "y": ys, "xaxis": f"x{axis}", "yaxis": f"y{axis}",
                         "legendgroup": "scores" if not axis else "db"})
    return {"data": data, "layout": {
        "height": 380, "margin": {"l": 40, "r": 10, "t": 40, "b": 40},
        "xaxis": {"domain": [0, 0.58], "title": {"text": "level"}},
        "yaxis": {"title": {"text": "score (higher is better)"}},
        "xaxis2": {"domain": [0.7, 1], "title": {"text": "level"}, "anchor": "y2"},
        "yaxis2": {"anchor": "x2", "title": {"text": "Davies-Bouldin (lower is better)"}},
        "legend": {"orientation": "h", "y": -0.25}}}


def auto_k_figure(scores: dict[int, float], chosen: int, method: str) -> dict[str, Any]:
    """The score of every k automatic k tried for the top level, the chosen k marked."""
    ks = sorted(scores)
    return {"data": [{"type": "scatter", "mode": "lines+markers", "name": method, "x": ks,
                      "y": [scores[k] for k in ks], "hovertemplate": "k=%{x}: %{y:.4f}<extra></extra>"},
                     {"type": "scatter", "mode": "markers", "name": f"chosen: k={chosen}", "x": [chosen],
                      "y": [scores.get(chosen)], "marker": {"size": 14, "symbol": "star", "color": "#d62728"},
                      "hoverinfo": "skip"}],
            "layout": {"height": 300, "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
                       "xaxis": {"title": {"text": "k of the top level"}},
                       "yaxis": {"title": {"text": f"{method.replace('_', '-')}"
                                                   f"{' (negated: higher is better)' if method == 'davies_bouldin' else ''}"}},
                       "legend": {"orientation": "h", "y": 1.12}}}


def confusion_figure(table, titles: dict[str, str] | None = None, max_rows: int = 60) -> dict[str, Any]:
    """Heatmap of item counts: clusters (rows) against ground-truth labels (columns)."""
    t = table.iloc[:max_rows]
    rows = [f"{esc(c)} {esc((titles or {}).get(c, ''), 30)}".strip() for c in t.index]
    z = t.to_numpy().tolist()
    return {"data": [{"type": "heatmap", "z": z, "x": [esc(c, 30) for c in t.columns], "y": rows,
                      "colorscale": "Blues", "reversescale": True, "text": z, "texttemplate": "%{text}",
                      "hovertemplate": "%{y}<br>label %{x}: %{z} items<extra></extra>"}],
            "layout": {"height": max(300, 28 * len(rows) + 120), "margin": {"l": 260, "r": 10, "t": 10, "b": 80},
                       "yaxis": {"autorange": "reversed"}}}
