"""The cluster pane (one node in detail) and the overview shown when nothing is selected.

Everything here is rendered as text by Dash components: titles and descriptions come from an LLM
and samples from uploads, so nothing is ever interpreted as HTML or markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
from dash import html

from hercules_core.stability import cluster_stability, describe

from . import ids, outcome, paging, runstore
from .explore_model import ExploreModel, make_key

SAMPLES = 6
MOSAIC = 9  # representative images in a cluster's mosaic
MAX_VARS = 30


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "—"
        return f"{v:.4g}"
    return str(v)


def _link(em: ExploreModel, level: int, index: int):
    lv = em.h.levels[level]
    return html.Span([html.Span(lv.ids[index], className="me-1 fw-semibold"), lv.titles[index]],
                     id={"type": ids.PANE_LINK_T, "key": make_key(level, index)}, n_clicks=0,
                     className="pane-link", role="button")


def representatives(em: ExploreModel, level: int, index: int, count: int = SAMPLES) -> np.ndarray:
    """Item indices closest to the cluster's centroid (the first members when vectors are missing)."""
    members = em.members(level, index)
    vecs = em.h.levels[0].vectors
    cent = em.h.levels[level].vectors
    if vecs is None or cent is None or cent.shape[1] != vecs.shape[1] or len(members) <= count:
        return members[:count]
    d = np.einsum("ij,ij->i", vecs[members] - cent[index], vecs[members] - cent[index])
    return members[np.argsort(d, kind="stable")[:count]]


def numeric_stats(em: ExploreModel, members: np.ndarray) -> list[dict[str, Any]]:
    """Mean, std, min, max per variable over ``members`` in original units."""
    ds = em.h.dataset
    raw = ds.numeric_raw
    if raw is None or not len(members):
        return []
    sub = raw[members]
    meta = ds.numeric_metadata or {}
    out = []
    for j, name in enumerate((ds.feature_names or [])[:MAX_VARS]):
        col = sub[:, j]
        out.append({"variable": name, "unit": (meta.get(name) or {}).get("unit", ""), "mean": float(col.mean()),
                    "std": float(col.std()), "min": float(col.min()), "max": float(col.max())})
    return out


def _stats_table(rows: list[dict[str, Any]]):
    head = html.Thead(html.Tr([html.Th(c) for c in ("variable", "unit", "mean", "std", "min", "max")]))
    body = html.Tbody([html.Tr([html.Td(r["variable"]), html.Td(r["unit"])] +
                               [html.Td(_fmt(r[k])) for k in ("mean", "std", "min", "max")]) for r in rows])
    return dbc.Table([head, body], size="sm", striped=True, className="small mb-2 stats-table")


def _served(em: ExploreModel, run_id: str | None, i: int) -> bool:
    """Whether the run's image route serves item ``i``'s picture (an imported model's images live
    elsewhere and are not served)."""
    paths = em.h.dataset.image_paths or []
    return bool(run_id and em.path and 0 <= i < len(paths)
                and runstore.run_image(Path(em.path).parent, paths[i]) is not None)


def _image(em: ExploreModel, run_id: str | None, i: int, css: str):
    """The item's picture when the run's image route serves it (an imported model's images live
    elsewhere and are not served): otherwise a note instead of a broken link."""
    if _served(em, run_id, i):
        return html.Img(src=f"/files/{run_id}/image/{i}", className=css, alt=em.h.levels[0].ids[i])
    return html.Div("(image not stored with this run)", className=f"{css} small text-muted no-image")


def _sample(em: ExploreModel, run_id: str | None, i: int):
    ds = em.h.dataset
    item_id = em.h.levels[0].ids[i]
    if ds.modality == "image":
        body = [_image(em, run_id, i, "thumb"),
                html.Div(item_id, className="small text-muted")]
        return html.Div(body, className="sample sample-image", id={"type": ids.PANE_LINK_T, "key": make_key(0, i)},
                        n_clicks=0, role="button")
    if ds.modality == "numeric":
        text = em.h.levels[0].descriptions[i]
    else:
        text = ds.texts[i] if ds.texts is not None else em.h.levels[0].titles[i]
        text = text if len(text) <= 300 else text[:299] + "…"
    return html.Div([html.Span(item_id, className="badge bg-secondary me-1"), text], className="sample",
                    id={"type": ids.PANE_LINK_T, "key": make_key(0, i)}, n_clicks=0, role="button")


