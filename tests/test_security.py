"""Probes of issue 7, as an attacker posting to the app's endpoints would make them (Flask test client).

Each test names the defect it guards: reading files through a forged upload descriptor, starting or
cancelling runs one does not own, the image route, server paths in messages, run durations, and
callbacks given values of the wrong type.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from dash.exceptions import PreventUpdate

from callbacks import job, page_runs, runstore, shell, uploads
from callbacks.context import AppContext
from hercules_core import ModelFileError, save_model
from hercules_core.reduction import reduce_hierarchy
from tests import dash_client
from devkit.factories import make_hierarchy, run_in_state
from tests.test_app_logic import _start, data_url

SECRET = "root:x:0:0:"  # the first line of /etc/passwd


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "model-cache"))


def _csv(n: int = 30) -> str:
    return "id,text\n" + "\n".join(f"{i},words {i} about topic {i % 4}" for i in range(n))


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "status.lock"}


@pytest.fixture
def app_client(tmp_path):
    from app import create_app

    runs = tmp_path / "runs"
    app = create_app(runs, include_test_models=True)
    client = app.server.test_client()
    cbs = dash_client.callbacks(lambda path: client.get(path).get_json())
    return app, client, cbs, runs


def _post(client, cb, values):
    return client.post("/_dash-update-component", json=cb.body(values))


# ----------------------------------------------------------------------------- 1. arbitrary file read
def test_preview_reads_only_the_upload_the_server_recorded(app_client):
    """A forged descriptor (absolute path, '..', a made-up id) never makes the preview read a file."""
    _, client, cbs, runs = app_client
    desc = uploads.stage(runs, ["notes.txt"], [data_url(b"first line\nsecond line\n")])
    preview = dash_client.find(cbs, "data-preview.rowData")
    forged = [{"upload_id": "0" * 32, "kind": "txt", "files": ["/etc/passwd"], "names": ["x.txt"]},
              {"upload_id": desc["upload_id"], "kind": "txt", "files": ["/etc/passwd"], "names": ["x.txt"]},
              {"upload_id": desc["upload_id"], "kind": "table", "files": ["../../../../../../etc/passwd"],
               "names": ["x.csv"]},
              {"upload_id": desc["upload_id"], "kind": "txt", "files": ["/etc/passwd"], "txt_mode": "file",
               "names": ["x.txt"]}]
    for store in forged:
        for mode in ("line", "file"):
            r = _post(client, preview, [store, mode])
            assert r.status_code in (200, 204), r.status_code
            assert SECRET not in r.get_data(as_text=True), store
    # the genuine upload still previews (by its id alone)
    r = _post(client, preview, [{"upload_id": desc["upload_id"]}, "line"])
    assert r.status_code == 200 and "second line" in r.get_data(as_text=True)


def test_upload_store_holds_only_the_opaque_id(app_client):
    _, client, cbs, runs = app_client
    upload = dash_client.find(cbs, "data-upload-store.data")
    headers = {"X-Hercules-Upload": "1"}
    blob = _csv().encode()
    uid = client.post("/upload", json={"purpose": "data", "names": ["mine.csv"], "sizes": [len(blob)]},
                      headers=headers).get_json()["upload_id"]
    assert client.post(f"/upload/{uid}/chunk?file=0&offset=0", data=blob, headers=headers).status_code == 200
    r = _post(client, upload, [{"upload_id": uid}])
    assert r.status_code == 200
    store = r.get_json()["response"]["data-upload-store"]["data"]
    assert list(store) == ["upload_id"] and runstore.valid_id(store["upload_id"])
    assert "f00000" not in r.get_data(as_text=True) and str(runs) not in r.get_data(as_text=True)


def test_descriptor_files_are_checked_inside_the_upload_folder(tmp_path):
    desc = uploads.stage(tmp_path, ["a.txt"], [data_url(b"text")])
    record = runstore.upload_dir(tmp_path, desc["upload_id"]) / "upload.json"
    runstore.write_json_atomic(record, dict(desc, files=["../../../etc/passwd"]))
    with pytest.raises(uploads.InputError, match="damaged"):
        uploads.load_descriptor(tmp_path, {"upload_id": desc["upload_id"]})
    for bad in ("/etc/passwd", "..", "a/../../b", "", "x\x00y", None, 5):
        with pytest.raises(ValueError):
            runstore.inside(tmp_path, bad)
    assert runstore.inside(tmp_path, "a", "b.txt") == tmp_path.resolve() / "a" / "b.txt"


# ----------------------------------------------------------------------------- 2. runs started by others
@pytest.fixture
def finished_and_imported(tmp_path):
    done_id = _start(tmp_path, _csv(), text_column="text", id_column="id")
    assert job.run(tmp_path, done_id)["state"] == "done"
    blob = (tmp_path / done_id / "model.json").read_bytes()
    imported_id, _ = page_runs.import_model(tmp_path, "model.json", data_url(blob))
    return tmp_path, done_id, imported_id


def test_a_forged_start_never_touches_a_finished_or_imported_run(finished_and_imported):
    runs, done_id, imported_id = finished_and_imported
    ctx = AppContext(runs_dir=runs)
    before = {rid: _hashes(runs / rid) for rid in (done_id, imported_id)}
    for rid in (done_id, imported_id):
        for active in ({"run_id": rid}, {"run_id": rid, "token": "x" * 43}, {"run_id": rid, "token": None}):
            with pytest.raises(PreventUpdate):
                shell.run_in_background(ctx, lambda *_: None, active)
    assert {rid: _hashes(runs / rid) for rid in (done_id, imported_id)} == before
    # job.run itself (the pipeline's entry) leaves finished and imported runs alone as well
    for rid in (done_id, imported_id):
        assert job.run(runs, rid)["state"] == "done"
    assert {rid: _hashes(runs / rid) for rid in (done_id, imported_id)} == before


def test_a_run_starts_once_only_for_the_page_that_created_it(tmp_path):
    run_id = _start(tmp_path, _csv(), text_column="text", id_column="id")
    rdir = runstore.run_dir(tmp_path, run_id)
    token = runstore.issue_token(rdir)
    ctx = AppContext(runs_dir=tmp_path)
    with pytest.raises(PreventUpdate):  # another session knows the id but not the token
        shell.run_in_background(ctx, lambda *_: None, {"run_id": run_id, "token": "guess"})
    assert runstore.read_status(rdir)["state"] == "queued"
    out = shell.run_in_background(ctx, lambda *_: None, {"run_id": run_id, "token": token})
    assert out["state"] == "done"
    before = _hashes(rdir)
    with pytest.raises(PreventUpdate):  # a replay of the same page's store does nothing
        shell.run_in_background(ctx, lambda *_: None, {"run_id": run_id, "token": token})
    assert _hashes(rdir) == before
    assert token not in (rdir / "status.json").read_text()


def test_only_the_creating_page_can_cancel(app_client):
    _, client, cbs, runs = app_client
    run_id = _start(runs, _csv(), text_column="text", id_column="id")
    rdir = runstore.run_dir(runs, run_id)
    token = runstore.issue_token(rdir)
    cancel = next(c for c in cbs if "job-stage.children@" in c.output and c.args()[0] == ("job-cancel", "n_clicks"))
    r = _post(client, cancel, [1, {"run_id": run_id, "token": "wrong"}])
    assert r.status_code == 204 and runstore.read_status(rdir)["state"] == "queued"
    r = _post(client, cancel, [1, {"run_id": run_id, "token": token}])
    assert r.status_code == 200 and runstore.read_status(rdir)["state"] == "cancelled"


# ----------------------------------------------------------------------------- 5. image route
def test_image_route_serves_only_the_runs_own_images(app_client):
    app, client, _, runs = app_client
    other = runs / runstore.new_id()
    run_in_state(other, runstore.DONE, secret="other run's status")
    rid = runstore.new_id()
    rdir = runs / rid
    (rdir / "images").mkdir(parents=True)
    png = rdir / "images" / "a.png"
    from PIL import Image
    Image.new("RGB", (4, 4)).save(png)
    (rdir / "images" / "link.png").symlink_to("/etc/passwd")
    h = make_hierarchy(ks=(3, 2))
    h.dataset.modality = "image"
    h.dataset.image_paths = [str(png), str(other / "status.json"), str(runs / ".cache" / "background" / "cache.db"),
                             "/etc/passwd", str(rdir / "images" / "link.png"), str(rdir / "status.json")] * 10
    h.dataset.texts = None
    reduce_hierarchy(h, 2, 0)
    save_model(h, rdir / "model.json")
    run_in_state(rdir, runstore.DONE)
    assert client.get(f"/files/{rid}/image/0").status_code == 200
    for i in range(1, 6):
        r = client.get(f"/files/{rid}/image/{i}")
        assert r.status_code == 404, (i, h.dataset.image_paths[i])
        assert b"root:" not in r.data and b"other run" not in r.data
    # the pane links only what the route serves: others get a note, not a broken image
    from dash import html

    from callbacks import pane
    em = app.server.config["HERCULES"].model(rid)
    assert isinstance(pane._image(em, rid, 0, "thumb"), html.Img)
    assert all(not isinstance(pane._image(em, rid, i, "thumb"), html.Img) for i in range(1, 6))


# ----------------------------------------------------------------------------- 4/6. refusing runs, leaks
def test_explorer_refuses_runs_that_are_not_done_and_names_no_server_path(tmp_path):
    ctx = AppContext(runs_dir=tmp_path)
    rid = runstore.new_id()
    rdir = tmp_path / rid
    h = make_hierarchy(ks=(4, 2))
    reduce_hierarchy(h, 2, 0)
    save_model(h, rdir / "model.json")  # the model was written, then memberships.csv failed
    run_in_state(rdir, runstore.FAILED, error="The run could not write its files: disk full.")
    with pytest.raises(ModelFileError, match="failed.*disk full"):
        ctx.model(rid)
    from callbacks.page_explore import controls
    assert "disk full" in controls(ctx, rid)["error"]
    rid = runstore.new_id()  # a done run (a failed one stays failed) whose model.json is not one
    rdir = tmp_path / rid
    run_in_state(rdir, runstore.DONE)
    (rdir / "model.json").write_text('{"format": "something else"}')
    err = controls(ctx, rid)["error"]
    assert str(tmp_path) not in err and "model.json" in err


def test_run_errors_name_the_users_file_not_the_stored_copy(tmp_path):
    desc = uploads.stage(tmp_path, ["holiday photos.zip"], [data_url(b"PK\x03\x04 not really a zip")])
    spec = uploads.data_spec(desc)
    from callbacks import configform
    run_id = job.create_run(tmp_path, spec, configform.config_from_form({"levels_text": "2"}, "fixed"),
                            {"image_embedder": "image-features", "llm": "keywords"})
    status = job.run(tmp_path, run_id)
    assert status["state"] == "failed" and "holiday photos.zip" in status["error"], status
    assert "f00000" not in status["error"] and str(tmp_path) not in status["error"]


# ----------------------------------------------------------------------------- 7. durations
def test_cancelled_and_interrupted_runs_stop_their_clock(tmp_path, monkeypatch):
    rdir = tmp_path / runstore.new_id()
    run_in_state(rdir, runstore.RUNNING, started_ts=time.time() - 10)
    runstore.request_cancel(rdir)
    first = runstore.elapsed(runstore.read_status(rdir))
    gone = tmp_path / runstore.new_id()
    run_in_state(gone, runstore.RUNNING, started_ts=time.time() - 10, pid=2**22 + 4321, host=os.uname().nodename)
    listed = {r["run_id"]: r for r in runstore.list_runs(tmp_path)}
    assert listed[gone.name]["state"] == "interrupted" and listed[gone.name]["error"]
    later = time.time() + 3600
    monkeypatch.setattr(runstore.time, "time", lambda: later)
    assert runstore.elapsed(runstore.read_status(rdir)) == pytest.approx(first)
    assert runstore.elapsed(runstore.read_status(gone)) < 60


# ----------------------------------------------------------------------------- 10. wrong types
def test_callbacks_answer_wrong_types_without_an_error(app_client, finished_and_imported, caplog):
    """Each callback checks its inputs itself: the app's on_error backstop is never needed."""
    app, client, cbs, runs = app_client
    done_runs, done_id, _ = finished_and_imported
    app.server.config["HERCULES"].runs_dir = done_runs  # explore a real finished run
    scatter = dash_client.find(cbs, "explore-view.data..")  # the level/colour callback, not the zoom one (@…)
    for level in ("abc", {"x": 1}, [1], -5, 10**9, None):
        r = _post(client, scatter, [level, "representation", "x", 5, {"run_id": done_id}, "L1:0"])
        assert r.status_code in (200, 204), (level, r.status_code)
    start = dash_client.find(cbs, "start-msg.children")
    # ... txt mode 3, vector column [1], vectors store {"upload_id": "../x"}, then the pattern-matched fields
    values = [1, "not a dict", {"upload_id": 7}, ["x"], {"upload_id": "../x"}, {"a": 1}, 5, [1, 2], None, None, 3,
              [1], {"upload_id": "../x"}, [("bad", 1)], [("bad", 1)], 7, [("bad", 1)], [("bad", 1)]]
    r = _post(client, start, values)
    assert r.status_code in (200, 204)
    pane = dash_client.find(cbs, "explore-pane.children")
    for selection in ({"key": 5}, {"key": ["L1:0"]}, "L1:0", {"key": "L1:99999"}):
        r = _post(client, pane, [selection, {"run_id": done_id}])
        assert r.status_code == 200, selection
    assert [r.getMessage() for r in caplog.records if "callback error" in r.getMessage()] == []


