"""Callbacks of the explore page: scatter, selection (in every view at once), pane, tree, search.

A selection is one small store ``{"key": "L2:3"}``; each view reacts to it on its own: the scatter
and the sunburst with ``dash.Patch`` (a click sends kilobytes, not the figure), the tree and the
pane by re-rendering their (small, lazily built) contents.
"""

from __future__ import annotations

import math
from typing import Any

from dash import ALL, MATCH, Input, Output, State, ctx as dash_ctx, html, no_update
from dash.exceptions import PreventUpdate

from hercules_core import HerculesError
from hercules_core.stability import stability_values

from . import curate, figures, ids, pane, paging, runstore, tree
from .explore_model import ExploreModel

DOWNLOADS = (("model.json", "Model"), ("memberships.csv", "Memberships CSV"),
             ("evaluation.json", "Evaluation JSON"), ("evaluation.csv", "Evaluation CSV"),
             ("hierarchy.txt", "Hierarchy text"), ("run_log.jsonl", "Run log"))


def as_int(value: Any, default: Any = None) -> Any:
    """A browser value meant as a whole number (int or digit string), else ``default``."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and 0 < len(value) < 10 and value.lstrip("-").isdigit():
        return int(value)
    return default


def selected_key(selection: Any) -> str | None:
    """The key of a SELECTION store value (parsed later against the model), else None."""
    key = selection.get("key") if isinstance(selection, dict) else None
    return key if isinstance(key, str) and len(key) < 40 else None


def clean_view(em: ExploreModel, view: Any) -> dict[str, Any] | None:
    """The VIEW store as the highlight needs it, with a level and space of this model, or None."""
    if not isinstance(view, dict):
        return None
    level = as_int(view.get("level"))
    if level is None or not 1 <= level <= em.top:
        return None
    space = view.get("space") if view.get("space") in em.spaces() else "representation"
    rng = view.get("range")
    ok = isinstance(rng, list) and len(rng) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in rng) \
        and rng[1] > rng[0] and rng[3] > rng[2]
    return {"level": level, "space": space, "items": view.get("items") is True, "image": view.get("image") is True
            and ok, "range": [float(v) for v in rng] if ok else None,
            "color_level": min(max(as_int(view.get("color_level"), em.top), level), em.top)}


def load(ctx, run: dict[str, Any] | None) -> ExploreModel:
    if not isinstance(run, dict) or not runstore.valid_id(run.get("run_id")):
        raise PreventUpdate
    try:
        return ctx.model(run["run_id"])
    except (OSError, HerculesError):
        raise PreventUpdate from None


def controls(ctx, run_id: Any) -> dict[str, Any] | None:
    """Options and defaults of the page's controls for a run (None when it cannot be opened)."""
    if not runstore.valid_id(run_id):
        return None
    try:
        em = ctx.model(run_id)
    except (OSError, HerculesError) as e:
        return {"error": str(e) if isinstance(e, HerculesError) else "This run has no model (yet)."}
    levels = [{"label": f"L{lv} ({len(em.h.levels[lv])} clusters)", "value": lv} for lv in range(1, em.top + 1)]
    default_level = 1 if len(em.h.levels[1]) <= 1500 else min(2, em.top)
    ds = em.h.dataset
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    files = [(name, label) for name, label in DOWNLOADS
             if name == "evaluation.csv" or (rdir / name).exists()]
    return {
        "levels": levels, "level": default_level, "color_level": em.top, "structure": em.structure,
        # colour by a level's clusters, or by stability when the model measured it
        "color_options": levels + ([{"label": "stability", "value": figures.STABILITY}]
                                   if stability_values(em.h, 1) is not None else []),
        "spaces": [{"label": s, "value": s} for s in em.spaces()],
        "title": f"{ds.source or 'data'} · {em.h.n_items:,} {ds.modality} items · "
                 f"{', '.join(str(len(lv)) for lv in em.h.levels[1:])} clusters in L1..L{em.top}",
        "downloads": [(f"/files/{run_id}/download/{name}", label) for name, label in files]
        + [(f"/files/{run_id}/report.html", "HTML report")],  # made on demand (callbacks/reuse_routes.py)
    }


