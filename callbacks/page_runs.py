"""Callbacks of the runs page: the list of past runs (Cancel for a run this browser started), and
importing a saved model JSON."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime
from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx as dash_ctx, html
from dash.exceptions import PreventUpdate

from hercules_core import HerculesError

from . import bounded, chunked, ids, model_import, outcome, runstore, uploads
from .page_run import ANOTHER_BROWSER, cancel_run, holds_token

log = logging.getLogger("hercules.import")

# what the model import takes, and what it says of anything else (in the browser, before sending:
# pages/runs.py through uploads.limited; on the server when the upload starts: uploads.begin)
MODEL_TYPES, NOT_A_MODEL = uploads.MODEL_TYPES, uploads.NOT_A_MODEL


def _when(status: dict[str, Any]) -> str:
    created = status.get("created")
    try:
        return datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return "—"


def _duration(status: dict[str, Any]) -> str:
    t = runstore.elapsed(status)
    return "—" if t is None else f"{t:.1f} s"


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items() if v not in (None, "", [])) or "—"


def runs_table(runs: list[dict[str, Any]], active: Any = None):
    """A table row per run: id, status, data, settings, time, links. A queued or running run gets a
    Cancel button when ``active`` (the browser's ACTIVE_RUN store) holds its start token."""
    if not runs:
        return html.Div("No runs yet. Start one on the New run page, or import a model JSON below.",
                        className="text-muted")
    rows = []
    for s in runs:
        run_id = s["run_id"]
        key = outcome.outcome(s)
        data = s.get("data") or {}
        data_text = " · ".join(str(x) for x in (data.get("source"), data.get("modality"),
                                                f"{data['n_items']:,} items" if data.get("n_items") else None) if x)
        status_cell = [outcome.state_badge(s)]
        links = []
        if runstore.is_active(key):
            status_cell.append(html.Span(f" {s.get('percent', 0)}% {s.get('stage', '')}", className="small"))
            if holds_token(s, run_id, active):
                links.append(dbc.Button("Cancel", id={"type": ids.RUNS_CANCEL_T, "run": run_id}, size="sm",
                                        color="danger", outline=True, className="me-1 runs-cancel"))
            else:
                links.append(html.Span("started in another browser", title=ANOTHER_BROWSER,
                                       className="small text-muted me-1 other-browser"))
        if key == outcome.WARNINGS:
            w = s.get("warnings") or {}
            status_cell.append(html.Div([str(w.get("text", "")), " Main reason: ", str(w.get("reason", "")), "."],
                                        className="small text-warning-emphasis run-warning-text"))
        if s.get("error"):
            status_cell.append(html.Div(s["error"], className="small text-danger run-error"))
        if runstore.has_results(s):
            links += [dbc.Button("Open", href=f"/explore?run={run_id}", size="sm", color="primary",
                                 className="me-1 open-run"),
                      dbc.Button("Evaluate", href=f"/evaluate?run={run_id}", size="sm", color="secondary",
                                 outline=True)]
        if not s.get("imported"):
            links.append(html.A("details", href=f"/run/{run_id}", className="small ms-1 run-page-link"))
        rows.append(html.Tr([html.Td(html.Code(run_id[:8], title=run_id)), html.Td(status_cell),
                             html.Td(data_text or "—", className="small"),
                             html.Td(_settings_text(s.get("settings") or {}), className="small"),
                             html.Td([_when(s), html.Div(_duration(s), className="small text-muted")]),
                             html.Td(links)], **{"data-run": run_id}))
    head = html.Thead(html.Tr([html.Th(h) for h in ("run", "status", "data", "settings", "time", "")]))
    return dbc.Table([head, html.Tbody(rows)], hover=True, size="sm", className="runs-table")


def import_model(runs_dir, name: str, contents: str) -> tuple[str | None, str]:
    """:func:`import_upload` of a model JSON given as a data URL (``dcc.Upload``'s form)."""
    if not isinstance(name, str) or not isinstance(contents, str):
        return None, "The model file arrived damaged; try again."
    if not name.lower().endswith(MODEL_TYPES):
        return None, NOT_A_MODEL.format(name=name)
    if uploads.encoded_size(contents) > uploads.MAX_MODEL_BYTES:
        return None, f"The model file is larger than {uploads.MAX_MODEL_BYTES // 1024**2} MB."
    try:
        upload_id = uploads.put_bytes(runs_dir, "model", [name], [uploads.decode_data_url(contents)])
    except HerculesError as e:
        return None, str(e)
    return import_upload(runs_dir, {"upload_id": upload_id})


def import_upload(runs_dir, sent: Any) -> tuple[str | None, str]:
    """Store a model JSON whose chunks have all arrived (``sent``: the browser's ``{"upload_id"}``) as a
    new finished run; (run id or None, message). The upload's folder is gone afterwards."""
    upload_id = uploads.upload_id_of(sent)
    if upload_id is None:
        return None, "The model file arrived damaged; try again."
    try:
        udir, transfer = chunked.complete(runs_dir, upload_id, ("model",))
    except HerculesError as e:
        return None, str(e)
    name = transfer["names"][0]
    run_id = runstore.new_id()
    rdir = runstore.run_dir(runs_dir, run_id)
    try:
        try:
            info = _store_import(rdir, name, runstore.inside(udir, transfer["files"][0]))
        except BaseException:
            # whatever went wrong (a hostile file, a full disk, a bug, an interrupt), no folder
            # without status.json stays in runs/; rdir is built from a server-made id, never from input
            shutil.rmtree(rdir, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(udir, ignore_errors=True)
            chunked.remove_if_empty(udir.parent)  # a model import leaves nothing in the uploads folder
    except HerculesError as e:
        return None, uploads.user_text(str(e), {"names": [name, name], "files": ["model.json", model_import.UPLOAD]},
                                       rdir)
    except OSError as e:  # a full disk: say so
        return None, f"{name} could not be saved: {runstore.os_error_text(e)}."
    except Exception as e:  # a bug: the page says so, the traceback goes to the server log only
        log.warning("importing a model failed", exc_info=e)
        return None, (f"{name} could not be imported: an internal error occurred ({type(e).__name__}). "
                      "Check that it is a model.json or .hercules bundle saved by HERCULES; the details are in the "
                      "server log.")
    return run_id, f"Imported {name}: {info['n_items']:,} items, {info['top_level']} levels."


def _store_import(rdir, name: str, arrived) -> dict[str, Any]:
    """Move the arrived file to ``rdir/model.json``, open it in the bounded reader (which writes the
    other outputs), then a done status; returns the model's summary."""
    rdir.mkdir(parents=True)
    os.replace(arrived, rdir / "model.json")
    info = bounded.bounded_call(model_import.open_imported, str(rdir), what=name,
                                advice="open it with the command-line tool, or ask the administrator to raise "
                                       "HERCULES_READ_MEMORY_MB")
    runstore.imported(rdir, data={"source": f"imported {name}"[:120], "modality": info["modality"],
                                  "n_items": info["n_items"], "labelled": info["labelled"]},
                      settings=info["settings"], timings=info["timings"], clusters_per_level=info["clusters_per_level"])
    return info


def register(app, ctx) -> None:
    @app.callback(Output(ids.RUNS_TABLE, "children"), Input(ids.RUNS_INTERVAL, "n_intervals"),
                  Input(ids.RUNS_REFRESH, "n_clicks"), Input(ids.MODEL_UPLOAD_MSG, "children"),
                  Input(ids.RUNS_MSG, "children"), State(ids.ACTIVE_RUN, "data"))
    def _table(*args):
        return runs_table(runstore.list_runs(ctx.runs_dir), args[-1])

    @app.callback(Output(ids.RUNS_MSG, "children"), Input({"type": ids.RUNS_CANCEL_T, "run": ALL}, "n_clicks"),
                  State(ids.ACTIVE_RUN, "data"), prevent_initial_call=True)
    def _cancel(clicks, active):
        trig = dash_ctx.triggered_id
        value = dash_ctx.triggered[0]["value"] if dash_ctx.triggered else None
        if not value or not isinstance(trig, dict):  # a button that just appeared, not a click
            raise PreventUpdate
        run_id = trig.get("run")
        status = cancel_run(ctx.runs_dir, run_id, active)  # only for the holder of the run's start token
        if status is None:
            return html.Div("This run cannot be cancelled from this browser (it has ended, or another browser "
                            "started it).", className="alert alert-secondary py-2 runs-cancel-msg")
        return html.Div(["Run ", html.Code(run_id[:8]), " cancelled: the work stops at its next step."],
                        className="alert alert-warning py-2 runs-cancel-msg")

    @app.callback(Output(ids.MODEL_UPLOAD_MSG, "children"), Input(uploads.sent_id(ids.MODEL_UPLOAD), "data"),
                  prevent_initial_call=True)
    def _import(sent):
        if not sent:
            raise PreventUpdate
        run_id, message = import_upload(ctx.runs_dir, sent)
        if run_id is None:
            return html.Div(message, className="alert alert-danger py-2 model-upload-error")
        return html.Div([message, " ", dbc.Button("Explore", href=f"/explore?run={run_id}", size="sm",
                                                  color="success", id="imported-explore")],
                        className="alert alert-success py-2 model-upload-ok")
