"""Explore one run: bubble scatter, cluster pane / overview, hierarchy tree, search, sunburst."""

import dash
import dash_bootstrap_components as dbc
import flask
from dash import dcc, html

from callbacks import assign_panel, curate, figures, ids, uploads
from callbacks.page_explore import controls

dash.register_page(__name__, path="/explore", name="Explore", title="HERCULES · explore", order=2)

# the search runs as the user types, once typing pauses this long: dbc.Input's ``debounce`` takes
# milliseconds (dcc.Input's takes seconds); ``True`` would wait for Enter or a click elsewhere
SEARCH_DEBOUNCE_MS = 300


def downloads_bar(links: list[tuple[str, str]]):
    """Plain links: the server answers with ``Content-Disposition: attachment`` and a run-id file name."""
    return html.Div([html.Span("Download: ", className="small text-muted me-1")] +
                    [html.A(label, href=href, className="btn btn-sm btn-outline-secondary me-1 mb-1 download-link",
                            **{"data-file": href.rsplit("/", 1)[-1]}) for href, label in links],
                    id=ids.DOWNLOADS)


def edit_box():
    """Where callbacks/edit.py puts the edit form of the selected cluster."""
    return html.Div([dcc.Store(id=ids.EDIT_KEY), html.Div(id=ids.EDIT_BOX)], className="mt-2")


def curate_box(replay_targets: list):
    """The structure editor (callbacks/curate.py): the edit selection, the edit buttons (each enabled
    only when it applies), the confirmation of an LLM cost, the polling of background re-titling and
    the edit log."""
    btn = {"size": "sm", "className": "me-1 mb-1", "disabled": True}
    return html.Div([
        dcc.Store(id=ids.CURATE_SEL, data={"ids": []}), dcc.Store(id=ids.CURATE_PENDING),
        dcc.Interval(id=ids.CURATE_POLL, interval=1000, disabled=True),
        html.Div([html.Span("Edit structure: ", className="small fw-semibold me-1"),
                  html.Span(id=ids.CURATE_CHIPS, className="curate-chips"),
                  dbc.Button("Add clicked cluster", id=ids.CURATE_ADD, size="sm", color="light",
                             className="ms-1", title="Add the cluster selected in the scatter, tree, sunburst or "
                                                     "search to the clusters to edit (or box-select bubbles)"),
                  dbc.Button("Clear", id=ids.CURATE_CLEAR, size="sm", color="light", className="ms-1")],
                 className="mb-1"),
        html.Div([
            dbc.Button("Merge", id=ids.CURATE_MERGE, color="primary", **btn),
            dbc.Button("Split", id=ids.CURATE_SPLIT, color="primary", **btn),
            dbc.Input(id=ids.CURATE_SPLIT_K, type="number", value=2, min=2, max=curate.SPLIT_K_MAX, step=1, size="sm",
                      className="d-inline-block me-2 curate-k", style={"width": "4.5rem"}),
            dbc.Select(id=ids.CURATE_MOVE_TO, options=[], placeholder="Move to…", size="sm",
                       className="d-inline-block me-1", style={"width": "14rem"}),
            dbc.Button("Move", id=ids.CURATE_MOVE, color="primary", **btn),
            dbc.Button("Dissolve", id=ids.CURATE_DISSOLVE, color="warning", **btn),
            dbc.Button("Undo", id=ids.CURATE_UNDO, color="secondary", outline=True, **btn),
            dbc.Button("Redo", id=ids.CURATE_REDO, color="secondary", outline=True, **btn),
        ], className="curate-buttons"),
        html.Div([html.Span(id=ids.CURATE_MSG), " ", html.Span(id=ids.CURATE_RETITLE_MSG)], className="small mt-1"),
        html.Details([html.Summary("Edit log", className="small"), html.Div(id=ids.CURATE_LOG, className="small"),
                      html.Div([dbc.Select(id=ids.CURATE_REPLAY_TARGET, options=replay_targets, size="sm",
                                           placeholder="another run of the same data…",
                                           className="d-inline-block me-1", style={"width": "18rem"}),
                                dbc.Button("Replay edits onto it", id=ids.CURATE_REPLAY, size="sm", color="light")],
                               className="mt-1"),
                      html.Div(id=ids.CURATE_REPLAY_MSG, className="small mt-1")],
                     className="mt-1 curate-log-box"),
        dbc.Modal([dbc.ModalHeader(dbc.ModalTitle("Re-titling calls the LLM")),
                   dbc.ModalBody(id=ids.CURATE_CONFIRM_TEXT),
                   dbc.ModalFooter([dbc.Button("Cancel", id=ids.CURATE_CONFIRM_CANCEL, color="light"),
                                    dbc.Button("Edit and re-title", id=ids.CURATE_CONFIRM_OK, color="primary")])],
                  id=ids.CURATE_CONFIRM, is_open=False),
    ], className="card card-body p-2 mb-2 curate-box")


