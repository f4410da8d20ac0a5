"""Callbacks of the new-run page: upload, column choice, preview, configuration, cost, start."""

from __future__ import annotations

import json
from typing import Any

from dash import ALL, Input, Output, State, html, no_update
from dash.exceptions import PreventUpdate

from hercules_core import HerculesError, cost
from hercules_run import timings
from hercules_run.pipeline import CacheSettings, timings_directory

from . import configform, ids, job, runstore, uploads

HIDDEN, SHOWN = {"display": "none"}, {"display": "block"}
SHOWN_ROW = {"display": "flex"}
NO_VECTORS = "(none: embed the texts)"
OWN_VECTORS_NOTE = ("With your own embeddings the items are clustered on them as given: the text embedder is "
                    "not used for the items (only where a setting needs it, e.g. description mode), and the "
                    "estimate counts no embedding of items. The text column still feeds titles, samples and search.")


def _opts(columns: list[str], empty: str | None = None) -> list[dict[str, str]]:
    out = [{"label": empty, "value": ""}] if empty is not None else []
    return out + [{"label": c, "value": c} for c in columns]


def upload_outputs(runs_dir, sent) -> dict[str, Any]:
    """Everything the page shows after an upload's chunks arrived (``sent``: the browser's
    ``{"upload_id"}``), an error message when the upload is rejected.

    The browser's store gets only the upload's opaque id; the server keeps the rest.
    """
    try:
        desc = uploads.stage_upload(runs_dir, sent)
    except HerculesError as e:
        return {"store": None, "msg": html.Div(str(e), className="alert alert-danger py-2 upload-error"),
                "options": HIDDEN}
    kind = desc["kind"]
    summary = {"table": f"table with {desc.get('n_rows', 0):,} rows and {len(desc.get('columns', []))} columns",
               "txt": f"{len(desc['names'])} text file(s)", "images": f"{len(desc['names'])} images",
               "zip": "ZIP archive of images"}[kind]
    out: dict[str, Any] = {
        "store": {"upload_id": desc["upload_id"]}, "options": SHOWN,
        "msg": html.Div([html.Strong("Uploaded: "), ", ".join(desc["names"][:5]),
                         f" (+{len(desc['names']) - 5} more)" if len(desc["names"]) > 5 else "", f" — {summary}."],
                        className="alert alert-success py-2 upload-ok"),
        "table": SHOWN if kind == "table" else HIDDEN, "txt": SHOWN if kind == "txt" else HIDDEN,
        "txt_mode": desc.get("txt_mode", "line"),
    }
    if kind == "table":
        vectors = list(desc.get("vector_columns") or [])
        cols, sug = [c for c in desc["columns"] if c not in vectors], desc["suggest"]
        out.update(what=sug["what"], text_opts=_opts(cols), text=sug["text_column"], num_opts=_opts(cols),
                   num=sug["numeric_columns"], id_opts=_opts(cols, "(row numbers)"), id=sug["id_column"] or "",
                   label_opts=_opts(cols, "(none)"), label=sug["label_column"] or "")
    else:
        vectors = []
    # the items' own embeddings: only the columns that hold vectors (told from the Parquet schema)
    out.update(vector_box=SHOWN_ROW if vectors else HIDDEN, vector_opts=_opts(vectors, NO_VECTORS), vector="")
    return out


def _pairs(values: Any, id_list: Any, key: str) -> dict[str, Any]:
    """``{id[key]: value}`` of pattern-matched inputs; browser values of any other shape are dropped."""
    if not isinstance(values, list) or not isinstance(id_list, list):
        return {}
    return {i[key]: v for i, v in zip(id_list, values) if isinstance(i, dict) and isinstance(i.get(key), str)}


def form_values(values: list, id_list: list[dict[str, Any]]) -> dict[str, Any]:
    return _pairs(values, id_list, "name")


def model_values(values: list, id_list: list[dict[str, Any]]) -> dict[str, Any]:
    return _pairs(values, id_list, "kind")


def _text(value: Any) -> str | None:
    """A form value that must be a string (a column name, a choice): anything else counts as unset."""
    return value if isinstance(value, str) and value else None


def form_choice(what, text_col, num_cols, id_col, label_col, txt_mode, vector_col=None) -> dict[str, Any]:
    """The data choices of the form, with browser values of the wrong type treated as unset."""
    return {"what": _text(what), "text_column": _text(text_col),
            "numeric_columns": [c for c in num_cols if isinstance(c, str)] if isinstance(num_cols, list) else [],
            "id_column": _text(id_col), "label_column": _text(label_col), "txt_mode": _text(txt_mode),
            "vector_column": _text(vector_col)}


