"""The app shell: the job panel (progress, live log, cancel) and the background run itself.

The run is a Dash background callback (Diskcache or Celery manager): it executes ``job.run`` in a
worker process and streams ``(percent, label, stage, log)`` through ``set_progress``. Cancel both
sets the run's cancel flag (polled between steps) and lets Dash terminate the worker.

The ACTIVE_RUN store is a browser value: a run is executed only when ``runstore.claim_start`` accepts
its token (the run is ``queued`` and this is the page that created it), so a posted id of a finished,
imported or someone else's run never re-runs or touches it.
"""

from __future__ import annotations

import logging
from typing import Any

import dash_bootstrap_components as dbc
from dash import Input, Output, State, html, no_update
from dash.exceptions import PreventUpdate

from . import ids, job, runstore

_logger = logging.getLogger("hercules.job")


def _active(value: Any) -> tuple[str, Any] | None:
    """(run id, token) of an ACTIVE_RUN store value, or None when it is not one."""
    if not isinstance(value, dict) or not runstore.valid_id(value.get("run_id")):
        return None
    return value["run_id"], value.get("token")


def result_message(done: dict[str, Any] | None):
    """The alert shown when a run ends (or None)."""
    if not isinstance(done, dict) or not runstore.valid_id(done.get("run_id")):
        return None
    run_id, state = done["run_id"], done.get("state")
    if state == "done":
        return dbc.Alert([html.Strong("Run finished. "),
                          dbc.Button("Explore", href=f"/explore?run={run_id}", color="success", size="sm",
                                     className="ms-2", id="result-explore"),
                          dbc.Button("Evaluate", href=f"/evaluate?run={run_id}", color="secondary", size="sm",
                                     className="ms-2")], color="success", className="mb-0 py-2 run-result")
    if state == "cancelled":
        return dbc.Alert("Run cancelled: the work was stopped.", color="warning", className="mb-0 py-2 run-result")
    message = done.get("message")
    return dbc.Alert([html.Strong("Run failed: "), html.Span(message if isinstance(message, str) and message
                                                              else "unknown error", className="run-error")],
                     color="danger", className="mb-0 py-2 run-result")


def run_in_background(ctx, set_progress, active: dict[str, Any] | None) -> dict[str, Any]:
    """Body of the background callback (a plain function: testable without Dash).

    Runs only a ``queued`` run, once, for the page holding its start token; anything else is ignored.
    """
    parsed = _active(active)
    if parsed is None:
        raise PreventUpdate
    run_id, token = parsed
    if not runstore.claim_start(runstore.run_dir(ctx.runs_dir, run_id), token):
        raise PreventUpdate

    def send(percent: int, stage: str, log: str) -> None:
        try:
            set_progress((percent, f"{percent}%", stage, log))
        except Exception as e:  # progress goes through Redis with Celery: an outage must not fail the run
            _logger.warning("progress update lost (%s); the run goes on", type(e).__name__)

    # the heartbeat lets every web process (any container) see when this worker dies mid-run
    with runstore.Heartbeat(runstore.run_dir(ctx.runs_dir, run_id)):
        status = job.run(ctx.runs_dir, run_id, send)
    return {"run_id": run_id, "state": status.get("state"), "message": status.get("error")}


def register(app, ctx) -> None:
    @app.callback(
        Output(ids.JOB_DONE, "data"),
        Input(ids.ACTIVE_RUN, "data"),
        background=True,
        progress=[Output(ids.PROGRESS, "value"), Output(ids.PROGRESS, "label"), Output(ids.STAGE, "children"),
                  Output(ids.LOG, "children")],
        running=[(Output(ids.CANCEL, "disabled"), False, True),
                 (Output(ids.JOB_PANEL, "className"), "job-panel card mb-3 running", "job-panel card mb-3")],
        cancel=[Input(ids.CANCEL, "n_clicks")],
        interval=500,
        prevent_initial_call=True,
    )
    def _run(set_progress, active):
        return run_in_background(ctx, set_progress, active)

    @app.callback(Output(ids.JOB_PANEL, "style"), Output(ids.JOB_TITLE, "children"),
                  Output(ids.JOB_RESULT, "children"),
                  Input(ids.ACTIVE_RUN, "data"), prevent_initial_call=True)
    def _show_panel(active):
        if _active(active) is None:
            raise PreventUpdate
        run_id = active["run_id"]
        title = ["Run ", html.Code(run_id[:8], className="run-id", title=run_id), " · ",
                 html.A("all runs", href="/runs")]
        return {"display": "block"}, title, None

    @app.callback(Output(ids.JOB_RESULT, "children", allow_duplicate=True),
                  Input(ids.JOB_DONE, "data"), prevent_initial_call=True)
    def _done(done):
        return result_message(done)

    @app.callback(Output(ids.JOB_RESULT, "children", allow_duplicate=True),
                  Output(ids.STAGE, "children", allow_duplicate=True),
                  Input(ids.CANCEL, "n_clicks"), State(ids.ACTIVE_RUN, "data"), prevent_initial_call=True)
    def _cancel(n, active):
        parsed = _active(active)
        if not n or parsed is None:
            raise PreventUpdate
        rdir = runstore.run_dir(ctx.runs_dir, parsed[0])
        if not runstore.token_ok(runstore.read_status(rdir), parsed[1]):
            raise PreventUpdate  # only the page that created the run may cancel it
        status = runstore.request_cancel(rdir)
        if status.get("state") != "cancelled":
            return no_update, no_update
        return result_message({"run_id": active["run_id"], "state": "cancelled"}), "Cancelled"