def assign_section():
    """The collapsed "Assign new data" card (its parts always exist: callbacks/assign_panel.py reads
    them as State)."""
    return html.Details([
        html.Summary("Assign new data to this hierarchy", className="fw-semibold assign-toggle"),
        html.Div([
            html.P("Upload new items of the same kind (a table, .txt files, images or a ZIP). Each gets its "
                   "cluster at every level, its distance to its level-1 centroid, and a 'novel' flag when it is "
                   "farther than 95% of that cluster's own items. No LLM is called.", className="small text-muted"),
            uploads.limited(dcc.Upload(id=ids.ASSIGN_UPLOAD, multiple=True, className="upload-box", children=html.Div(
                ["Drag and drop new data here, or ", html.A("browse", className="link-primary")])),
                uploads.MAX_UPLOAD_BYTES, ids.ASSIGN_SIZE_MSG),
            html.Div(id=ids.ASSIGN_MSG, className="mt-1"),
            html.Div(id=ids.ASSIGN_OPTIONS, style=assign_panel.HIDDEN, children=dbc.Row([
                dbc.Col([dbc.Label("Text column", className="small mb-0"),
                         dbc.Select(id=ids.ASSIGN_TEXT_COL, options=[], size="sm")], md=4),
                dbc.Col([dbc.Label("Id column", className="small mb-0"),
                         dbc.Select(id=ids.ASSIGN_ID_COL, options=[], size="sm")], md=4),
            ], className="g-2")),
            dbc.Button("Assign", id=ids.ASSIGN_START, color="primary", size="sm", className="mt-2", disabled=True),
            html.Div(id=ids.ASSIGN_SUMMARY, className="mt-2"),
            html.Div(id=ids.ASSIGN_TABLE_BOX),
            dcc.Store(id=ids.ASSIGN_UPLOAD_STORE), dcc.Store(id=ids.ASSIGN_RESULT),
        ], className="mt-2"),
    ], className="card card-body mb-4 assign-section")


def layout(run=None, **_):
    c = controls(flask.current_app.config["HERCULES"], run)
    if c is None or "error" in c:
        msg = c["error"] if c else "Choose a finished run on the Runs page, or import a model JSON there."
        return dbc.Container([html.H3("Explore", className="my-3"),
                              dbc.Alert([msg, " ", html.A("Go to runs", href="/runs")], color="info",
                                        id=ids.EXPLORE_MSG)], fluid="lg")
    small = "small fw-semibold mb-0"
    bar = dbc.Row([
        dbc.Col([dbc.Label("Level", className=small),
                 dbc.Select(id=ids.LEVEL, options=c["levels"], value=c["level"], size="sm")], md=3),
        dbc.Col([dbc.Label("Space", className=small),
                 dbc.RadioItems(id=ids.SPACE, options=c["spaces"], value="representation", inline=True,
                                className="small")], md=3),
        dbc.Col([dbc.Label("Colour by level", className=small),
                 dbc.Select(id=ids.COLOR_LEVEL, options=c.get("color_options", c["levels"]), value=c["color_level"],
                            size="sm")], md=2),
        dbc.Col([dbc.Label("Bubble size", className=small),
                 dbc.RadioItems(id=ids.SIZE_SCALE, value="sqrt", inline=True, className="small",
                                options=[{"label": s, "value": s} for s in figures.SIZE_SCALES])], md=3),
        dbc.Col(dbc.Button("Clear", id=ids.CLEAR, size="sm", color="light", className="mt-3"), md=1),
    ], className="g-2 mb-1")
    return dbc.Container([
        dcc.Store(id=ids.EXPLORE_RUN, data={"run_id": run, "structure": c["structure"]}), dcc.Store(id=ids.SELECTION), dcc.Store(id=ids.VIEW),
        html.Div([html.H4("Explore", className="d-inline me-2"),
                  html.Span(c["title"], id=ids.EXPLORE_HEADER, className="text-muted small"),
                  html.A("Evaluate →", href=f"/evaluate?run={run}", className="ms-3 small"),
                  html.A("Compare →", href=f"/compare?a={run}", className="ms-3 small")], className="my-2"),
        downloads_bar(c["downloads"]),
        dbc.Row([
            dbc.Col([bar, dcc.Graph(id=ids.SCATTER, config={"scrollZoom": True, "displaylogo": False},
                                    className="scatter")], lg=7),
            dbc.Col([curate_box(curate.replay_targets(flask.current_app.config["HERCULES"], run)),
                     html.Div(id=ids.PANE, className="pane-box"), edit_box()], lg=5),
        ], className="mt-2"),
        dbc.Row([
            dbc.Col([dbc.Input(id=ids.SEARCH, placeholder="Search titles, descriptions and items…", size="sm",
                               debounce=SEARCH_DEBOUNCE_MS, type="search"),
                     html.Div(id=ids.SEARCH_RESULTS, className="search-results"),
                     html.H6("Hierarchy", className="mt-2"),
                     html.Div(id=ids.TREE, className="tree-box")], lg=5),
            dbc.Col([html.H6("All clusters by size"),
                     dcc.Graph(id=ids.SUNBURST, config={"displaylogo": False})], lg=7),
        ], className="mt-3 mb-4"),
        assign_section(),
    ], fluid=True)