def modality_of(desc: dict[str, Any] | None, what: str | None) -> str | None:
    """Modality of a server upload record (never a browser value) and the form's choice."""
    if not desc:
        return None
    if desc["kind"] == "table":
        return "numeric" if what == "numeric" else "text"
    return "text" if desc["kind"] == "txt" else "image"


def data_summary(runs_dir, desc, choice: dict[str, Any], summaries=None) -> cost.DataSummary:
    """What the estimate needs of the chosen data, made once per upload and data choice when
    ``summaries`` (the app's small LRU) is given: the settings can change on every keystroke, the
    data does not, so a large upload is not prepared again for each of them. A rejected choice is
    remembered too (and raised again). ``choice`` may hold ``vectors``, the browser's store of a
    vectors upload: the estimate reads them as the run will (their problems show here)."""
    spec = uploads.data_spec(desc, runs_dir=runs_dir, **choice)

    def make():
        try:
            return uploads.estimate_summary(spec, runs_dir)
        except HerculesError as e:
            return e

    made = summaries.get_or_make(json.dumps(spec.to_dict(), sort_keys=True), make) if summaries is not None else make()
    if isinstance(made, HerculesError):
        raise made
    return made


def estimate_text(summary: cost.DataSummary, cfg, models: dict[str, Any]) -> str:
    """The core's estimate (``cost.estimate_run``, as the run itself computes it), as one sentence,
    with the expected duration (the speeds runs measured in the app's cache folder, where its runs
    record them: ``hercules_run.timings``) and the levels that will be lowered."""
    est = cost.estimate_run(summary, cfg, llm_id=models.get("llm"),
                            with_text_embedder=bool(models.get("text_embedder")),
                            with_captioner=bool(models.get("captioner")))
    est = cost.annotate_estimate(est, cfg, timings.rates_for(models, timings_directory(CacheSettings())))
    return cost.format_estimate(est).removeprefix("estimate: ") + f" ({summary.n_items:,} items)."


def preview_grid_options(search: Any = "") -> dict[str, Any]:
    """The data preview grid's options: 10 rows a page, the quick filter, tooltips (the whole cell
    of a wrapped long text) shown after a short hover."""
    return {"quickFilterText": search if isinstance(search, str) else "", "pagination": True,
            "paginationPageSize": 10, "paginationPageSizeSelector": False, "tooltipShowDelay": 300}


def cost_preview(ref, what, cfg_values, levels_mode, models, include_tests, runs_dir=None, choice=None,
                 summaries=None):
    """What the run will do and cost, or the first problem with the data or the settings.

    ``ref`` is the browser's upload store: only its id is used, the record is read on the server.
    """
    try:
        desc = uploads.load_descriptor(runs_dir, ref) if ref and runs_dir else None
        cfg = configform.config_from_form(cfg_values, levels_mode)
        modality = modality_of(desc, what)
        checked = configform.check_models(models, modality, cfg, include_tests) if modality else models
        if not desc:
            return html.Div("Upload data to see what the run will cost.", className="text-muted")
        summary = data_summary(runs_dir, desc, dict(choice or {}, what=_text(what)), summaries)
        text = estimate_text(summary, cfg, checked)
    except HerculesError as e:
        return html.Div(str(e), className="text-danger config-error")
    return html.Div(text, className="cost-text")


def recommended_values(llm_id: str | None, id_list: list[dict[str, Any]], values: list) -> list:
    """Form values after choosing an LLM: every setting some LLM has a recommendation for takes the
    value the CLI would use with this one (its recommendation, else the default: nothing recommended
    for the previous LLM lingers); the other settings stay as the user left them."""
    if not isinstance(id_list, list) or not isinstance(values, list) or len(id_list) != len(values):
        raise PreventUpdate
    target = configform.initial_values(llm_id if isinstance(llm_id, str) and llm_id else None)
    reset = configform.recommendable() & target.keys()
    names = [i.get("name") if isinstance(i, dict) else None for i in id_list]
    return [target[n] if n in reset else no_update for n in names]


