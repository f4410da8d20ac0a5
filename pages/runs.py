"""Runs: every past run (status, data, settings, time) and import of a saved model JSON."""

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from callbacks import ids, page_runs, uploads

dash.register_page(__name__, path="/runs", name="Runs", title="HERCULES · runs", order=1)


def layout(**_):
    return dbc.Container([
        html.H3("Runs", className="my-3"),
        dbc.Button("Refresh", id=ids.RUNS_REFRESH, size="sm", color="secondary", outline=True, className="mb-2"),
        dcc.Interval(id=ids.RUNS_INTERVAL, interval=4000),
        html.Div(id=ids.RUNS_MSG),
        html.Div(id=ids.RUNS_TABLE),
        html.Hr(),
        html.H5("Open a saved model"),
        uploads.limited(dcc.Upload(id=ids.MODEL_UPLOAD, className="upload-box",
                                   children=html.Div(["Drop a HERCULES model.json or .hercules bundle here, or ",
                                                      html.A("browse", className="link-primary")])),
                        uploads.MAX_MODEL_BYTES, ids.MODEL_SIZE_MSG, types=page_runs.MODEL_TYPES,
                        wrong_type=page_runs.NOT_A_MODEL, purpose="model"),
        html.Div(id=ids.MODEL_UPLOAD_MSG, className="mt-2"),
    ], fluid="lg")