def selection_from_trigger(em: ExploreModel, trigger: Any, value: Any) -> Any:
    """The new selection key for what was clicked, ``None`` to clear, or ``no_update``."""
    if trigger == ids.CLEAR:
        return None
    if trigger in (ids.SCATTER, ids.SUNBURST):
        points = value.get("points") if isinstance(value, dict) else None
        if not isinstance(points, list) or not points or not isinstance(points[0], dict):
            return no_update
        p = points[0]
        custom = p.get("customdata")
        key = p.get("id") if trigger == ids.SUNBURST else (custom[0] if isinstance(custom, list) and custom else None)
        return key if em.parse(key) is not None else no_update
    if isinstance(trigger, dict) and trigger.get("type") in (ids.TREE_SELECT_T, ids.PANE_LINK_T, ids.SEARCH_HIT_T):
        if not value:  # a component that just appeared (n_clicks 0), not a click
            return no_update
        key = trigger.get("key")
        return key if em.parse(key) is not None else no_update
    return no_update


def search_results(em: ExploreModel, query: str | None):
    query = query[:200] if isinstance(query, str) else ""
    hits = em.search(query)
    if not query or len(query.strip()) < 2:
        return html.Div("Type at least two characters.", className="small text-muted")
    note = em.item_search_note(query)
    note = html.Div(note, className="small text-muted search-note") if note else None
    if not hits:
        return html.Div([html.Div("No match.", className="small text-muted search-empty"), note])
    return html.Div([html.Div([html.Span(h["id"], className="badge bg-secondary me-1"), html.Strong(h["title"]),
                               html.Div(h["snippet"], className="small text-muted")],
                              id={"type": ids.SEARCH_HIT_T, "key": h["key"]}, n_clicks=0, role="button",
                              className="search-hit") for h in hits] + [note])


