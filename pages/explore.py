"""Explore one run: bubble scatter, cluster pane / overview, hierarchy tree, search, sunburst."""

import dash
import dash_bootstrap_components as dbc
import flask
from dash import dcc, html

from callbacks import assign_panel, edit, figures, ids
from callbacks.page_explore import SEARCH_DEBOUNCE_MS, controls, downloads_bar

dash.register_page(__name__, path="/explore", name="Explore", title="HERCULES · explore", order=2)


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
                 dbc.Select(id=ids.COLOR_LEVEL, options=c["levels"], value=c["color_level"], size="sm")], md=2),
        dbc.Col([dbc.Label("Bubble size", className=small),
                 dbc.RadioItems(id=ids.SIZE_SCALE, value="sqrt", inline=True, className="small",
                                options=[{"label": s, "value": s} for s in figures.SIZE_SCALES])], md=3),
        dbc.Col(dbc.Button("Clear", id=ids.CLEAR, size="sm", color="light", className="mt-3"), md=1),
    ], className="g-2 mb-1")
    return dbc.Container([
        dcc.Store(id=ids.EXPLORE_RUN, data={"run_id": run}), dcc.Store(id=ids.SELECTION), dcc.Store(id=ids.VIEW),
        html.Div([html.H4("Explore", className="d-inline me-2"),
                  html.Span(c["title"], id=ids.EXPLORE_HEADER, className="text-muted small"),
                  html.A("Evaluate →", href=f"/evaluate?run={run}", className="ms-3 small")], className="my-2"),
        downloads_bar(c["downloads"]),
        dbc.Row([
            dbc.Col([bar, dcc.Graph(id=ids.SCATTER, config={"scrollZoom": True, "displaylogo": False},
                                    className="scatter")], lg=7),
            dbc.Col([html.Div(id=ids.PANE, className="pane-box"), edit.edit_box()], lg=5),
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
        assign_panel.section(),
    ], fluid=True)
