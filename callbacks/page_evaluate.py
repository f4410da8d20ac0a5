"""Callbacks of the evaluate page: metrics per level (table + chart) and clusters against labels."""

from __future__ import annotations

import math
from typing import Any

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from hercules_core import HerculesError
from hercules_core import stability
from hercules_core.evaluation import confusion_table

from . import figures, ids
from .explore_model import ExploreModel
from .page_explore import as_int, load


GROUPS = (
    ("Internal (item vectors)", ("silhouette_score", "davies_bouldin_score", "calinski_harabasz_score")),
    ("Internal (children)", ("children_silhouette_score", "children_davies_bouldin_score",
                             "children_calinski_harabasz_score")),
    ("LLM-based (description embeddings)", ("llm_silhouette_score", "llm_davies_bouldin_score",
                                            "llm_calinski_harabasz_score")),
    ("Topic alignment", ("topic_alignment",)),
    ("External (labels)", ("adjusted_rand_score", "normalized_mutual_info_score", "homogeneity_score",
                           "completeness_score", "v_measure_score", "n_labelled")),
    # hercules_core/title_quality.py; self-retrieval rewards lexical overlap: one signal, not the truth
    ("Titles (self-retrieval: is a title closest to its own cluster?)",
     ("title_self_retrieval_top1", "title_self_retrieval_mrr", "title_model_written", "title_model_written_share",
      "title_fallbacks", "title_meta_text", "title_junk", "title_keyword_lists", "title_fluency", "title_disfluent",
      "title_duplicates_among_siblings",
      "title_parent_equals_child")),
    # hercules_core/descriptions.py: descriptions that add nothing to the title, and how they were replaced
    ("Descriptions (do they say more than the title?)",
     ("description_title_copies", "description_sample_copies", "description_reasked", "description_reasked_share",
      "description_extractive", "description_extractive_share")),
)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _level(evaluation: dict[Any, dict[str, Any]], lv: int) -> dict[str, Any]:
    return evaluation.get(lv, evaluation.get(str(lv), {}))  # keys may be str after JSON


def _equal(m: dict[str, Any], names: tuple[str, ...], prefix: str) -> bool:
    """Whether the metrics ``names`` equal the same metrics with ``prefix`` (at least one defined)."""
    pairs = [(m.get(n), m.get(prefix + n)) for n in names]
    return any(a is not None for a, _ in pairs) and all(
        (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, abs_tol=1e-9))
        for a, b in pairs)


def same_measure(evaluation: dict[Any, dict[str, Any]], a: str, b: str) -> bool:
    """Whether metrics ``a`` and ``b`` have the same value at every level where either is defined."""
    values = [(_level(evaluation, lv).get(a), _level(evaluation, lv).get(b)) for lv in evaluation]
    defined = [(x, y) for x, y in values if x is not None or y is not None]
    return bool(defined) and all(x is not None and y is not None and math.isclose(x, y, abs_tol=1e-9)
                                 for x, y in defined)


def coincidence_notes(evaluation: dict[Any, dict[str, Any]]) -> list[str]:
    """Why some rows of the table (and lines of the chart) repeat each other, when they do."""
    notes = []
    first = _level(evaluation, 1)
    internal = ("silhouette_score", "davies_bouldin_score", "calinski_harabasz_score")
    if first and _equal(first, internal, "children_"):
        notes.append("At L1 the children of a cluster are its items, so the children metrics are the item "
                     "metrics (in the chart, their lines meet at L1).")
    if first and _equal(first, internal, "llm_"):
        notes.append("At L1 the description metrics equal them too: the level below L1 is the items, and in "
                     "this run an item's description embedding is the embedding of its own text (only the "
                     "clusters get LLM-written descriptions). From L2 on the three views differ.")
    if same_measure(evaluation, "normalized_mutual_info_score", "v_measure_score"):
        notes.append("NMI and V-measure are the same measure here: V-measure (beta = 1, the harmonic mean of "
                     "homogeneity and completeness) equals NMI with arithmetic normalisation, scikit-learn's "
                     "default. The chart draws them as one line.")
    return notes


def metrics_table(evaluation: dict[Any, dict[str, Any]]):
    """Metrics as rows (grouped), levels as columns; why some rows repeat, and notes below."""
    levels = sorted(int(k) for k in evaluation)
    get = lambda lv: _level(evaluation, lv)  # noqa: E731
    head = html.Thead(html.Tr([html.Th("metric")] + [html.Th(f"L{lv} ({get(lv).get('n_clusters', '?')})")
                                                     for lv in levels]))
    rows = []
    for group, names in GROUPS:
        if all(get(lv).get(n) is None for lv in levels for n in names):
            continue
        rows.append(html.Tr(html.Td(group, colSpan=len(levels) + 1, className="table-secondary fw-semibold small")))
        for n in names:
            rows.append(html.Tr([html.Td(n, className="small")] +
                                [html.Td(_fmt(get(lv).get(n)), className="small") for lv in levels]))
    notes = [f"L{lv}: {note}" for lv in levels for note in get(lv).get("notes") or []]
    same = coincidence_notes(evaluation)
    return html.Div([dbc.Table([head, html.Tbody(rows)], size="sm", bordered=True, className="metrics-table"),
                     html.Div([html.P(n, className="small mb-1") for n in same], className="metrics-same mb-2")
                     if same else None,
                     html.Ul([html.Li(n, className="small text-muted") for n in notes[:30]])])