def start_run(runs_dir, include_tests: bool, active, ref, labels, choice: dict[str, Any], cfg_values,
              levels_mode, models, metadata=None, vectors=None) -> tuple[Any, Any]:
    """Validate everything and create the run; (new ACTIVE_RUN data, message).

    The new ACTIVE_RUN data carries the run's start token: the background job starts the run only for
    it, once (``runstore.claim_start``), so only this page can start (or cancel) the run it created.
    ``labels``, ``metadata`` and ``vectors`` are the browser's stores of the labels, numeric metadata
    and own-embeddings uploads.
    """
    if isinstance(active, dict) and runstore.valid_id(active.get("run_id")):
        status = runstore.read_status(runstore.run_dir(runs_dir, active["run_id"]))
        if runstore.is_active(runstore.effective_state(status)):
            return no_update, html.Div("A run is already in progress in this tab: wait for it or cancel it.",
                                       className="text-danger start-error")
    try:
        desc = uploads.load_descriptor(runs_dir, ref)
        spec = uploads.data_spec(desc, labels=labels, metadata=metadata, vectors=vectors, runs_dir=runs_dir,
                                 **choice)
        cfg = configform.config_from_form(cfg_values, levels_mode)
        checked = configform.check_models(models, modality_of(desc, choice.get("what")), cfg, include_tests)
        run_id = job.create_run(runs_dir, spec, cfg, checked)
        token = runstore.issue_token(runstore.run_dir(runs_dir, run_id))
    except HerculesError as e:
        return no_update, html.Div(str(e), className="text-danger start-error")
    except OSError as e:
        return no_update, html.Div(f"The run could not be created: {runstore.os_error_text(e)}.",
                                   className="text-danger start-error")
    return ({"run_id": run_id, "token": token},
            html.Div(["Started run ", html.Code(run_id[:8]), ": its progress is at the top of the page and on ",
                      html.A("its own page", href=f"/run/{run_id}", className="start-run-page"), "."],
                     className="text-success"))