def mosaic(em: ExploreModel, level: int, index: int, run_id: str | None, count: int = MOSAIC):
    """A grid of the cluster's most representative images: for image runs, what the cluster looks
    like says more than a title made from file names or "Images like #..." (None for other runs)."""
    if em.h.dataset.modality != "image" or level < 1 or not run_id:
        return None
    ids0 = em.h.levels[0].ids
    shown = [int(i) for i in representatives(em, level, index, count) if _served(em, run_id, int(i))]
    if not shown:  # e.g. an imported model: no broken pictures
        return None
    return html.Div([html.Img(src=f"/files/{run_id}/image/{i}", className="mosaic-thumb", alt=ids0[i],
                              title=ids0[i]) for i in shown], className="image-mosaic")


def _raw(em: ExploreModel, run_id: str | None, i: int):
    ds = em.h.dataset
    if ds.modality == "text":
        return html.Pre(ds.texts[i], className="raw-text")
    if ds.modality == "image":
        return _image(em, run_id, i, "thumb-large")
    return _stats_table([{"variable": n, "unit": ((ds.numeric_metadata or {}).get(n) or {}).get("unit", ""),
                          "mean": float(v), "std": None, "min": None, "max": None}
                         for n, v in zip((ds.feature_names or [])[:MAX_VARS], ds.numeric_raw[i])])


def item_page(em: ExploreModel, key: Any, page: int) -> list | None:
    """Page ``page`` of a level-1 cluster's items as links, with its pager."""
    parsed = em.parse(key)
    if parsed is None or parsed[0] != 1:
        return None
    kids = em.children(*parsed)
    shown, page = paging.page_of(kids, page)
    return [html.Ul([html.Li(_link(em, 0, int(k))) for k in shown], className="pane-children"),
            paging.pager(ids.PANE_PAGE_T, key, page, len(kids))]


def _stability_line(em: ExploreModel, level: int, index: int):
    """"stable in 5 of 5 re-runs (Jaccard 0.93)"; nothing for items and models without stability."""
    info = cluster_stability(em.h, level, index)
    if info is None:
        return None
    return html.Div(describe(info), className="small mt-1 pane-stability" + ("" if info["stable"] else " text-warning"),
                    title=f"Best-match Jaccard overlap with the cluster in re-clusterings of subsamples; stable at "
                          f">= {info['threshold']:g}.")


def cluster_pane(em: ExploreModel, key: str, run_id: str | None = None, marks: dict | None = None):
    """Everything about one node: header, text, provenance, links, samples, statistics, raw data;
    ``marks`` (cluster id -> short text, callbacks/curate.py) badge the title while it is re-titled."""
    parsed = em.parse(key)
    if parsed is None:
        return overview(em)
    level, index = parsed
    h = em.h
    lv = h.levels[level]
    source = lv.sources[index]
    header = [html.H5(lv.titles[index], className="pane-title"), mosaic(em, level, index, run_id),
              html.Div([html.Span(lv.ids[index], className="badge bg-dark me-1 pane-id"),
                        html.Span(f"level {level}", className="badge bg-info text-dark me-1"),
                        html.Span(f"{int(lv.size[index]):,} item{'s' if lv.size[index] != 1 else ''}",
                                  className="badge bg-light text-dark me-1 pane-size"),
                        html.Span(h.dataset.modality, className="badge bg-light text-dark me-1"),
                        html.Span(mark, className="badge bg-info text-dark me-1 pane-mark")
                        if (mark := (marks or {}).get(str(lv.ids[index]))) else None]),
              _stability_line(em, level, index),
              html.P(lv.descriptions[index], className="pane-description mt-2"),
              html.Div([html.Span("written by ", className="text-muted"), html.Code(source),
                        html.Span(" fallback (keywords: the LLM failed)", className="badge bg-warning text-dark ms-1")
                        if bool(lv.fallback[index]) else None,
                        html.Span(" extractive description (the model's only repeated the title or a sample)",
                                  className="badge bg-warning text-dark ms-1 pane-extractive")
                        if lv.description_marks and lv.description_marks[index] == "extractive" else None],
                       className="small mb-2")]
    parent = int(lv.parent[index])
    links = []
    if parent >= 0:
        links.append(html.Div([html.Span("Parent: ", className="text-muted small"), _link(em, level + 1, parent)]))
    kids = em.children(level, index)
    children_block = None
    if level == 1:  # the children are the items themselves: listed on demand, a page at a time, below the samples
        children_block = html.Details([html.Summary(f"Items ({len(kids):,})", className="small text-muted"),
                                       html.Div(item_page(em, key, 0), id={"type": ids.PANE_ITEMS_T, "key": key})],
                                      className="mt-2")
    elif len(kids):
        shown = kids[:30]
        items = [html.Ul([html.Li(_link(em, level - 1, int(k))) for k in shown], className="pane-children"),
                 html.Div(f"… and {len(kids) - len(shown)} more", className="small text-muted")
                 if len(kids) > len(shown) else None]
        links.append(html.Div([html.Div(f"Children ({len(kids)}):", className="text-muted small"), *items]))
    body: list = [*header, *links]
    if level == 0:
        body.append(html.H6("Raw data", className="mt-2"))
        body.append(_raw(em, run_id, index))
        if h.dataset.labels is not None:
            body.append(html.Div(["label: ", html.Code(h.dataset.labels[index])], className="small"))
    else:
        reps = representatives(em, level, index)
        body.append(html.H6("Representative samples", className="mt-2"))
        body.append(html.Div([_sample(em, run_id, int(i)) for i in reps],
                             className="samples" + (" samples-images" if h.dataset.modality == "image" else "")))
        if h.dataset.modality == "numeric":
            body.append(html.H6("Statistics (original units)", className="mt-2"))
            body.append(_stats_table(numeric_stats(em, em.members(level, index))))
        body.append(children_block)
    return html.Div(body, className="cluster-pane", **{"data-key": key})


