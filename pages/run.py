"""One run (/run/<run_id>): progress bar, stage, live log and Cancel while it runs; its outcome after."""

import dash
import dash_bootstrap_components as dbc
import flask
from dash import dcc, html

from callbacks import ids, runstore

dash.register_page(__name__, path_template="/run/<run_id>", name="Run", title="HERCULES · run", order=3)


def _summary(status: dict) -> str:
    data = status.get("data") if isinstance(status.get("data"), dict) else {}
    settings = status.get("settings") if isinstance(status.get("settings"), dict) else {}
    parts = [str(data.get("source") or ""), str(data.get("modality") or "")]
    parts += [f"{k}={v}" for k, v in settings.items() if v not in (None, "", [])]
    return " · ".join(p for p in parts if p)


def layout(run_id=None, **_):
    ctx = flask.current_app.config["HERCULES"]
    status = runstore.read_status(runstore.run_dir(ctx.runs_dir, run_id)) if runstore.valid_id(run_id) else {}
    if not status:
        return dbc.Container([html.H3("Run", className="my-3"),
                              dbc.Alert(["No such run. ", html.A("See all runs", href="/runs")], color="info",
                                        className="run-missing")], fluid="lg")
    return dbc.Container([
        dcc.Store(id=ids.RUN_VIEW, data={"run_id": run_id}),
        dcc.Interval(id=ids.RUN_POLL, interval=1000),
        html.Div([html.H3(["Run ", html.Code(run_id[:8], title=run_id, className="run-page-id")],
                          className="d-inline me-3"),
                  html.A("all runs", href="/runs", className="small")], className="my-3"),
        html.Div(_summary(status), className="small text-muted mb-2 run-summary"),
        dbc.Card(dbc.CardBody([
            html.Div([html.Span("…", id=ids.RUN_STAGE, className="small fw-semibold run-page-stage"),
                      dbc.Button("Cancel", id=ids.RUN_CANCEL, color="danger", size="sm", outline=True,
                                 className="float-end", style={"display": "none"}),
                      html.Span(id=ids.RUN_CANCEL_NOTE, className="float-end")]),
            dbc.Progress(id=ids.RUN_PROGRESS, value=0, label="0%", striped=True, animated=True, className="my-2",
                         style={"height": "20px"}),
            html.Details([html.Summary("Live log", className="small"), html.Pre(id=ids.RUN_LOG, className="job-log")],
                         open=True),
            html.Div(id=ids.RUN_RESULT),
        ]), className="run-page mb-3"),
    ], fluid="lg")