def _auto_k_scores(h) -> tuple[int, dict[int, float], bool] | None:
    """The level automatic k chose, its candidates' scores, and whether only that level was scored
    (runs before the top-down auto-k scored every level on its own points), from the run's stats. A
    model file may come from anywhere: anything malformed is treated as absent."""
    stats = h.stats if isinstance(h.stats, dict) else {}
    raw = stats.get("auto_k_scores")
    if not isinstance(raw, dict):
        return None
    levels = {as_int(k): v for k, v in raw.items() if isinstance(v, dict)}
    levels = {lv: v for lv, v in levels.items() if lv is not None and 1 <= lv <= h.top_level}
    if not levels:
        return None
    level = max(levels)
    scores = {as_int(k): float(v) for k, v in levels[level].items()
              if as_int(k) is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return (level, scores, len(raw) == 1) if scores else None


def auto_k_view(h) -> list:
    """How automatic k chose the top level (a chart of the scores): empty for fixed levels."""
    found = _auto_k_scores(h)
    if found is None:
        return []
    level, scores, top_down = found
    chosen = len(h.levels[level])
    cfg = h.config
    rule = ", the smallest k within one standard error of the best" if top_down and cfg.auto_k_method == "silhouette" else ""
    text = (f"L{level} has k={chosen}: the {cfg.auto_k_method.replace('_', '-')} score of the items' clustering "
            f"for every k tried{rule}.")
    text += (f" The levels below have about {cfg.auto_k_branching:g} children per cluster." if top_down else
             " This run chose k at every level on that level's own points (before the top-down automatic k).")
    return [html.H5("How automatic k chose the top level"), html.P(text, className="small auto-k-text"),
            dcc.Graph(figure=figures.auto_k_figure(scores, chosen, cfg.auto_k_method), config={"displaylogo": False},
                      id="eval-auto-k-graph")]


def stability_view(h) -> list:
    """Per level, how many clusters came back in re-clusterings of subsamples (stability.py):
    empty for models without stability."""
    rows = stability.level_summary(h)
    if not rows:
        return []
    st = h.stats.get("stability") or {}
    head = html.Thead(html.Tr([html.Th(c) for c in ("level", "clusters", "stable", "pattern", "dissolving",
                                                     "share stable", "median Jaccard", "lowest")]))
    body = html.Tbody([html.Tr([html.Td(f"L{r['level']}"), html.Td(r["clusters"]), html.Td(r["n_stable"]),
                                html.Td(r["n_pattern"]), html.Td(r["n_dissolving"]),
                                html.Td(f"{r['share_stable']:.0%}"), html.Td(f"{r['median']:.2f}"),
                                html.Td(f"{r['min']:.2f}")]) for r in rows])
    text = (f"Each level was clustered again {st.get('runs')} times on subsamples with other seeds; a cluster's "
            f"stability is its mean best-match Jaccard overlap. Stable: >= {rows[0]['threshold']:g}; pattern: "
            f">= {stability.PATTERN:g}; below that it dissolves in a re-run.")
    return [html.H5("Cluster stability", className="mt-3"), html.P(text, className="small"),
            dbc.Table([head, body], size="sm", bordered=True, className="small stability-table")]


def confusion_view(em: ExploreModel, level: int | None):
    h = em.h
    if h.dataset.labels is None:
        return html.Div("No ground-truth labels in this run: upload labels (a column or an id,label file) to see "
                        "external metrics and this confusion view.", className="text-muted no-labels")
    level = as_int(level)
    level = em.top if level is None else min(max(level, 1), em.top)
    try:
        table = confusion_table(h, level)
    except HerculesError as e:
        return html.Div(str(e), className="text-danger")
    titles = dict(zip(h.levels[level].ids, h.levels[level].titles))

    return dcc.Graph(figure=figures.confusion_figure(table, titles), config={"displaylogo": False},
                     id="eval-confusion-graph")


def register(app, ctx) -> None:
    @app.callback(Output(ids.EVAL_TABLE, "children"), Output(ids.EVAL_CHART, "figure"),
                  Output(ids.EVAL_CONFUSION_LEVEL, "options"), Output(ids.EVAL_CONFUSION_LEVEL, "value"),
                  Output(ids.EVAL_AUTO_K, "children"), Input(ids.EVAL_RUN, "data"))
    def _metrics(run):
        em = load(ctx, run)
        ev = em.h.evaluation
        opts = [{"label": f"L{lv}", "value": lv} for lv in range(1, em.top + 1)]
        return metrics_table(ev), figures.metrics_figure(ev), opts, em.top, auto_k_view(em.h) + stability_view(em.h)

    @app.callback(Output(ids.EVAL_CONFUSION, "children"), Input(ids.EVAL_CONFUSION_LEVEL, "value"),
                  State(ids.EVAL_RUN, "data"), prevent_initial_call=True)
    def _confusion(level, run):
        return confusion_view(load(ctx, run), level)