def register(app, ctx) -> None:
    @app.callback(Output(ids.SCATTER, "figure"), Output(ids.VIEW, "data"),
                  Input(ids.LEVEL, "value"), Input(ids.SPACE, "value"), Input(ids.COLOR_LEVEL, "value"),
                  Input(ids.SIZE_SCALE, "value"), Input(ids.EXPLORE_RUN, "data"), State(ids.SELECTION, "data"))
    def _scatter(level, space, color_level, size_scale, run, selection):
        # the run store is an input: a new revision (a title or structural edit, re-titling done) redraws
        em = load(ctx, run)
        fig, view = figures.scatter_figure(em, as_int(level, 1), space if space in em.spaces() else "representation",
                                           figures.STABILITY if color_level == figures.STABILITY
                                           else as_int(color_level), size_scale if size_scale in figures.SIZE_SCALES
                                           else "sqrt", selected_key(selection))
        return fig, view

    @app.callback(Output(ids.SELECTION, "data"), Output(ids.EXPLORE_RUN, "data", allow_duplicate=True),
                  Input(ids.SCATTER, "clickData"), Input(ids.SUNBURST, "clickData"),
                  Input({"type": ids.TREE_SELECT_T, "key": ALL}, "n_clicks"),
                  Input({"type": ids.PANE_LINK_T, "key": ALL}, "n_clicks"),
                  Input({"type": ids.SEARCH_HIT_T, "key": ALL}, "n_clicks"),
                  Input(ids.CLEAR, "n_clicks"), State(ids.EXPLORE_RUN, "data"), prevent_initial_call=True)
    def _select(*args):
        run = args[-1]
        em = load(ctx, run)
        if curate.is_stale(em, run):  # drawn before an edit in another tab: its keys name other clusters
            return None, curate.run_store(run, em)
        trig = dash_ctx.triggered_id
        value = dash_ctx.triggered[0]["value"] if dash_ctx.triggered else None
        key = selection_from_trigger(em, trig, value)
        if key is no_update:
            raise PreventUpdate
        return ({"key": key} if key else None), no_update

    @app.callback(Output(ids.SCATTER, "figure", allow_duplicate=True), Input(ids.SELECTION, "data"),
                  State(ids.VIEW, "data"), State(ids.EXPLORE_RUN, "data"), prevent_initial_call=True)
    def _highlight(selection, view, run):
        em = load(ctx, run)
        view = clean_view(em, view)
        if view is None:
            raise PreventUpdate
        return figures.highlight_patch(em, view, selected_key(selection))

    @app.callback(Output(ids.SCATTER, "figure", allow_duplicate=True), Output(ids.VIEW, "data", allow_duplicate=True),
                  Input(ids.SCATTER, "relayoutData"), State(ids.VIEW, "data"), State(ids.EXPLORE_RUN, "data"),
                  State(ids.SELECTION, "data"), prevent_initial_call=True)
    def _zoom(relayout, view, run, selection):
        em = load(ctx, run)
        view = clean_view(em, view)
        if view is None or not view["image"]:
            raise PreventUpdate
        rng = figures.view_range(relayout, view, figures.full_range(em, view["space"], view["level"]))
        if rng is None or rng == view["range"]:
            raise PreventUpdate
        return figures.zoom_patch(em, view, rng, selected_key(selection)), dict(view, range=rng)

    @app.callback(Output(ids.SUNBURST, "figure"), Input(ids.EXPLORE_RUN, "data"), State(ids.SELECTION, "data"))
    def _sunburst(run, selection):
        return figures.sunburst_figure(load(ctx, run), selected_key(selection))

    @app.callback(Output(ids.SUNBURST, "figure", allow_duplicate=True), Input(ids.SELECTION, "data"),
                  State(ids.EXPLORE_RUN, "data"), prevent_initial_call=True)
    def _sunburst_highlight(selection, run):
        return figures.sunburst_patch(load(ctx, run), selected_key(selection))

    @app.callback(Output(ids.PANE, "children"), Output(ids.TREE, "children"),
                  Input(ids.SELECTION, "data"), Input(ids.EXPLORE_RUN, "data"))
    def _pane_tree(selection, run):
        em = load(ctx, run)
        key = selected_key(selection)
        marks = curate.marks(em, runstore.run_dir(ctx.runs_dir, run["run_id"]))
        return pane.cluster_pane(em, key, run["run_id"], marks), tree.tree(em, key, marks)

    @app.callback(Output({"type": ids.TREE_KIDS_T, "key": MATCH}, "children"),
                  Output({"type": ids.TREE_TOGGLE_T, "key": MATCH}, "children"),
                  Input({"type": ids.TREE_TOGGLE_T, "key": MATCH}, "n_clicks"),
                  Input({"type": ids.TREE_PAGE_T, "key": MATCH, "page": ALL}, "n_clicks"),
                  State({"type": ids.TREE_KIDS_T, "key": MATCH}, "children"), State(ids.EXPLORE_RUN, "data"),
                  prevent_initial_call=True)
    def _toggle(n, _pages, current, run):
        trig = dash_ctx.triggered_id
        if not isinstance(trig, dict):
            raise PreventUpdate
        if trig.get("type") == ids.TREE_PAGE_T:
            page = paging.clicked_page(trig, dash_ctx.triggered[0]["value"] if dash_ctx.triggered else None)
            out = None if page is None else tree.turn_page(load(ctx, run), trig.get("key"), page)
            if out is None:
                raise PreventUpdate
            return out, no_update
        if not n:
            raise PreventUpdate
        em = load(ctx, run)
        out = tree.toggle(em, trig.get("key"), current, curate.marks(em, runstore.run_dir(ctx.runs_dir, run["run_id"])))
        if out is None:
            raise PreventUpdate
        return out

    @app.callback(Output({"type": ids.PANE_ITEMS_T, "key": MATCH}, "children"),
                  Input({"type": ids.PANE_PAGE_T, "key": MATCH, "page": ALL}, "n_clicks"),
                  # the list's own id: names the MATCH output among the arguments, as the tree's State does
                  State({"type": ids.PANE_ITEMS_T, "key": MATCH}, "id"),
                  State(ids.EXPLORE_RUN, "data"), prevent_initial_call=True)
    def _pane_page(_pages, _own, run):
        trig = dash_ctx.triggered_id
        page = paging.clicked_page(trig, dash_ctx.triggered[0]["value"] if dash_ctx.triggered else None)
        out = None if page is None else pane.item_page(load(ctx, run), trig.get("key"), page)
        if out is None:
            raise PreventUpdate
        return out

    @app.callback(Output(ids.SEARCH_RESULTS, "children"), Input(ids.SEARCH, "value"), Input(ids.EXPLORE_RUN, "data"),
                  prevent_initial_call=True)
    def _search(query, run):
        return search_results(load(ctx, run), query)
