"""The app object: pages render, callbacks are wired, routes are safe (Flask test client, no browser)."""

from __future__ import annotations

import json

import pytest

from callbacks import job, page_runs, runstore
from callbacks.explore_model import ExploreModel
from hercules_core import io, save_model
from hercules_core.reduction import reduce_hierarchy
from devkit.factories import make_hierarchy, run_in_state
from tests.test_app_logic import data_url


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "model-cache"))


@pytest.fixture(scope="module")
def app_and_runs(tmp_path_factory):
    from app import create_app

    runs = tmp_path_factory.mktemp("runs")
    app = create_app(runs, include_test_models=True)
    h = make_hierarchy(ks=(8, 3))
    reduce_hierarchy(h, 2, 0)
    run_id = runstore.new_id()
    rdir = runs / run_id
    rdir.mkdir()
    save_model(h, rdir / "model.json")
    io.save_memberships(h, rdir / "memberships.csv")
    io.save_evaluation({1: {"level": 1, "silhouette_score": 0.5, "notes": ["a"]}}, rdir / "evaluation.json")
    run_in_state(rdir, runstore.DONE)
    return app, runs, run_id


def test_every_page_renders_and_callbacks_are_registered(app_and_runs):
    app, _, run_id = app_and_runs
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    deps = client.get("/_dash-dependencies").get_json()
    assert any(d.get("background") for d in deps)  # the run is a background callback
    import dash

    layouts = {page["path_template"] or page["path"]: page["layout"] for page in dash.page_registry.values()}
    assert set(layouts) == {"/", "/runs", "/explore", "/evaluate", "/run/<run_id>", "/compare"}
    with app.server.test_request_context():
        for layout in (layouts["/"](), layouts["/runs"](), layouts["/explore"](run=run_id),
                       layouts["/explore"](run="../x"), layouts["/evaluate"](run=run_id),
                       layouts["/compare"](a=run_id, b="../x"), layouts["/compare"](),
                       layouts["/run/<run_id>"](run_id=run_id), layouts["/run/<run_id>"](run_id="../x")):
            json.dumps(layout.to_plotly_json(), default=lambda o: o.to_plotly_json())


def test_downloads_carry_the_run_id_and_refuse_bad_requests(app_and_runs):
    app, _, run_id = app_and_runs
    client = app.server.test_client()
    r = client.get(f"/files/{run_id}/download/model.json")
    assert r.status_code == 200 and f"hercules-{run_id}-model.json" in r.headers["Content-Disposition"]
    r = client.get(f"/files/{run_id}/download/evaluation.csv")
    assert r.status_code == 200 and r.data.decode().startswith("level,")
    for url in (f"/files/{run_id}/download/status.json", f"/files/{run_id}/download/..%2Fmodel.json",
                "/files/..%2F..%2Fetc/download/model.json", f"/files/{run_id[:-1]}x/download/model.json",
                f"/files/{run_id}/download/run_log.jsonl", f"/files/{run_id}/image/0"):
        r = client.get(url)
        # 404, or (for a path the route does not match) the app's own HTML page: never a file
        assert r.status_code == 404 or ("Content-Disposition" not in r.headers
                                        and b"hercules-model" not in r.data), url


def test_import_model_accepts_saved_models_and_explains_bad_ones(app_and_runs, tmp_path):
    _, runs, run_id = app_and_runs
    blob = (runs / run_id / "model.json").read_bytes()
    new_id, msg = page_runs.import_model(runs, "model.json", data_url(blob))
    assert runstore.valid_id(new_id) and "Imported" in msg
    assert ExploreModel.load(runs / new_id / "model.json").h.n_items == 60
    assert (runs / new_id / "memberships.csv").is_file()
    bad_id, msg = page_runs.import_model(runs, "broken.json", data_url(b'{"format": "hercules-model"'))
    assert bad_id is None and "does not parse" in msg and str(runs) not in msg
    # a table sent to the model import (a browser without the page's script) is told where it belongs
    assert page_runs.import_model(runs, "x.csv", data_url(b"a")) == (
        None, "x.csv is not a model file: a model is the model.json or .hercules bundle a run wrote; to cluster a "
        "table, use New run.")
    table = page_runs.runs_table(runstore.list_runs(runs))
    assert "Open" in json.dumps(table.to_plotly_json(), default=lambda o: o.to_plotly_json())


def test_background_body_reports_the_final_state(app_and_runs, tmp_path):
    from callbacks import shell
    from callbacks.context import AppContext
    from tests.test_app_logic import _start

    run_id = _start(tmp_path, "id,text\n" + "\n".join(f"{i},words {i} about topic {i % 4}" for i in range(30)),
                    text_column="text", id_column="id")
    progress = []
    token = runstore.issue_token(runstore.run_dir(tmp_path, run_id))  # what the creating page holds
    out = shell.run_in_background(AppContext(runs_dir=tmp_path), progress.append,
                                  {"run_id": run_id, "token": token})
    assert out == {"run_id": run_id, "state": "done", "message": None}
    assert progress[-1][0] == 100 and progress[-1][1] == "100%"
    assert shell.result_message(out) is not None
    failed = shell.result_message({"run_id": run_id, "state": "failed", "message": "boom <b>"})
    assert "boom <b>" in json.dumps(failed.to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert job  # imported for its side-effect-free module


def _render_page(app, path: str) -> str:
    """The page content as the browser gets it: through Dash's own page-routing callback."""
    body = {"output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": path},
                       {"id": "_pages_location", "property": "search", "value": ""}],
            "changedPropIds": ["_pages_location.pathname"], "state": []}
    r = app.server.test_client().post("/_dash-update-component", json=body)
    assert r.status_code == 200
    return r.get_data(as_text=True)


def test_the_new_run_page_shows_test_models_when_its_app_says_so(app_and_runs, tmp_path, monkeypatch):
    from app import create_app

    monkeypatch.delenv("HERCULES_TEST_MODELS", raising=False)
    with_tests = app_and_runs[0]  # create_app(..., include_test_models=True)
    without = create_app(tmp_path / "runs", include_test_models=False)  # the newer app of the process
    assert "Deterministic fake LLM" in _render_page(with_tests, "/")
    assert "Deterministic fake LLM" not in _render_page(without, "/")