# ----------------------------------------------------------------------------- 9. headers, Host
def test_security_headers_and_host_check(app_client, monkeypatch):
    from app import create_app

    _, client, _, runs = app_client
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    for host in ("localhost", "127.0.0.1:8050", "localhost:1234"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "attacker.test:8050", "127.0.0.1.nip.io"):  # DNS rebinding names
        assert client.get("/", headers={"Host": host}).status_code == 400, host
        assert client.post("/_dash-update-component", json={}, headers={"Host": host}).status_code == 400
    monkeypatch.setenv("HERCULES_ALLOWED_HOSTS", "hercules.lab.example, .corp.example")
    other = create_app(runs, include_test_models=True, host="10.1.2.3").server.test_client()
    for host, code in (("hercules.lab.example", 200), ("a.corp.example:443", 200), ("10.1.2.3:8050", 200),
                       ("evil.example", 400)):
        assert other.get("/", headers={"Host": host}).status_code == code, host


def test_no_callback_carries_a_file(app_client):
    """Files arrive in chunks over /upload: no callback takes a dcc.Upload's contents (which would put
    a whole file, as base64, into one callback request), and each upload box's staging callback is
    fed by its small "sent" store instead (data, labels, metadata, own vectors, model import, assign)."""
    from callbacks import ids

    _, _, cbs, _ = app_client
    assert not [c.output for c in cbs if any(prop == "contents" for _, prop in c.args())]
    fed = {cid for c in cbs for cid, prop in c.args() if prop == "data" and str(cid).endswith("-sent")}
    assert fed == {uploads.sent_id(u) for u in (ids.UPLOAD, ids.LABELS_UPLOAD, ids.METADATA_UPLOAD, ids.VECTORS_UPLOAD,
                                                ids.MODEL_UPLOAD, ids.ASSIGN_UPLOAD)}, fed
