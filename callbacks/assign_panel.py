""""Assign new data" on the explore page of a finished run: upload → assign → table, download, scatter.

The upload goes through the new-run page's own functions (``uploads.stage_upload``, ``data_spec``,
``prepare_from_spec``); the work runs in a background callback (embedding new texts can take a
while) and writes ``<run dir>/assign/<assign_id>/assignments.csv`` and ``summary.json``. The
result is shown in an AG Grid, offered as a download, and drawn into the scatter as an extra trace
(stars; red ones are novel). Run ids, upload ids and column names from the browser are validated.
The card itself is laid out with the page (``pages/explore.py``).
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import dash_ag_grid as dag
import numpy as np
from dash import Input, Output, Patch, State, html
from dash.exceptions import PreventUpdate

from hercules_core import HerculesError
from hercules_core.assign import describe, save_assignments
from hercules_core.reduction import project
from hercules_run.assigning import assign_with_models

from . import figures, ids, runstore, uploads
from .reuse_routes import assignment_dir

T_ASSIGNED = 6  # the scatter's trace slot after figures' fixed ones (T_ITEMS .. T_SELECTED)
GRID_ROWS = 1000  # rows sent to the browser's table; the CSV has all of them
POINTS_MAX = 5000  # new items drawn in the scatter
HIDDEN, SHOWN = {"display": "none"}, {"display": "block"}  # the column options, as laid out and shown


def _opts(columns: list[str], empty: str | None = None) -> list[dict[str, str]]:
    return ([{"label": empty, "value": ""}] if empty is not None else []) + [{"label": c, "value": c} for c in columns]


def _run_spec(ctx, run_id: str) -> dict[str, Any]:
    return runstore.read_json(runstore.run_dir(ctx.runs_dir, run_id) / "spec.json") or {}


def staged(ctx, run_id: Any, names: Any, contents: Any) -> dict[str, Any]:
    """:func:`staged_upload` of files given as data URLs (``dcc.Upload``'s form)."""
    if isinstance(names, str):
        names, contents = [names], [contents]
    return staged_upload(ctx, run_id, None, lambda: uploads.stage(ctx.runs_dir, names, contents))


def staged_upload(ctx, run_id: Any, sent: Any, stage=None) -> dict[str, Any]:
    """Stage an upload for assignment (``sent``: the browser's ``{"upload_id"}`` of a finished chunked
    upload); what the card shows next (message, column choices, store)."""
    if not runstore.valid_id(run_id):
        raise PreventUpdate
    try:
        em = ctx.model(run_id)
        desc = stage() if stage is not None else uploads.stage_upload(ctx.runs_dir, sent)
    except (OSError, HerculesError) as e:
        msg = str(e) if isinstance(e, HerculesError) else "This run has no model."
        return {"store": None, "msg": html.Div(msg, className="alert alert-danger py-2 assign-error"),
                "options": HIDDEN, "text_opts": [], "text": None, "id_opts": [], "id": None, "disabled": True}
    modality = em.h.dataset.modality
    try:
        how = describe(em.h)
    except HerculesError as e:  # an old model without assignment data: say so before any work
        return {"store": None, "msg": html.Div(str(e), className="alert alert-danger py-2 assign-error"),
                "options": HIDDEN, "text_opts": [], "text": None, "id_opts": [], "id": None, "disabled": True}
    out = {"store": {"upload_id": desc["upload_id"]}, "options": HIDDEN, "text_opts": [], "text": None,
           "id_opts": [], "id": None, "disabled": False,
           "msg": html.Div([html.Strong("Uploaded: "), ", ".join(desc["names"][:3]),
                            f" (+{len(desc['names']) - 3} more)" if len(desc["names"]) > 3 else "",
                            f" — {desc.get('n_rows') or len(desc['names']):,} rows/files. ",
                            html.Span(how, className="small")],
                           className="alert alert-success py-2 assign-upload-ok")}
    if desc["kind"] == "table":
        cols, sug = desc["columns"], desc["suggest"]
        previous = (_run_spec(ctx, run_id).get("data") or {})
        text = previous.get("text_column") if previous.get("text_column") in cols else sug["text_column"]
        id_col = previous.get("id_column") if previous.get("id_column") in cols else sug["id_column"]
        out.update(options=SHOWN, id_opts=_opts(cols, "(row numbers)"), id=id_col or "")
        if modality == "text":
            out.update(text_opts=_opts(cols, "(choose)"), text=text or "")
        else:
            out.update(text_opts=[{"label": "(not needed)", "value": ""}], text="")
    return out


def _spec(em, desc: dict[str, Any], text_col: Any, id_col: Any) -> dict[str, Any]:
    """The data spec of an assignment upload for this model; InputError says what does not fit."""
    from hercules_core import InputError

    modality, kind = em.h.dataset.modality, desc["kind"]
    upload_modality = {"txt": "text", "images": "image", "zip": "image"}.get(kind, "table")
    if upload_modality == "table" and modality == "image":
        upload_modality = "text"
    if upload_modality != "table" and upload_modality != modality:
        raise InputError(f"This model clusters {modality} items, but the upload holds {upload_modality} items. "
                         f"Upload data of the same kind as the model was built on.")
    id_col = id_col if isinstance(id_col, str) and id_col else None
    if kind != "table":
        return uploads.data_spec(desc, txt_mode="line")
    if modality == "numeric":
        names = list(em.h.dataset.feature_names or [])
        missing = [c for c in names if c not in desc.get("columns", [])]
        if missing:
            raise InputError(f"The table has no column(s) {', '.join(map(repr, missing[:10]))}: the model was built "
                             f"on the numeric columns {', '.join(names[:20])}.")
        return uploads.data_spec(desc, what="numeric", numeric_columns=names, id_column=id_col)
    return uploads.data_spec(desc, what="text", text_column=text_col if isinstance(text_col, str) else None,
                             id_column=id_col)


def run_assignment(ctx, run: Any, store: Any, text_col: Any, id_col: Any) -> dict[str, Any]:
    """Body of the background callback: ``{"run_id", "assign_id"}`` or ``{"error": message}``."""
    run_id = (run or {}).get("run_id") if isinstance(run, dict) else None
    upload_id = (store or {}).get("upload_id") if isinstance(store, dict) else None
    if not runstore.valid_id(run_id) or not runstore.valid_id(upload_id):
        return {"error": "Upload the new data first."}
    adir = None
    try:
        em = ctx.model(run_id)
        h = em.h
        desc = uploads.load_descriptor(ctx.runs_dir, upload_id)
        spec = _spec(em, desc, text_col, id_col)
        assign_id = runstore.new_id()
        adir = assignment_dir(ctx.runs_dir, run_id, assign_id)
        adir.mkdir(parents=True)
        ds = uploads.prepare_from_spec(spec, ctx.runs_dir, adir)
        # the run's own embedder ids when it was made here; else the registry entries the model names
        result, _ = assign_with_models(h, ds, chosen=_run_spec(ctx, run_id).get("models") or {})
    except (OSError, HerculesError) as e:
        if adir is not None:
            shutil.rmtree(adir, ignore_errors=True)  # built from server-made ids only
        return {"error": str(e) if isinstance(e, HerculesError) else "This run has no model to assign to."}
    save_assignments(result, adir / "assignments.csv")
    frame = result.frame
    rows = frame.head(GRID_ROWS).copy()
    rows["distance"] = rows["distance"].astype(float).round(4)
    rows["novel"] = rows["novel"].astype(bool)
    xy = None
    params = h.reducers.get("representation")
    if params is not None and result.vectors.shape[1] == len(params["mean"]):
        pts = project(params, result.vectors[:POINTS_MAX])
        xy = [np.round(pts[:, 0].astype(float), 4).tolist(), np.round(pts[:, 1].astype(float), 4).tolist()]
    summary = {"n": len(frame), "n_novel": int(result.novel.sum()), "how": result.how, "xy": xy,
               "ids": [str(i) for i in frame["item_id"].head(POINTS_MAX)],
               "l1": [str(t) for t in frame["L1_title"].head(POINTS_MAX)],
               "novel": [bool(v) for v in result.novel[:POINTS_MAX]],
               "columns": list(frame.columns), "rows": json.loads(rows.to_json(orient="records"))}
    runstore.write_json_atomic(adir / "summary.json", summary)
    return {"run_id": run_id, "assign_id": assign_id}


def load_summary(ctx, result: Any) -> tuple[str, str, dict[str, Any]] | None:
    if not isinstance(result, dict) or not runstore.valid_id(result.get("run_id")) \
            or not runstore.valid_id(result.get("assign_id")):
        return None
    summary = runstore.read_json(assignment_dir(ctx.runs_dir, result["run_id"], result["assign_id"]) / "summary.json")
    return (result["run_id"], result["assign_id"], summary) if summary else None


def result_view(ctx, result: Any):
    """(summary children, grid rows, grid columns, grid style) for a finished assignment."""
    if isinstance(result, dict) and result.get("error"):
        return (html.Div(str(result["error"]), className="alert alert-danger py-2 assign-error"), [], [],
                {"height": "320px", "display": "none"})
    loaded = load_summary(ctx, result)
    if loaded is None:
        raise PreventUpdate
    run_id, assign_id, s = loaded
    href = f"/files/{run_id}/assign/{assign_id}.csv"
    text = [html.Strong(f"{s['n']:,} items assigned"), f"; {s['n_novel']:,} flagged novel. ", s["how"],
            " They are drawn as stars in the scatter (red: novel)." if s.get("xy") else "",
            f" The table shows the first {GRID_ROWS:,}; the download has all." if s["n"] > GRID_ROWS else ""]
    summary = html.Div([html.Div(text, className="small assign-done"),
                        html.A("Download assignments CSV", href=href, className="btn btn-sm btn-outline-secondary "
                               "mt-1 download-link assign-download", **{"data-file": "assignments.csv"})])
    cols = [{"field": c, "headerName": c} for c in s["columns"]]  # the CSV's own column names
    return summary, s["rows"], cols, {"height": "320px", "display": "block"}


def grid(rows: list[dict[str, Any]], cols: list[dict[str, str]], style: dict[str, str]):
    """The table of an assignment: made with the first result, not with the page, so that the explore
    page does not load and start AG Grid (a 0.9 MB chunk) for a panel most visits never open."""
    return dag.AgGrid(id=ids.ASSIGN_TABLE, rowData=rows, columnDefs=cols, className="ag-theme-alpine assign-grid",
                      style=style, columnSize="autoSize",
                      defaultColDef={"resizable": True, "sortable": True, "filter": True, "maxWidth": 360},
                      dashGridOptions={"pagination": True, "paginationPageSize": 10,
                                       "paginationPageSizeSelector": False})


def assigned_trace(ctx, result: Any, view: Any) -> dict[str, Any] | None:
    """The scatter trace of the new items (None when there is nothing to draw in this view)."""
    loaded = load_summary(ctx, result)
    if loaded is None or not loaded[2].get("xy") or not isinstance(view, dict) \
            or view.get("space") != "representation":
        return None
    s = loaded[2]
    return {"type": "scattergl", "mode": "markers", "name": "new items", "showlegend": False,
            "x": s["xy"][0], "y": s["xy"][1],
            "customdata": [[None, figures.esc(i, 60), figures.esc(t, 80)] for i, t in zip(s["ids"], s["l1"])],
            "hovertemplate": "new item %{customdata[1]}<br>→ %{customdata[2]}<extra></extra>",
            "marker": {"symbol": "star", "size": 11, "line": {"width": 1, "color": "#000"},
                       "color": ["#d62728" if n else "#ffd700" for n in s["novel"]]}}


def register(app, ctx) -> None:
    @app.callback(Output(ids.ASSIGN_UPLOAD_STORE, "data"), Output(ids.ASSIGN_MSG, "children"),
                  Output(ids.ASSIGN_OPTIONS, "style"), Output(ids.ASSIGN_TEXT_COL, "options"),
                  Output(ids.ASSIGN_TEXT_COL, "value"), Output(ids.ASSIGN_ID_COL, "options"),
                  Output(ids.ASSIGN_ID_COL, "value"), Output(ids.ASSIGN_START, "disabled"),
                  Input(uploads.sent_id(ids.ASSIGN_UPLOAD), "data"), State(ids.EXPLORE_RUN, "data"),
                  prevent_initial_call=True)
    def _upload(sent, run):
        if not sent:
            raise PreventUpdate
        o = staged_upload(ctx, run.get("run_id") if isinstance(run, dict) else None, sent)
        return (o["store"], o["msg"], o["options"], o["text_opts"], o["text"], o["id_opts"], o["id"],
                o["disabled"])

    @app.callback(Output(ids.ASSIGN_RESULT, "data"), Input(ids.ASSIGN_START, "n_clicks"),
                  State(ids.EXPLORE_RUN, "data"), State(ids.ASSIGN_UPLOAD_STORE, "data"),
                  State(ids.ASSIGN_TEXT_COL, "value"), State(ids.ASSIGN_ID_COL, "value"),
                  background=True, running=[(Output(ids.ASSIGN_START, "disabled"), True, False),
                                            (Output(ids.ASSIGN_START, "children"), "Assigning…", "Assign")],
                  prevent_initial_call=True)
    def _assign(n, run, store, text_col, id_col):
        if not n:
            raise PreventUpdate
        return run_assignment(ctx, run, store, text_col, id_col)

    @app.callback(Output(ids.ASSIGN_SUMMARY, "children"), Output(ids.ASSIGN_TABLE_BOX, "children"),
                  Input(ids.ASSIGN_RESULT, "data"), prevent_initial_call=True)
    def _result(result):
        summary, rows, cols, style = result_view(ctx, result)
        return summary, grid(rows, cols, style)

    @app.callback(Output(ids.SCATTER, "figure", allow_duplicate=True), Input(ids.ASSIGN_RESULT, "data"),
                  Input(ids.VIEW, "data"), prevent_initial_call=True)
    def _draw(result, view):
        trace = assigned_trace(ctx, result, view)
        if trace is None:
            raise PreventUpdate
        patch = Patch()
        patch["data"][T_ASSIGNED] = trace  # one slot past the fixed traces: set (or replaced) in place
        return patch
