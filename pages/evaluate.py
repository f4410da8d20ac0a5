"""Evaluate one run: metrics per level (table + chart) and top-level clusters against labels."""

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from callbacks import ids, runstore

dash.register_page(__name__, path="/evaluate", name="Evaluate", title="HERCULES · evaluate", order=3)


def layout(run=None, **_):
    if not runstore.valid_id(run):
        return dbc.Container([html.H3("Evaluate", className="my-3"),
                              dbc.Alert(["Choose a finished run on the ", html.A("Runs", href="/runs"), " page."],
                                        color="info", id=ids.EVAL_MSG)], fluid="lg")
    return dbc.Container([
        dcc.Store(id=ids.EVAL_RUN, data={"run_id": run}),
        html.Div([html.H3("Evaluate", className="d-inline me-2"),
                  html.A("← Explore", href=f"/explore?run={run}", className="small")], className="my-3"),
        html.H5("Metrics per level"),
        html.Div(id=ids.EVAL_TABLE),
        dcc.Graph(id=ids.EVAL_CHART, config={"displaylogo": False}),
        html.Div(id=ids.EVAL_AUTO_K),
        html.H5("Clusters against labels"),
        dbc.Row(dbc.Col([dbc.Label("Level", className="small fw-semibold mb-0"),
                         dbc.Select(id=ids.EVAL_CONFUSION_LEVEL, size="sm")], md=2)),
        html.Div(id=ids.EVAL_CONFUSION, className="mb-4"),
    ], fluid="lg")