def _kv_table(d: dict[str, Any], className: str = ""):
    return dbc.Table(html.Tbody([html.Tr([html.Th(str(k)), html.Td(_fmt(v) if not isinstance(v, (list, dict))
                                                                       else str(v))]) for k, v in d.items()]),
                     size="sm", className="small mb-2 " + className)


def overview(em: ExploreModel):
    """Totals, levels, clusters per level, configuration, timings and token usage."""
    h = em.h
    ds = h.dataset
    stats = h.stats or {}
    totals = {"items": f"{h.n_items:,}", "data type": ds.modality, "source": ds.source or "—",
              "labels": "yes" if ds.labels is not None else "no", "levels": h.top_level,
              "clusters per level": ", ".join(f"L{lv.level}: {len(lv)}" for lv in h.levels[1:])}
    cfg = h.config.to_dict()
    main_cfg = {k: cfg[k] for k in ("level_cluster_counts", "representation_mode", "topic_seed", "random_state",
                                    "use_resampling", "weight_by_size", "auto_k_method") if k in cfg}
    models = {k: v for k, v in (stats.get("models") or {}).items() if v}
    timings = {k: f"{v:.2f} s" for k, v in (stats.get("timings") or {}).items() if isinstance(v, (int, float))}
    usage = stats.get("usage") or {}
    n_fallback = stats.get("n_fallback_summaries")
    # a run that finished with warnings says so first (its status.json, next to the model)
    status = runstore.read_status(Path(em.path).parent) if em.path else {}
    warned = outcome.warnings_block(status.get("warnings"), status.get("title_quality")
                                    or outcome.title_quality(h.evaluation))
    return html.Div([
        html.H5("Overview", className="pane-title"),
        warned,
        html.P("Click a bubble, a tree node or a search hit to see a cluster.", className="small text-muted"),
        _kv_table(totals, "overview-totals"),
        html.H6("Models"), _kv_table(models or {"summariser": "keywords"}),
        html.H6("Configuration"), _kv_table(main_cfg),
        html.Details([html.Summary("All settings", className="small"), _kv_table(cfg)]),
        html.H6("Timings", className="mt-2"), _kv_table(timings or {"total": "—"}),
        html.H6("Token usage"), _kv_table(usage or {"llm_calls": 0}),
        html.Div(f"{n_fallback} summaries are keyword fallbacks.", className="small text-warning")
        if n_fallback else None,
        html.Ul([html.Li(n, className="small") for n in (stats.get("notes") or [])[:10]]),
    ], className="cluster-pane overview", **{"data-key": ""})
