"""Curating a run from the explore page, through the app's functions (callbacks/curate.py): structural
edits with validated ids, stale views and two tabs, the downloads and assign after an edit, background
re-titling with the run's summariser, the LLM cost confirmation, the compare page."""

from __future__ import annotations

import base64
import json
import threading

import pandas as pd
import pytest

from callbacks import assign_panel, curate, edit, page_compare, page_runs, runstore
from callbacks.context import AppContext
from hercules_core import Hercules, HerculesConfig, InputError, load_model, save_model
from hercules_core.clients.fakes import FakeEmbedder
from devkit.factories import make_text_dataset
from devkit.dash_http import component_text

FILES = ("model.json", "memberships.csv", "hierarchy.txt")


def data_url(raw: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    ds = make_text_dataset(n=240)
    h = Hercules(HerculesConfig(level_cluster_counts=(10, 3)), text_embedder=FakeEmbedder(64)).fit(ds).hierarchy_
    path = tmp_path_factory.mktemp("m") / "model.json"
    save_model(h, path)
    return path


def new_run(ctx, model_file, llm: str | None = None) -> str:
    run_id, msg = page_runs.import_model(ctx.runs_dir, "model.json", data_url(model_file.read_bytes()))
    assert run_id, msg
    if llm is not None:  # as if the app had run it with this LLM (its spec names the models)
        runstore.write_json_atomic(runstore.run_dir(ctx.runs_dir, run_id) / "spec.json", {"models": {"llm": llm}})
    return run_id


@pytest.fixture
def app_ctx(tmp_path, model_file):
    ctx = AppContext(runs_dir=tmp_path / "runs")
    ctx.runs_dir.mkdir()
    return ctx, new_run(ctx, model_file)


def page(ctx, run_id) -> dict:
    """The run store of a freshly drawn explore page."""
    return {"run_id": run_id, "structure": ctx.model(run_id).structure}


def files(ctx, run_id) -> dict[str, bytes]:
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    return {n: (rdir / n).read_bytes() for n in FILES}


def siblings_at(h, level: int = 1) -> tuple[str, str]:
    """Two clusters of ``level`` under the same parent."""
    lv = h.levels[level]
    for j in range(len(lv)):
        for k in range(j + 1, len(lv)):
            if lv.parent[j] == lv.parent[k]:
                return lv.ids[j], lv.ids[k]
    raise AssertionError("no siblings")


def edit_ok(ctx, run, op, ids=(), **kw) -> dict:
    out = curate.request_edit(ctx, run, op, {"ids": list(ids)}, **kw)
    assert out["state"] == "ok", out
    curate.wait_retitle(run["run_id"])
    return out


# ----------------------------------------------------------------------------- the edits
def test_merge_split_move_dissolve_undo_redo(app_ctx):
    ctx, run_id = app_ctx
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    h0 = ctx.model(run_id).h
    a, b = siblings_at(h0)
    run = page(ctx, run_id)

    out = edit_ok(ctx, run, "merge", [a, b])
    em = ctx.model(run_id)
    merged = out["ids"][0]
    assert a not in em.h.levels[1].ids and b not in em.h.levels[1].ids and merged in em.h.levels[1].ids
    assert len(em.h.levels[1]) == len(h0.levels[1]) - 1
    assert em.parse(out["key"]) == (1, em.h.levels[1].ids.index(merged))  # the page selects the new cluster
    assert int(em.h.cluster(merged).size) == int(h0.cluster(a).size) + int(h0.cluster(b).size)
    # every download is rewritten under the lock: memberships, hierarchy text, evaluation
    members = pd.read_csv(rdir / "memberships.csv", dtype=str)
    assert set(members["L1_cluster_id"]) == set(em.h.levels[1].ids) and merged in (rdir / "hierarchy.txt").read_text()
    assert out["run"]["structure"] == em.structure != run["structure"] and out["run"]["rev"] == 1
    # re-titled in the background with the run's summariser (keywords for an imported model)
    assert em.h.cluster(merged).source == "keywords" and not curate.pending_ids(rdir)
    assert "Merge" in str(curate.log_view(em)) and "local" in str(curate.log_view(em))

    run = out["run"]
    out = edit_ok(ctx, run, "split", [merged], k=3)
    em = ctx.model(run_id)
    assert merged not in em.h.levels[1].ids and len(em.h.levels[1]) == len(h0.levels[1]) + 1
    part = out["ids"][0]

    run = out["run"]
    targets = curate.toolbar(em, [part])["targets"]
    new_parent = targets[0]["value"]
    out = edit_ok(ctx, run, "move", [part], target=new_parent)
    em = ctx.model(run_id)
    assert em.h.cluster(part).parent.id == new_parent
    members = pd.read_csv(rdir / "memberships.csv", dtype=str)
    assert set(members.loc[members["L1_cluster_id"] == part, "L2_cluster_id"]) == {new_parent}

    run = out["run"]
    victim = curate.siblings(em, part)[0]
    out = edit_ok(ctx, run, "dissolve", [victim])
    em = ctx.model(run_id)
    assert victim not in em.h.levels[1].ids
    assert sum(em.h.levels[1].size) == em.h.n_items

    # undo four times: back to the imported model's memberships, byte for byte
    for _ in range(4):
        out = edit_ok(ctx, out["run"], "undo")
        assert out["message"].startswith("Undone:")
    assert ctx.model(run_id).h.levels[1].ids == h0.levels[1].ids
    original = pd.read_csv(rdir / "memberships.csv", dtype=str)
    assert set(original["L1_cluster_id"]) == set(h0.levels[1].ids)
    why = curate.toolbar(ctx.model(run_id), [])["why"]
    assert "undo" in why and "redo" not in why  # nothing left to undo; four to redo
    out = edit_ok(ctx, out["run"], "redo")
    assert merged in ctx.model(run_id).h.levels[1].ids


def test_buttons_apply_only_when_the_edit_applies(app_ctx):
    ctx, run_id = app_ctx
    em = ctx.model(run_id)
    a, b = siblings_at(em.h)
    top = em.h.levels[2].ids[0]
    assert set(curate.toolbar(em, [])["why"]) == set(curate.OPS)  # nothing chosen, nothing to undo
    t = curate.toolbar(em, [a, b])
    assert "merge" not in t["why"] and {"split", "move", "dissolve"} <= set(t["why"])
    t = curate.toolbar(em, [a])
    assert {"split", "move", "dissolve"}.isdisjoint(t["why"]) and t["split_max"] >= 2
    assert em.h.cluster(a).parent.id not in {o["value"] for o in t["targets"]}  # not to its own parent
    assert "merge" in curate.toolbar(em, [a, top])["why"]  # mixed levels
    assert "move" in curate.toolbar(em, [top])["why"]  # the top level has no parent level


# ----------------------------------------------------------------------------- forged and stale requests
@pytest.mark.parametrize("run, op, ids, message", [
    ({"run_id": "../../etc"}, "merge", ["L1_0", "L1_1"], "Not a valid run"),
    (None, "merge", ["L1_0", "L1_1"], "Not a valid run"),
    ({"run_id": "0" * 32}, "merge", ["L1_0", "L1_1"], "no model"),
    ("ok", "drop-table", ["L1_0"], "Unknown edit"),
    ("ok", "merge", ["L1_0"], "at least two"),
    ("ok", "split", ["L1_0"], "between 2 and"),
    ("ok", "move", ["L1_0"], "Move to"),
    ("ok", "redo", [], "redo"),
])
def test_bad_requests_say_why_and_change_nothing(app_ctx, run, op, ids, message):
    ctx, run_id = app_ctx
    before = files(ctx, run_id)
    out = curate.request_edit(ctx, page(ctx, run_id) if run == "ok" else run, op, {"ids": ids},
                              k="many" if op == "split" else None)
    assert out["state"] == "error" and message.lower() in out["message"].lower(), out
    assert files(ctx, run_id) == before


@pytest.mark.parametrize("ids", [["L1_0", "L1_999"], ["L1_0", "../model.json"], ["L0_3", "L1_1"], ["L1_0", 7]])
def test_forged_cluster_ids_are_refused(app_ctx, ids):
    ctx, run_id = app_ctx
    before = files(ctx, run_id)
    out = curate.request_edit(ctx, page(ctx, run_id), "merge", {"ids": ids})
    assert out["state"] == "stale" and out["message"] == curate.STALE
    assert files(ctx, run_id) == before


def test_two_tabs_stay_consistent(app_ctx):
    """Tab A merges; tab B, drawn before, is refused (never applied to a shifted index) and redrawn;
    after the redraw its edits apply to the clusters it names."""
    ctx, run_id = app_ctx
    h0 = ctx.model(run_id).h
    a, b = siblings_at(h0)
    tab_a, tab_b = page(ctx, run_id), page(ctx, run_id)
    edit_ok(ctx, tab_a, "merge", [a, b])
    before = files(ctx, run_id)
    other = next(c for c in h0.levels[1].ids if c not in (a, b) and curate.siblings(ctx.model(run_id), c))
    out = curate.request_edit(ctx, tab_b, "dissolve", {"ids": [other]})
    assert out["state"] == "stale" and out["message"] == curate.STALE and files(ctx, run_id) == before
    # a click on tab B's old drawing is refused too (its key names another cluster now)
    chosen, msg = curate.add_to_selection(ctx.model(run_id), tab_b, {"ids": []}, {"key": "L1:0"})
    assert (chosen, msg) == ([], curate.STALE)
    tab_b = out["run"]  # the redrawn page
    out = curate.request_edit(ctx, tab_b, "merge", {"ids": [a, other]})  # `a` was merged away in tab A
    assert out["state"] == "stale" and files(ctx, run_id) == before
    out = edit_ok(ctx, tab_b, "dissolve", [other])
    h = ctx.model(run_id).h
    assert other not in h.levels[1].ids and len(h.levels[1]) == len(h0.levels[1]) - 2
    assert [e["op"] for e in h.edit_log] == ["merge", "dissolve"]
    # a title form filled before a structural edit in another tab is refused, not saved on another cluster
    em = ctx.model(run_id)
    before = files(ctx, run_id)
    state, msg = edit.save(ctx, {"run_id": run_id}, {"key": "L1:0", "id": em.h.levels[1].ids[1]}, "Mine", "x")
    assert (state, msg) == ("error", curate.STALE) and files(ctx, run_id) == before


def test_an_id_gone_under_the_lock_is_refused_as_stale(app_ctx):
    """Between the page's check and the lock, another tab's edit removes a named cluster."""
    ctx, run_id = app_ctx
    h0 = ctx.model(run_id).h
    a, b = siblings_at(h0)
    run = page(ctx, run_id)
    em = ctx.model(run_id)
    from hercules_core import curate as core

    core.edit_model(runstore.run_dir(ctx.runs_dir, run_id) / "model.json", "merge", {"ids": [a, b]})
    before = files(ctx, run_id)
    calls = []
    real = ctx.cache.get
    # the request's own check still sees the old file; the lock, then the fresh view, the new one
    ctx.cache.get = lambda path: em if not calls.append(1) and len(calls) == 1 else real(path)
    out = curate.request_edit(ctx, run, "dissolve", {"ids": [a]})
    del ctx.cache.get
    assert out["state"] == "stale" and out["message"] == curate.STALE and files(ctx, run_id) == before


# ----------------------------------------------------------------------------- downloads and assign
def test_downloads_and_assign_use_the_curated_hierarchy(tmp_path, model_file):
    from app import create_app

    dash_app = create_app(tmp_path / "runs")
    ctx = dash_app.server.config["HERCULES"]
    run_id = new_run(ctx, model_file)
    a, b = siblings_at(ctx.model(run_id).h)
    merged = edit_ok(ctx, page(ctx, run_id), "merge", [a, b])["ids"][0]
    client = dash_app.server.test_client()
    csv = client.get(f"/files/{run_id}/download/memberships.csv").get_data(as_text=True)
    assert merged in csv and f",{a}," not in csv
    doc = json.loads(client.get(f"/files/{run_id}/download/model.json").get_data())
    assert doc["curation"]["log"][0]["op"] == "merge" and merged in json.dumps(doc["levels"])
    assert merged in client.get(f"/files/{run_id}/download/hierarchy.txt").get_data(as_text=True)
    report = client.get(f"/files/{run_id}/report.html").get_data(as_text=True)
    assert merged in report
    # the explore page itself draws the edit toolbar and the page's structure token
    html_page = client.get(f"/explore?run={run_id}")
    assert html_page.status_code == 200
    # assign: new items land in the curated clusters
    texts = make_text_dataset(n=240).texts[:30]
    staged = assign_panel.staged(ctx, run_id, ["new.csv"], [data_url(
        pd.DataFrame({"text": texts}).to_csv(index=False).encode(), "text/csv")])
    out = assign_panel.run_assignment(ctx, {"run_id": run_id}, staged["store"], "text", "")
    assert "assign_id" in out, out
    _, rows, _, _ = assign_panel.result_view(ctx, out)
    got = {r["L1_cluster_id"] for r in rows}
    assert got <= set(ctx.model(run_id).h.levels[1].ids) and a not in got and b not in got


# ----------------------------------------------------------------------------- re-titling
def test_retitling_runs_in_the_background_and_keeps_hand_edits(app_ctx, model_file, monkeypatch):
    ctx, _ = app_ctx
    run_id = new_run(ctx, model_file, llm="fake")
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    h0 = ctx.model(run_id).h
    a, b = siblings_at(h0)
    parent = h0.cluster(a).parent.id
    state, _ = edit.save(ctx, page(ctx, run_id), {"key": curate.key_of(ctx.model(run_id), parent)},
                         "My own parent title", "Written by hand.")
    assert state == "ok"
    go = threading.Event()
    real = curate.run_summarizer

    class Held:  # the run's summariser, held until the test has looked at the page in between
        def __init__(self, inner):
            self.inner, self.model_id = inner, inner.model_id

        def summarize(self, *a, **kw):
            assert go.wait(30)
            return self.inner.summarize(*a, **kw)

    monkeypatch.setattr(curate, "run_summarizer", lambda *a: Held(real(*a)))
    out = curate.request_edit(ctx, page(ctx, run_id), "merge", {"ids": [a, b]})
    assert out["state"] == "ok", out  # the fake LLM costs nothing: no confirmation asked
    merged = out["ids"][0]
    em = ctx.model(run_id)  # the new structure is there at once, with placeholder titles
    assert merged in em.h.levels[1].ids and em.h.cluster(merged).source == "curated"
    marks = curate.marks(em, rdir)
    assert marks[merged] == curate.RETITLING and parent not in out["retitling"]
    assert marks[parent] == curate.CHILDREN_CHANGED
    go.set()
    curate.wait_retitle(run_id)
    em = ctx.model(run_id)
    assert em.h.cluster(merged).source not in ("curated", "keywords")  # written by the run's (fake) LLM
    assert em.h.cluster(parent).title == "My own parent title"  # never overwritten
    marks = curate.marks(em, rdir)
    assert marks.get(merged) is None and marks[parent] == curate.CHILDREN_CHANGED
    assert curate.retitle_status(rdir)["state"] == "done"
    assert em.h.cluster(merged).title in pd.read_csv(rdir / "memberships.csv")["L1_title"].tolist()
    # undo restores the titles of before, the re-titling included in the undone edit
    curate.request_edit(ctx, page(ctx, run_id), "undo")
    h = ctx.model(run_id).h
    assert h.levels[1].titles == h0.levels[1].titles


def test_an_llm_edit_asks_first_and_reports_a_failed_retitling(app_ctx, model_file, monkeypatch):
    monkeypatch.delenv("HERCULES_LLM_BASE_URL", raising=False)
    ctx, _ = app_ctx
    run_id = new_run(ctx, model_file, llm="openai")
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    a, b = siblings_at(ctx.model(run_id).h)
    before = files(ctx, run_id)
    out = curate.request_edit(ctx, page(ctx, run_id), "merge", {"ids": [a, b]})
    assert out["state"] == "confirm" and "LLM call" in out["message"] and "openai" in out["message"]
    assert files(ctx, run_id) == before  # nothing until the user agrees
    out = curate.request_edit(ctx, page(ctx, run_id), "merge", {"ids": [a, b]}, confirmed=True)
    assert out["state"] == "ok"
    curate.wait_retitle(run_id)
    st = curate.retitle_status(rdir)
    assert st["state"] == "failed" and "Re-titling failed" in st["message"] and not curate.pending_ids(rdir)
    assert ctx.model(run_id).h.cluster(out["ids"][0]).source == "curated"  # the structure stays, marked


def test_who_is_local_without_a_login(app_ctx):
    ctx, run_id = app_ctx
    a, b = siblings_at(ctx.model(run_id).h)
    curate.request_edit(ctx, page(ctx, run_id), "merge", {"ids": [a, b]}, who_=curate.who())
    curate.wait_retitle(run_id)
    assert ctx.model(run_id).h.edit_log[-1]["who"] == "local"


# ----------------------------------------------------------------------------- selection
def test_edit_selection_from_clicks_and_box_select(app_ctx):
    ctx, run_id = app_ctx
    em = ctx.model(run_id)
    run = page(ctx, run_id)
    chosen, msg = curate.add_to_selection(em, run, {"ids": []}, {"key": "L1:2"})
    assert chosen == [em.h.levels[1].ids[2]] and msg == ""
    chosen, msg = curate.add_to_selection(em, run, {"ids": chosen}, {"key": "L0:5"})
    assert len(chosen) == 1 and "Click a cluster" in msg
    box = {"points": [{"curveNumber": 1, "customdata": ["L1:0"]}, {"curveNumber": 1, "customdata": ["L1:3"]},
                      {"curveNumber": 0, "customdata": ["L0:1"]}, {"curveNumber": 1, "customdata": ["L9:9"]}]}
    chosen, msg = curate.from_box(em, run, box, 1)
    assert chosen == [em.h.levels[1].ids[0], em.h.levels[1].ids[3]]
    # forged store values are dropped
    assert curate.clean_ids(em, {"ids": ["L1_0", "L1_0", "L1_999", "x", None, {"a": 1}]}) == ["L1_0"]
    assert curate.clean_ids(em, "L1_0") == []


# ----------------------------------------------------------------------------- compare page
def test_compare_page_shows_a_curated_run_against_its_origin(app_ctx, model_file):
    ctx, run_id = app_ctx
    origin = new_run(ctx, model_file)
    a, b = siblings_at(ctx.model(run_id).h)
    merged = edit_ok(ctx, page(ctx, run_id), "merge", [a, b])["ids"][0]
    assert {o["value"] for o in page_compare.run_options(ctx)} >= {run_id, origin}
    same = page_compare.comparison(ctx, origin, new_run(ctx, model_file))
    assert "1.000 1.000" in component_text(same)  # identical runs: every level agrees fully (weighted Jaccard, ARI)
    body = component_text(page_compare.comparison(ctx, origin, run_id))
    assert f"{merged} " in body and a in body and b in body  # the merge is listed
    assert "Choose two" in component_text(page_compare.comparison(ctx, origin, "../etc"))
    assert "different runs" in component_text(page_compare.comparison(ctx, origin, origin))
    assert "cannot be opened" in component_text(page_compare.comparison(ctx, origin, "0" * 32)) or \
        "no model" in component_text(page_compare.comparison(ctx, origin, "0" * 32))


# ----------------------------------------------------------------------------- replay
def test_replay_edits_onto_another_run_writes_a_new_run(app_ctx, model_file, tmp_path):
    ctx, run_id = app_ctx
    h0 = ctx.model(run_id).h
    a, b = siblings_at(h0)
    out = edit_ok(ctx, page(ctx, run_id), "merge", [a, b])
    merged = out["ids"][0]
    edit.save(ctx, out["run"], {"key": curate.key_of(ctx.model(run_id), merged)}, "Hand title", "By hand.")
    # another run of the same data, fitted with another seed
    ds = make_text_dataset(n=240)
    h1 = Hercules(HerculesConfig(level_cluster_counts=(10, 3), random_state=1),
                  text_embedder=FakeEmbedder(64)).fit(ds).hierarchy_
    save_model(h1, tmp_path / "seed1.json")
    target = new_run(ctx, tmp_path / "seed1.json")
    assert target in {o["value"] for o in curate.replay_targets(ctx, run_id)}
    assert run_id not in {o["value"] for o in curate.replay_targets(ctx, run_id)}

    res = curate.replay_onto(ctx, page(ctx, run_id), target)
    assert res["state"] == "ok", res
    curate.wait_retitle(res["run_id"])
    report = res["report"]
    assert report["entries"] == 2 and len(report["results"]) == 2
    for r in report["results"]:  # each entry: applied, or not with a reason
        assert r["status"] == "applied" or r["reason"]
    new = ctx.model(res["run_id"]).h  # a new finished run; the target is untouched
    assert len(new.edit_log) >= report["applied"] and ctx.model(target).h.edit_log == []
    assert f"{report['applied']} of 2 edits applied" in res["message"]
    shown = str(curate.replay_view(res))
    assert shown.count("not applied") == report["skipped"]
    assert all(r["reason"] in shown for r in report["results"] if r["status"] != "applied")
    # replaying onto the run it came from (an unedited copy) reproduces the curated memberships
    origin = new_run(ctx, model_file)
    res = curate.replay_onto(ctx, page(ctx, run_id), origin)
    assert res["state"] == "ok" and res["report"]["applied"] == 2
    curate.wait_retitle(res["run_id"])
    mine = pd.read_csv(runstore.run_dir(ctx.runs_dir, run_id) / "memberships.csv", dtype=str)
    theirs = pd.read_csv(runstore.run_dir(ctx.runs_dir, res["run_id"]) / "memberships.csv", dtype=str)
    assert mine["L1_cluster_id"].tolist() == theirs["L1_cluster_id"].tolist()
    assert ctx.model(res["run_id"]).h.cluster(merged).title == "Hand title"
    # bad requests
    for bad in ("../x", run_id, None):
        assert curate.replay_onto(ctx, page(ctx, run_id), bad)["state"] == "error"
    assert "no edits" in curate.replay_onto(ctx, page(ctx, target), origin)["message"]


def test_the_split_limit_is_the_librarys():
    """The form and the request check take the library's largest k: what the library can split the
    page offers (no second, smaller cap), and one more part is refused with the limit named."""
    from hercules_core import curate as lib

    assert curate.edit_args("split", ["L1_0"], str(lib.SPLIT_K_MAX), None) == {"id": "L1_0", "k": lib.SPLIT_K_MAX}
    with pytest.raises(InputError, match=f"between 2 and {lib.SPLIT_K_MAX}"):
        curate.edit_args("split", ["L1_0"], lib.SPLIT_K_MAX + 1, None)
