"""Pure figure builders (plain plotly dicts) and the selection patches that keep clicks cheap.

The scatter has fixed trace slots (``T_*``): a click only rewrites per-bubble opacity / outline
arrays and the three small overlay traces with a ``dash.Patch``, never the whole figure.

Items: up to ``ITEMS_MAX`` they are points (hover, click); above, every item is drawn as a density
image (``items_image``: a 2-D histogram of the visible range coloured by the items' clusters, a PNG
under the bubbles, ``layout.images[IMG_ITEMS]``), re-rendered for the new range on zoom and pan; a
selection's items are a second image (``IMG_SELECTION``). Responses stay ~100 kB at any item count.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np
from dash import Patch
from PIL import Image
from plotly.colors import hex_to_rgb, qualitative, sample_colorscale

from hercules_core.stability import stability_values

from .explore_model import ExploreModel, make_key

PALETTE = tuple(qualitative.Dark24 + qualitative.Light24)
FADED = "rgba(200,200,200,0.35)"
T_ITEMS, T_BUBBLES, T_LABELS, T_CONTEXT, T_SEL_ITEMS, T_SELECTED = range(6)
PALETTE_RGB = np.array([hex_to_rgb(c) for c in PALETTE], dtype=np.uint8)
ITEMS_MAX = 5000  # L0 items are drawn as points up to this many items, above as a density image
SEL_ITEMS_MAX = 2000  # above ITEMS_MAX, a selection's own items are also points when it has at most this many
IMG_ITEMS, IMG_SELECTION = range(2)  # layout.images slots of the density images
IMAGE_PX = (800, 480)  # density image resolution (about the plot area's size on a desktop)
SEL_RGB = (17, 17, 17)
SIZE_SCALES = ("linear", "sqrt", "log")
# when the items are a density image (above ITEMS_MAX) and a level has at most this many bubbles, the
# scatter is SVG ("scatter"), else WebGL ("scattergl"): without a GPU a WebGL context costs ~0.4-0.7 s
# of the first render (SwiftShader) where SVG draws 1,000 bubbles in ~0.14 s; WebGL keeps thousands
# of points smooth, and with item points under the bubbles its hover picks the bubble a click means
GL_POINTS = 2000
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


def color_index(em: ExploreModel, level: int, color_level: int) -> np.ndarray:
    """Palette index of each node of ``level``: that of its ancestor at ``color_level``."""
    return em.map_to(level, max(color_level, level)) % len(PALETTE)


def colors_for(em: ExploreModel, level: int, color_level: int) -> list[str]:
    """Colour of each node of ``level``: the colour of its ancestor at ``color_level``."""
    return [PALETTE[int(a)] for a in color_index(em, level, color_level)]


def full_range(em: ExploreModel, space: str, level: int) -> list[float] | None:
    """``[x0, x1, y0, y1]`` around every item and every bubble of ``level`` (5% margin)."""
    ext = [e for e in (em.extent(0, space), em.extent(level, space)) if e is not None]
    if not ext:
        return None
    lo = np.min([e[0] for e in ext], axis=0)
    hi = np.max([e[1] for e in ext], axis=0)
    pad = np.maximum((hi - lo) * 0.05, 1e-6)
    return [round(float(v), 6) for v in (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])]


ALPHAS = (70, 120, 170, 215, 255)  # opacity steps of a density pixel, by the log of its item count


def _png(index: np.ndarray, colors: np.ndarray) -> str:
    """A palette PNG: pixel value ``c * len(ALPHAS) + a + 1`` is colour ``colors[c]`` at ``ALPHAS[a]``, 0 is
    transparent (one byte a pixel: small and fast to encode)."""
    img = Image.fromarray(index, "P")
    img.putpalette([0, 0, 0] + [int(v) for c in colors for _ in ALPHAS for v in c])
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=3, transparency=bytes([0] + list(ALPHAS) * len(colors)))
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def items_image(em: ExploreModel, space: str, rng: list[float], color_level: int | None = None,
                mask: np.ndarray | None = None, px: tuple[int, int] = IMAGE_PX) -> dict[str, Any] | None:
    """Every item inside ``rng`` (``[x0, x1, y0, y1]``) as one PNG for ``layout.images``: a pixel has
    the colour of (one of) its items' clusters at ``color_level`` (``SEL_RGB`` with a ``mask``: only
    the masked items), more opaque the more items it holds (log scale). Sparse views get bigger
    pixels so that a single item stays visible."""
    xy = em.xy(0, space)
    if xy is None:
        return None
    x0, x1, y0, y1 = (float(v) for v in rng)
    if not (x1 > x0 and y1 > y0):
        return None
    x, y = xy[:, 0], xy[:, 1]
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    if mask is not None:
        inside &= mask
    sel = np.flatnonzero(inside)
    w, h = px
    scale = 4 if len(sel) < 2_000 else 2 if len(sel) < 50_000 else 1
    w, h = max(1, w // scale), max(1, h // scale)
    cx = np.minimum(((x[sel] - x0) * (w / (x1 - x0))).astype(np.int64), w - 1)
    cy = np.minimum(((y1 - y[sel]) * (h / (y1 - y0))).astype(np.int64), h - 1)  # row 0 is the top
    pix = cy * w + cx
    count = np.bincount(pix, minlength=w * h)
    hit = count > 0
    index = np.zeros(w * h, dtype=np.uint8)
    if hit.any():
        if mask is None:
            colors = PALETTE_RGB
            color = np.zeros(w * h, dtype=np.int64)
            color[pix] = color_index(em, 0, em.top if color_level is None else color_level)[sel]
        else:
            colors, color = np.array([SEL_RGB]), np.zeros(w * h, dtype=np.int64)
        level = np.log1p(count[hit]) / math.log1p(count.max()) * (len(ALPHAS) - 1)
        index[hit] = color[hit] * len(ALPHAS) + np.rint(level).astype(np.int64) + 1
    else:
        colors = np.array([SEL_RGB])
    return {"source": _png(index.reshape(h, w), colors), "xref": "x", "yref": "y", "x": x0, "y": y1,
            "sizex": x1 - x0, "sizey": y1 - y0, "sizing": "stretch", "layer": "below", "opacity": 1.0}


def stability_colors(em: ExploreModel, level: int) -> list[str] | None:
    """Colour of each cluster of ``level`` by its mean best-match Jaccard (None: not measured)."""
    vals = stability_values(em.h, level)
    if vals is None:
        return None
    return [UNMEASURED if not np.isfinite(v) else sample_colorscale("RdYlGn", [float(v)])[0] for v in vals]


def _empty_trace(kind: str, name: str, **marker: Any) -> dict[str, Any]:
    return {"type": kind, "mode": "markers", "name": name, "x": [], "y": [], "customdata": [],
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
    kind = "scattergl" if view["items"] or len(lv) > GL_POINTS else "scatter"
    items = _empty_trace(kind, "items", size=4, opacity=0.5)
    rng = full_range(em, space, level) if not view["items"] else None
    images: list[dict[str, Any]] = []
    if rng is not None:
        base = items_image(em, space, rng, color_level)
        if base is not None:
            view["image"], view["range"] = True, rng
            images = [base, {**base, "source": "", "opacity": 1.0}]
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
        "type": kind, "mode": "markers", "name": f"L{level} clusters", "showlegend": False,
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
    context = _empty_trace(kind, "ancestors", symbol="circle-open", size=[], color="#000", line={"width": 2})
    sel_items = _empty_trace(kind, "selected items", size=5, color="#111", opacity=0.9)
    selected = _empty_trace(kind, "selection", symbol="circle-open-dot", size=26, color="#d62728", line={"width": 3})
    fig = {
        "data": [items, bubbles, labels, context, sel_items, selected],
        "layout": {
            "margin": {"l": 10, "r": 10, "t": 44, "b": 10}, "height": 520, "dragmode": "pan",
            "title": {"text": f"Level {level} clusters ({len(lv)}) · {space} space"
                              f"<br><sup>{SPACE_NOTES[space]}</sup>", "font": {"size": 13}},
            "xaxis": {"showticklabels": False, "zeroline": False, "title": {"text": "PC 1"}},
            "yaxis": {"showticklabels": False, "zeroline": False, "title": {"text": "PC 2"}},
            "uirevision": f"{level}-{space}", "hovermode": "closest", "clickmode": "event",
            "plot_bgcolor": "#fbfbfd", "images": images,
        },
    }
    if view.get("image"):  # the image covers this range: the axes start there, not at the bubbles'
        fig["layout"]["xaxis"]["range"], fig["layout"]["yaxis"]["range"] = rng[:2], rng[2:]
    for path, value in highlight_values(em, view, selection).items():
        node = fig["data"] if isinstance(path[0], int) else fig
        for k in path[:-1]:
            node = node[k] if isinstance(k, int) else node.setdefault(k, {})
        node[path[-1]] = value
    return fig, view


def view_range(relayout: Any, view: dict[str, Any], full: list[float] | None) -> list[float] | None:
    """The ``[x0, x1, y0, y1]`` a zoom or pan (plotly's ``relayoutData``) shows, None if it did not
    change the axes; an autorange (double click) is the full range."""
    if not isinstance(relayout, dict):
        return None
    if relayout.get("xaxis.autorange") or relayout.get("yaxis.autorange"):
        return full
    cur = list(view.get("range") or full or [])
    if len(cur) != 4:
        return None
    changed = False
    for i, key in enumerate(("xaxis.range[0]", "xaxis.range[1]", "yaxis.range[0]", "yaxis.range[1]")):
        v = relayout.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            cur[i], changed = float(v), True
    for i, key in ((0, "xaxis.range"), (2, "yaxis.range")):
        v = relayout.get(key)
        if isinstance(v, list) and len(v) == 2 and all(isinstance(a, (int, float)) and math.isfinite(a) for a in v):
            cur[i:i + 2], changed = [float(v[0]), float(v[1])], True
    if not changed or not (cur[1] > cur[0] and cur[3] > cur[2]):
        return None
    return cur


def zoom_patch(em: ExploreModel, view: dict[str, Any], rng: list[float], selection: str | None) -> Patch:
    """The density images re-rendered for a new visible range."""
    patch = Patch()
    base = items_image(em, view["space"], rng, view.get("color_level"))
    if base is not None:
        patch["layout"]["images"][IMG_ITEMS] = dict(base, opacity=1.0 if em.parse(selection) is None else 0.3)
    patch["layout"]["images"][IMG_SELECTION] = selection_image(em, dict(view, range=rng), selection)
    return patch


def selection_image(em: ExploreModel, view: dict[str, Any], selection: str | None) -> dict[str, Any]:
    parsed = em.parse(selection)
    rng = view.get("range")
    img = None
    if parsed is not None and rng:
        sl, si = parsed
        img = items_image(em, view["space"], rng, mask=em.related(0, sl, si))
    return img or {"source": "", "xref": "x", "yref": "y", "x": 0, "y": 0, "sizex": 0, "sizey": 0}


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
        if view.get("image"):
            out[("layout", "images", IMG_ITEMS, "opacity")] = 1.0
            out[("layout", "images", IMG_SELECTION)] = selection_image(em, view, None)
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
    if view.get("image"):  # everything faded, the selection's items drawn over it
        out[("layout", "images", IMG_ITEMS, "opacity")] = 0.3
        out[("layout", "images", IMG_SELECTION)] = selection_image(em, view, selection)
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
        node = patch["data"] if isinstance(path[0], int) else patch
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return patch


# ----------------------------------------------------------------------------- sunburst
# the sunburst draws at most 3 rings at once, fewer when they would hold more than this many sectors
# (at 430 px, about as many as can carry a readable label): each drawn sector costs the browser a
# text measurement (~1-2 ms in this machine's Chromium); levels 1000/100/10 drawn at once took 1.9 s
# of the explore page's first render at 100k items, 200/40/8 0.54 s at 20k. A click on a sector
# opens its subtree with the levels under it.
SUNBURST_RINGS, SUNBURST_SECTORS = 3, 150


def sunburst_depth(em: ExploreModel) -> int:
    """How many levels (rings, from the top) the sunburst shows at once: its ``maxdepth``."""
    depth, drawn = 0, 0
    for level in range(em.top, max(em.top - SUNBURST_RINGS, 0), -1):
        drawn += len(em.h.levels[level])
        if depth and drawn > SUNBURST_SECTORS:
            break
        depth += 1
    return max(depth, 1)


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
                     "branchvalues": "total", "hovertext": hover, "hoverinfo": "text",
                     "maxdepth": sunburst_depth(em),
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
