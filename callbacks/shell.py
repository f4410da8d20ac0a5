"""The app shell: the job panel (progress, live log, cancel) and the background run itself.

The run is a Dash background callback (Diskcache or Celery manager): it executes ``job.run`` in a
worker process and streams ``(percent, label, stage, log)`` through ``set_progress``. Cancel both
sets the run's cancel flag (polled between steps) and lets Dash terminate the worker.

The ACTIVE_RUN store (session storage: it survives a reload of the tab) holds the run id and its start
token, nothing else; Start also writes them to JOB_START (memory), the input of the background
callback, so a reload never starts anything. It is a browser value: a run is executed only when ``runstore.claim_start``
accepts its token (the run is ``queued`` and this is the page that created it), so a posted id of a
finished, imported or someone else's run never re-runs or touches it. After a reload the background
callback is gone but the run goes on: the panel then follows the run's ``status.json`` (JOB_POLL),
with Cancel for the holder of the token, and links to the run's own page ``/run/<id>``.
"""

from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, State, ctx as dash_ctx, html, no_update
from dash.exceptions import PreventUpdate

from . import ids, job, outcome, runstore
from .page_run import active_of as _active, cancel_run, run_view

_logger = logging.getLogger("hercules.job")
RESULT_EXPLORE = "result-explore"  # the Explore button of the job panel's outcome


def result_message(done: Any, runs_dir=None):
    """The alert shown when a run ends (or None), from the run's own status (when ``runs_dir`` is
    given; the browser's ``state`` and ``message`` are only a fallback for a status that is gone)."""
    if not isinstance(done, dict) or not runstore.valid_id(done.get("run_id")):
        return None
    status = runstore.read_status(runstore.run_dir(runs_dir, done["run_id"])) if runs_dir is not None else {}
    if not status:
        state = done.get("state")
        status = {"state": state if state in runstore.FINAL_STATES else runstore.FAILED,
                  "error": done.get("message") if isinstance(done.get("message"), str) else None}
    return outcome.result_alert(done["run_id"], status, explore_id=RESULT_EXPLORE)


def panel_title(run_id: str):
    return ["Run ", html.Code(run_id[:8], className="run-id", title=run_id), " · ",
            html.A("run page", href=f"/run/{run_id}", className="run-page-link"), " · ",
            html.A("all runs", href="/runs")]


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
        Input(ids.JOB_START, "data"),  # set by Start only: a reload (ACTIVE_RUN restored) starts nothing
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
                  Output(ids.JOB_RESULT, "children"), Output(ids.JOB_POLL, "disabled"),
                  Input(ids.ACTIVE_RUN, "data"), Input(ids.URL, "pathname"))
    def _show_panel(active, pathname):
        parsed = _active(active)
        if parsed is None:
            raise PreventUpdate
        run_id = parsed[0]
        if not runstore.read_status(runstore.run_dir(ctx.runs_dir, run_id)):
            raise PreventUpdate  # a stored id of a run that is gone (or never was)
        # on the run's own page the page itself shows it
        style = {"display": "none"} if pathname == f"/run/{run_id}" else {"display": "block"}
        new_run = dash_ctx.triggered_id == ids.ACTIVE_RUN
        return style, panel_title(run_id), None if new_run else no_update, False

    @app.callback(Output(ids.PROGRESS, "value", allow_duplicate=True),
                  Output(ids.PROGRESS, "label", allow_duplicate=True),
                  Output(ids.STAGE, "children", allow_duplicate=True), Output(ids.LOG, "children", allow_duplicate=True),
                  Output(ids.CANCEL, "disabled", allow_duplicate=True),
                  Output(ids.JOB_RESULT, "children", allow_duplicate=True),
                  Output(ids.JOB_POLL, "disabled", allow_duplicate=True),
                  Input(ids.JOB_POLL, "n_intervals"), State(ids.ACTIVE_RUN, "data"),
                  State(ids.JOB_PANEL, "className"), prevent_initial_call=True)
    def _poll(_n, active, panel_class):
        """A run this page does not run itself (a reload, another page of the app): its status.json."""
        if isinstance(panel_class, str) and "running" in panel_class.split():
            raise PreventUpdate  # the background callback of this page streams the progress
        parsed = _active(active)
        v = run_view(ctx.runs_dir, parsed[0], active, explore_id=RESULT_EXPLORE) if parsed else None
        if v is None:
            return no_update, no_update, no_update, no_update, True, no_update, True
        return (v["percent"], f"{v['percent']}%", v["stage"], v["log"], not v["can_cancel"],
                v["result"] if v["final"] else None, v["final"])

    @app.callback(Output(ids.JOB_RESULT, "children", allow_duplicate=True),
                  Input(ids.JOB_DONE, "data"), prevent_initial_call=True)
    def _done(done):
        return result_message(done, ctx.runs_dir)

    @app.callback(Output(ids.JOB_RESULT, "children", allow_duplicate=True),
                  Output(ids.STAGE, "children", allow_duplicate=True),
                  Input(ids.CANCEL, "n_clicks"), State(ids.ACTIVE_RUN, "data"), prevent_initial_call=True)
    def _cancel(n, active):
        parsed = _active(active)
        if not n or parsed is None:
            raise PreventUpdate
        # only the page that created the run (it holds the token) may cancel it
        status = cancel_run(ctx.runs_dir, parsed[0], active)
        if status is None or status.get("state") != runstore.CANCELLED:
            raise PreventUpdate
        return result_message({"run_id": parsed[0]}, ctx.runs_dir), "Cancelled"

    # after Start (at the bottom of a long page) the panel at the top comes into view
    app.clientside_callback(
        """function(active) {
            if (!active || !active.run_id) { return window.dash_clientside.no_update; }
            setTimeout(function() {
                var el = document.getElementById('job-panel');
                if (el && el.style.display !== 'none') { el.scrollIntoView({behavior: 'smooth', block: 'start'}); }
            }, 300);
            return active.run_id;
        }""",
        Output(ids.JOB_SCROLL, "data"), Input(ids.JOB_START, "data"), prevent_initial_call=True)
