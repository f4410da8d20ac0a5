"""Compare two runs of the same data (two seeds or settings, or before and after a replay of edits)."""

import dash
import dash_bootstrap_components as dbc
import flask
from dash import dcc, html

from callbacks import ids
from callbacks.page_compare import run_options

dash.register_page(__name__, path="/compare", name="Compare", title="HERCULES · compare", order=4)


def layout(a=None, b=None, **_):
    options = run_options(flask.current_app.config["HERCULES"])
    values = [o["value"] for o in options]
    a = a if a in values else (values[1] if len(values) > 1 else None)
    b = b if b in values else (values[0] if values else None)
    small = "small fw-semibold mb-0"
    return dbc.Container([
        html.H3("Compare two runs", className="my-3"),
        html.P("Clusters are matched by the items they share (Jaccard overlap of item ids, level by level): "
               "matched, split, merged, new and vanished clusters, retitled matches, and one agreement figure "
               "per level.", className="small text-muted"),
        dbc.Row([dbc.Col([dbc.Label("Run A", className=small),
                          dbc.Select(id=ids.COMPARE_A, options=options, value=a, size="sm")], md=6),
                 dbc.Col([dbc.Label("Run B", className=small),
                          dbc.Select(id=ids.COMPARE_B, options=options, value=b, size="sm")], md=6)],
                className="g-2 mb-3"),
        dcc.Loading(html.Div(id=ids.COMPARE_OUT, className="mb-4")),
    ], fluid="lg")
