"""The app side of reuse, as plain functions and through the Flask routes: editing a cluster from the
explore page, assigning an uploaded file to a run, the report and assignment downloads."""

from __future__ import annotations

import base64
import json

import pandas as pd
import pytest

from callbacks import assign_panel, edit, page_runs, runstore
from callbacks.context import AppContext
from hercules_core import Hercules, HerculesConfig, load_model, save_model
from hercules_core.clients.fakes import FakeEmbedder
from devkit.factories import make_text_dataset


def data_url(raw: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    ds = make_text_dataset(n=200)
    h = Hercules(HerculesConfig(level_cluster_counts=(10, 3)), text_embedder=FakeEmbedder(64)).fit(ds).hierarchy_
    path = tmp_path_factory.mktemp("m") / "model.json"
    save_model(h, path)
    return ds, path


@pytest.fixture
def app_ctx(tmp_path, text_model):
    ctx = AppContext(runs_dir=tmp_path / "runs")
    ctx.runs_dir.mkdir()
    run_id, msg = page_runs.import_model(ctx.runs_dir, "model.json", data_url(text_model[1].read_bytes()))
    assert run_id, msg
    return ctx, run_id


# ----------------------------------------------------------------------------- edit
def test_edit_saves_and_rewrites_every_download(app_ctx):
    ctx, run_id = app_ctx
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    state, msg = edit.save(ctx, {"run_id": run_id}, {"key": "L2:1"}, "Hand-made title", "Written by a person.")
    assert (state, msg) == ("ok", "Saved L2_1.")
    assert load_model(rdir / "model.json").cluster("L2_1").source == "edited"
    assert "Hand-made title" in set(pd.read_csv(rdir / "memberships.csv")["L2_title"])
    assert "Hand-made title — Written by a person." in (rdir / "hierarchy.txt").read_text()
    assert ctx.model(run_id).h.cluster("L2_1").title == "Hand-made title"  # the explorer sees it at once


@pytest.mark.parametrize("run, key, title, message", [
    ({"run_id": "../../etc"}, {"key": "L1:0"}, "t", "Not a valid run"),
    ({"run_id": "0" * 32}, {"key": "L1:0"}, "t", "no model"),
    (None, {"key": "L1:0"}, "t", "Not a valid run"),
    ("RUN", {"key": "L1:0"}, "t", "Not a valid run"),
    ("ok", {"key": "L0:3"}, "t", "Select a cluster"),
    ("ok", {"key": "L9:0"}, "t", "Select a cluster"),
    ("ok", "L1:0", "t", "Select a cluster"),
    ("ok", {"key": "L1:0"}, "", "title cannot be empty"),
    ("ok", {"key": "L1:0"}, "x" * 10_240, "title has 10,240 characters"),
    ("ok", {"key": "L1:0"}, ["a list"], "title must be text"),
])
def test_bad_edits_from_the_browser_change_nothing(app_ctx, run, key, title, message):
    ctx, run_id = app_ctx
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    before = {n: (rdir / n).read_bytes() for n in ("model.json", "memberships.csv", "hierarchy.txt")}
    state, msg = edit.save(ctx, {"run_id": run_id} if run == "ok" else run, key, title, "a description")
    assert state == "error" and message in msg
    assert {n: (rdir / n).read_bytes() for n in before} == before


# ----------------------------------------------------------------------------- assign
def stage(ctx, run_id, frame: pd.DataFrame, name="new.csv"):
    return assign_panel.staged(ctx, run_id, [name], [data_url(frame.to_csv(index=False).encode(), "text/csv")])


def test_assign_an_uploaded_table_to_a_run(app_ctx, text_model):
    ctx, run_id = app_ctx
    ds, _ = text_model
    frame = pd.DataFrame({"key": [f"n{i}" for i in range(40)], "body": ds.texts[:40]})
    staged = stage(ctx, run_id, frame)
    assert staged["store"] and staged["text"] == "body" and staged["id"] == "key"
    out = assign_panel.run_assignment(ctx, {"run_id": run_id}, staged["store"], "body", "key")
    assert set(out) == {"run_id", "assign_id"}, out
    summary, rows, cols, style = assign_panel.result_view(ctx, out)
    assert len(rows) == 40 and [c["field"] for c in cols][-2:] == ["distance", "novel"]
    h = load_model(runstore.run_dir(ctx.runs_dir, run_id) / "model.json")
    same = [r["L1_cluster_id"] == h.levels[1].ids[h.levels[0].parent[i]] for i, r in enumerate(rows)]
    assert sum(same) >= 39  # the training texts land in their own level-1 clusters
    trace = assign_panel.assigned_trace(ctx, out, {"space": "representation"})
    assert len(trace["x"]) == 40 and trace["customdata"][0][1] == "n0"
    csv = assign_panel.assignment_dir(ctx.runs_dir, run_id, out["assign_id"]) / "assignments.csv"
    assert pd.read_csv(csv)["item_id"].tolist() == frame["key"].tolist()


def test_assign_bad_input_says_what_is_wrong(app_ctx):
    ctx, run_id = app_ctx
    staged = stage(ctx, run_id, pd.DataFrame({"a": [1, 2], "b": [3, 4]}))
    out = assign_panel.run_assignment(ctx, {"run_id": run_id}, staged["store"], "", "")
    assert "Pick the column that holds the texts" in out["error"]
    out = assign_panel.run_assignment(ctx, {"run_id": run_id}, staged["store"], "nope", "")
    assert "The text column 'nope' is not a column of the table" in out["error"]
    images = assign_panel.staged(ctx, run_id, ["a.png", "b.png"], [data_url(b"x"), data_url(b"y")])
    out = assign_panel.run_assignment(ctx, {"run_id": run_id}, images["store"], "", "")
    assert "This model clusters text items, but the upload holds image items" in out["error"]
    for bad in ({"upload_id": "../x"}, None, "x"):
        assert "Upload the new data first" in assign_panel.run_assignment(ctx, {"run_id": run_id}, bad, "", "")["error"]
    assert not (runstore.run_dir(ctx.runs_dir, run_id) / "assign").exists() or \
        not any((runstore.run_dir(ctx.runs_dir, run_id) / "assign").iterdir())


# ----------------------------------------------------------------------------- routes
def test_report_and_assignment_downloads(tmp_path, text_model):
    from app import create_app

    ctx_app = create_app(tmp_path / "runs")
    ctx = ctx_app.server.config["HERCULES"]
    run_id, _ = page_runs.import_model(ctx.runs_dir, "model.json", data_url(text_model[1].read_bytes()))
    client = ctx_app.server.test_client()
    r = client.get(f"/files/{run_id}/report.html")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert f'hercules-{run_id}-report.html' in r.headers["Content-Disposition"]
    assert b"<script>/*@" not in r.data and b"Plotly" in r.data
    for url in (f"/files/{'0' * 32}/report.html", "/files/..%2f..%2fetc/report.html",
                f"/files/{run_id}/assign/{'1' * 32}.csv", f"/files/{run_id}/assign/..%2fmodel.csv"):
        r = client.get(url)  # a 404, or Dash's page shell for a path that is no route: never a file
        assert r.status_code == 404 or "Content-Disposition" not in r.headers, url


def test_an_old_model_says_assign_needs_a_rerun(tmp_path, text_model):
    doc = json.loads(text_model[1].read_text())
    del doc["assign"]
    ctx = AppContext(runs_dir=tmp_path / "runs")
    ctx.runs_dir.mkdir()
    run_id, _ = page_runs.import_model(ctx.runs_dir, "old.json", data_url(json.dumps(doc).encode()))
    out = stage(ctx, run_id, pd.DataFrame({"text": ["a", "b"]}))
    assert out["store"] is None and out["disabled"]
    assert "Re-run the hierarchy with this version to enable assign" in str(out["msg"].children)
