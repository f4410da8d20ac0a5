"""Editing a cluster's title and description from the explore page (a form below the cluster pane).

The form is its own component, filled for the selected cluster. Saving goes through
``hercules_core.edits.edit_cluster`` (locked re-read-modify-write of only that cluster) and then
rewrites the run's memberships CSV and hierarchy text under the same lock, so every download shows
the edit. The run id and the cluster key come from the browser: both are validated here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
from dash import Input, Output, State, html, no_update
from dash.exceptions import PreventUpdate

from hercules_core import HerculesError
from hercules_core.edits import DESCRIPTION_MAX, TITLE_MAX, edit_cluster

from . import curate, ids, runstore


def form(em, key: Any):
    """The edit form for the cluster ``key`` (nothing for items or no selection)."""
    parsed = em.parse(key)
    if parsed is None or parsed[0] == 0:
        return None
    level, index = parsed
    lv = em.h.levels[level]
    return html.Details([
        html.Summary("Edit title and description", className="small edit-toggle"),
        dbc.Label(f"Title (one line, at most {TITLE_MAX} characters)", className="small mb-0 mt-1"),
        dbc.Input(id=ids.EDIT_TITLE, value=lv.titles[index], size="sm", type="text"),
        dbc.Label(f"Description (at most {DESCRIPTION_MAX:,} characters)", className="small mb-0 mt-1"),
        dbc.Textarea(id=ids.EDIT_DESC, value=lv.descriptions[index], rows=3, className="form-control-sm"),
        dbc.Button("Save", id=ids.EDIT_SAVE, size="sm", color="primary", className="mt-1"),
        html.Span("The model's own text is kept in the model file (source becomes \"edited\").",
                  className="small text-muted ms-2"),
        html.Div(id=ids.EDIT_MSG, className="small mt-1"),
    ], className="edit-form", **{"data-key": key})


def save(ctx, run: Any, key_store: Any, title: Any, description: Any, who: str = "local") -> tuple[str, str]:
    """Validate and save one edit; (state "ok"/"error", message). Nothing is written on error."""
    run_id = (run or {}).get("run_id") if isinstance(run, dict) else None
    if not runstore.valid_id(run_id):
        return "error", "Not a valid run."
    try:
        em = ctx.model(run_id)
    except (OSError, HerculesError):
        return "error", "This run has no model to edit."
    key = key_store.get("key") if isinstance(key_store, dict) else None
    parsed = em.parse(key)
    if parsed is None or parsed[0] == 0:
        return "error", "Select a cluster (level 1 or above) to edit."
    cluster_id = em.h.levels[parsed[0]].ids[parsed[1]]
    if key_store.get("id", cluster_id) != cluster_id:  # the form was filled before a structural edit elsewhere
        return "error", curate.STALE
    rdir = runstore.run_dir(ctx.runs_dir, run_id)

    try:  # the downloads derived from the model are written under the same lock
        edit_cluster(Path(rdir) / "model.json", cluster_id, title=title, description=description,
                     on_saved=lambda h: curate.write_downloads(rdir, h), who=who)
    except HerculesError as e:
        return "error", str(e)
    except OSError as e:
        return "error", f"The edit could not be saved ({e.strerror or 'disk error'}); nothing was changed."
    return "ok", f"Saved {cluster_id}."


def register(app, ctx) -> None:
    @app.callback(Output(ids.EDIT_BOX, "children"), Output(ids.EDIT_KEY, "data"),
                  Input(ids.SELECTION, "data"), State(ids.EXPLORE_RUN, "data"))
    def _form(selection, run):
        run_id = run.get("run_id") if isinstance(run, dict) else None
        if not runstore.valid_id(run_id):
            raise PreventUpdate
        try:
            em = ctx.model(run_id)
        except (OSError, HerculesError):
            raise PreventUpdate from None
        key = (selection or {}).get("key") if isinstance(selection, dict) else None
        box = form(em, key)
        # the cluster's id too: an edit in another tab may shift the key to another cluster before Save
        return box, ({"key": key, "id": curate.cluster_id_of(em, key)} if box is not None else None)

    @app.callback(Output(ids.EDIT_MSG, "children"), Output(ids.EXPLORE_RUN, "data", allow_duplicate=True),
                  Input(ids.EDIT_SAVE, "n_clicks"), State(ids.EXPLORE_RUN, "data"), State(ids.EDIT_KEY, "data"),
                  State(ids.EDIT_TITLE, "value"), State(ids.EDIT_DESC, "value"), prevent_initial_call=True)
    def _save(n, run, key_store, title, description):
        if not n:
            raise PreventUpdate
        state, message = save(ctx, run, key_store, title, description, curate.who())
        if state != "ok":
            return html.Span(message, className="text-danger edit-error"), no_update
        # a new revision of the run store: every view (scatter, pane, tree, sunburst, search) re-renders from it
        return html.Span(message, className="text-success edit-ok"), curate.run_store(run, ctx.model(run["run_id"]))
