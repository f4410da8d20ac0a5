"""Callbacks of the run page (``/run/<run_id>``): one run's progress, live log, Cancel and outcome.

The page follows the run's ``status.json`` (written by the job: stage, percent, the live log's tail,
the final state and its warnings), so it works for any run, started in this browser or elsewhere,
before and after a reload. Cancel is offered only to the browser session that holds the run's start
token (the ACTIVE_RUN session store); the server checks the token (``runstore.token_ok``) and never
trusts the store for anything else.
"""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, html
from dash.exceptions import PreventUpdate

from . import ids, outcome, runstore

ANOTHER_BROWSER = "Started in another browser: only the browser that started a run can cancel it."
HIDDEN, SHOWN = {"display": "none"}, {"display": "inline-block"}
BAR_COLOR = {runstore.DONE: "success", "warnings": "warning", runstore.FAILED: "danger",
             runstore.INTERRUPTED: "danger", runstore.CANCELLED: "secondary"}


def active_of(value: Any) -> tuple[str, Any] | None:
    """(run id, token) of an ACTIVE_RUN store value, or None when it is not one."""
    if not isinstance(value, dict) or not runstore.valid_id(value.get("run_id")):
        return None
    return value["run_id"], value.get("token")


def holds_token(status: dict[str, Any], run_id: str, active: Any) -> bool:
    """Whether the browser's ACTIVE_RUN store holds the start token of ``run_id`` (checked on the server)."""
    parsed = active_of(active)
    return parsed is not None and parsed[0] == run_id and runstore.token_ok(status, parsed[1])


def run_view(runs_dir, run_id: Any, active: Any = None, *, explore_id: str | None = None) -> dict[str, Any] | None:
    """What a progress panel shows for the run ``run_id`` now (None for a bad id or a missing run).

    Keys: ``percent``, ``stage``, ``log``, ``state`` (the outcome: a state or "warnings"), ``final``,
    ``can_cancel`` (queued/running and this browser holds the token), ``other_browser`` (queued/running,
    and it does not), ``result`` (the outcome alert of a run that ended, else None).
    """
    if not runstore.valid_id(run_id):
        return None
    status = runstore.read_status(runstore.run_dir(runs_dir, run_id))
    if not status:
        return None
    key = outcome.outcome(status)
    active_now = runstore.is_active(key)
    mine = active_now and holds_token(status, run_id, active)
    try:
        percent = max(0, min(int(status.get("percent") or 0), 100))
    except (TypeError, ValueError):
        percent = 0
    stage = status.get("stage") if isinstance(status.get("stage"), str) else ""
    if key == runstore.INTERRUPTED:
        stage = "Interrupted"
    log = status.get("log") if isinstance(status.get("log"), str) else ""
    return {"percent": percent, "stage": stage or outcome.LABEL.get(key, str(key)), "log": log, "state": key,
            "final": not active_now, "can_cancel": mine, "other_browser": active_now and not mine,
            "result": None if active_now else outcome.result_alert(run_id, status, explore_id=explore_id)}


def cancel_run(runs_dir, run_id: Any, active: Any) -> dict[str, Any] | None:
    """Cancel ``run_id`` for the browser holding its start token; the new status, or None when the id,
    the token or the state does not allow it (nothing is touched then)."""
    if not runstore.valid_id(run_id):
        return None
    rdir = runstore.run_dir(runs_dir, run_id)
    status = runstore.read_status(rdir)
    if not status or not runstore.is_active(status) or not holds_token(status, run_id, active):
        return None
    return runstore.request_cancel(rdir)


def register(app, ctx) -> None:
    @app.callback(Output(ids.RUN_PROGRESS, "value"), Output(ids.RUN_PROGRESS, "label"),
                  Output(ids.RUN_STAGE, "children"), Output(ids.RUN_LOG, "children"),
                  Output(ids.RUN_CANCEL, "style"), Output(ids.RUN_CANCEL_NOTE, "children"),
                  Output(ids.RUN_RESULT, "children"), Output(ids.RUN_POLL, "disabled"),
                  Output(ids.RUN_PROGRESS, "color"), Output(ids.RUN_PROGRESS, "animated"),
                  Input(ids.RUN_POLL, "n_intervals"), Input(ids.RUN_VIEW, "data"), State(ids.ACTIVE_RUN, "data"))
    def _poll(_n, view, active):
        run_id = view.get("run_id") if isinstance(view, dict) else None
        v = run_view(ctx.runs_dir, run_id, active)
        if v is None:
            raise PreventUpdate
        note = html.Span(ANOTHER_BROWSER, className="small text-muted other-browser") if v["other_browser"] else None
        return (v["percent"], f"{v['percent']}%", v["stage"], v["log"], SHOWN if v["can_cancel"] else HIDDEN, note,
                v["result"], v["final"], BAR_COLOR.get(v["state"], "primary"), not v["final"])

    @app.callback(Output(ids.RUN_STAGE, "children", allow_duplicate=True),
                  Output(ids.RUN_CANCEL, "style", allow_duplicate=True),
                  Input(ids.RUN_CANCEL, "n_clicks"), State(ids.RUN_VIEW, "data"), State(ids.ACTIVE_RUN, "data"),
                  prevent_initial_call=True)
    def _cancel(n, view, active):
        if not n or not isinstance(view, dict):
            raise PreventUpdate
        status = cancel_run(ctx.runs_dir, view.get("run_id"), active)
        if status is None:
            raise PreventUpdate
        # the poll (enabled while the run was active) shows the outcome; the job stops at its next step
        return "Cancelling…", HIDDEN