def register(app, ctx) -> None:
    @app.callback(
        Output(ids.UPLOAD_STORE, "data"), Output(ids.UPLOAD_MSG, "children"), Output(ids.DATA_OPTIONS, "style"),
        Output(ids.TABLE_OPTS, "style"), Output(ids.TXT_OPTS, "style"), Output(ids.TXT_MODE, "value"),
        Output(ids.WHAT, "value"), Output(ids.TEXT_COL, "options"), Output(ids.TEXT_COL, "value"),
        Output(ids.NUM_COLS, "options"), Output(ids.NUM_COLS, "value"), Output(ids.ID_COL, "options"),
        Output(ids.ID_COL, "value"), Output(ids.LABEL_COL, "options"), Output(ids.LABEL_COL, "value"),
        Output(ids.VECTOR_BOX, "style"), Output(ids.VECTOR_COL, "options"), Output(ids.VECTOR_COL, "value"),
        Input(uploads.sent_id(ids.UPLOAD), "data"), prevent_initial_call=True)
    def _upload(sent):
        if not sent:
            raise PreventUpdate
        o = upload_outputs(ctx.runs_dir, sent)
        keys = ("table", "txt", "txt_mode", "what", "text_opts", "text", "num_opts", "num", "id_opts", "id",
                "label_opts", "label", "vector_box", "vector_opts", "vector")
        return (o["store"], o["msg"], o["options"], *[o.get(k, no_update) for k in keys])

    @app.callback(Output(ids.PREVIEW, "rowData"), Output(ids.PREVIEW, "columnDefs"),
                  Input(ids.UPLOAD_STORE, "data"), Input(ids.TXT_MODE, "value"), prevent_initial_call=True)
    def _preview(ref, txt_mode):
        if not ref:
            return [], []
        try:
            rows, cols = uploads.preview_rows(ctx.runs_dir, ref, txt_mode)
        except (HerculesError, OSError, ValueError):
            return [], []
        return rows, uploads.preview_column_defs(cols, rows)

    @app.callback(Output(ids.PREVIEW, "dashGridOptions"), Input(ids.PREVIEW_SEARCH, "value"),
                  prevent_initial_call=True)
    def _search_preview(text):
        return preview_grid_options(text)

    def side_file(store: str, msg: str, upload: str, purpose: str, noun: str) -> None:
        """A file beside the data (labels, numeric metadata, own embeddings): staged on the server, its id
        kept; ``noun`` is formatted with the staged record (``n``, a vectors file's ``dim``)."""
        @app.callback(Output(store, "data"), Output(msg, "children"), Input(uploads.sent_id(upload), "data"),
                      prevent_initial_call=True)
        def _staged(sent):
            if not sent:
                raise PreventUpdate
            try:
                desc = uploads.stage_side(ctx.runs_dir, sent, purpose)
            except HerculesError as e:
                return None, html.Div(str(e), className=f"text-danger {purpose}-error")
            return ({"upload_id": desc["upload_id"]},
                    html.Div(noun.format(n=desc["n"], dim=desc.get("dim")) + f" from {desc['names'][0]}.",
                             className="text-success"))

    side_file(ids.LABELS_STORE, ids.LABELS_MSG, ids.LABELS_UPLOAD, "labels", "Labels: {n:,} ids")
    side_file(ids.METADATA_STORE, ids.METADATA_MSG, ids.METADATA_UPLOAD, "metadata", "Numeric metadata: {n:,} variables")
    side_file(ids.VECTORS_STORE, ids.VECTORS_MSG, ids.VECTORS_UPLOAD, "vectors",
              "Own embeddings: {n:,} vectors of {dim} dimensions")

    @app.callback(Output(ids.FIXED_BOX, "style"), Output(ids.AUTO_BOX, "style"), Input(ids.LEVELS_MODE, "value"))
    def _levels_mode(mode):
        return (HIDDEN, SHOWN) if mode == "auto" else (SHOWN, HIDDEN)

    @app.callback(Output(ids.ADVANCED, "is_open"), Input(ids.ADVANCED_TOGGLE, "n_clicks"),
                  State(ids.ADVANCED, "is_open"), prevent_initial_call=True)
    def _advanced(n, is_open):
        return not (is_open is True)

    @app.callback(Output(ids.COST, "children"),
                  Input(ids.UPLOAD_STORE, "data"), Input(ids.WHAT, "value"),
                  Input({"type": ids.CFG_T, "name": ALL}, "value"), Input(ids.LEVELS_MODE, "value"),
                  Input({"type": ids.MODEL_T, "kind": ALL}, "value"),
                  Input(ids.TEXT_COL, "value"), Input(ids.NUM_COLS, "value"), Input(ids.ID_COL, "value"),
                  Input(ids.LABEL_COL, "value"), Input(ids.TXT_MODE, "value"),
                  Input(ids.VECTOR_COL, "value"), Input(ids.VECTORS_STORE, "data"),
                  State({"type": ids.CFG_T, "name": ALL}, "id"), State({"type": ids.MODEL_T, "kind": ALL}, "id"))
    def _cost(desc, what, values, levels_mode, mvalues, text_col, num_cols, id_col, label_col, txt_mode, vector_col,
              vectors, id_list, mids):
        choice = form_choice(what, text_col, num_cols, id_col, label_col, txt_mode, vector_col)
        choice.pop("what")
        choice["vectors"] = vectors
        return cost_preview(desc, what, form_values(values, id_list), levels_mode, model_values(mvalues, mids),
                            ctx.include_test_models, ctx.runs_dir, choice, ctx.summaries)

    @app.callback(Output({"type": ids.CFG_T, "name": ALL}, "value"),
                  Input({"type": ids.MODEL_T, "kind": "llm"}, "value"),
                  State({"type": ids.CFG_T, "name": ALL}, "id"), State({"type": ids.CFG_T, "name": ALL}, "value"),
                  prevent_initial_call=True)
    def _recommended(llm_id, id_list, values):
        return recommended_values(llm_id, id_list, values)

    @app.callback(
        Output(ids.ACTIVE_RUN, "data"), Output(ids.JOB_START, "data"), Output(ids.START_MSG, "children"),
        Input(ids.START, "n_clicks"),
        State(ids.ACTIVE_RUN, "data"), State(ids.UPLOAD_STORE, "data"), State(ids.LABELS_STORE, "data"),
        State(ids.METADATA_STORE, "data"), State(ids.WHAT, "value"), State(ids.TEXT_COL, "value"), State(ids.NUM_COLS, "value"),
        State(ids.ID_COL, "value"), State(ids.LABEL_COL, "value"), State(ids.TXT_MODE, "value"),
        State(ids.VECTOR_COL, "value"), State(ids.VECTORS_STORE, "data"),
        State({"type": ids.CFG_T, "name": ALL}, "value"), State({"type": ids.CFG_T, "name": ALL}, "id"),
        State(ids.LEVELS_MODE, "value"),
        State({"type": ids.MODEL_T, "kind": ALL}, "value"), State({"type": ids.MODEL_T, "kind": ALL}, "id"),
        prevent_initial_call=True)
    def _start(n, active, desc, labels, metadata, what, text_col, num_cols, id_col, label_col, txt_mode, vector_col,
               vectors, values, id_list, levels_mode, mvalues, mids):
        if not n:
            raise PreventUpdate
        choice = form_choice(what, text_col, num_cols, id_col, label_col, txt_mode, vector_col)
        started, message = start_run(ctx.runs_dir, ctx.include_test_models, active, desc, labels, choice,
                                     form_values(values, id_list), levels_mode, model_values(mvalues, mids),
                                     metadata, vectors)
        # the session store remembers the run (a reload rejoins it); the memory store starts the job, once
        return started, started, message
