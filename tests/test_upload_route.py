"""The chunked upload route (callbacks/upload_route.py) over HTTP: create, chunks, resume, refusals,
access control, path tricks, clean-up of abandoned uploads, and server memory that does not grow
with the file."""

from __future__ import annotations

import http.client
import json
import os
import re
import time

import pytest

from callbacks import chunked, runstore, uploads
from devkit import browser_support as bs

H = {"X-Hercules-Upload": "1"}
CSV = b"id,text\n" + b"".join(b"%d,a short text number %d\n" % (i, i) for i in range(2000))


@pytest.fixture
def app(tmp_path, monkeypatch):
    from app import create_app

    for var in ("HERCULES_PASSWORD", "HERCULES_PASSWORD_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "model-cache"))
    a = create_app(tmp_path / "runs", include_test_models=True)
    return a, a.server.test_client(), tmp_path / "runs"


def create(client, names, sizes, purpose="data", headers=H):
    return client.post("/upload", json={"purpose": purpose, "names": names, "sizes": sizes}, headers=headers)


def chunk(client, uid, offset, data, file=0, headers=H):
    return client.post(f"/upload/{uid}/chunk?file={file}&offset={offset}", data=data, headers=headers,
                       content_type="application/octet-stream")


def test_a_file_sent_in_chunks_is_staged_like_before(app):
    _, client, runs = app
    r = create(client, ["tickets.csv"], [len(CSV)])
    assert r.status_code == 201, r.get_data(as_text=True)
    uid = r.get_json()["upload_id"]
    assert runstore.valid_id(uid) and r.get_json()["received"] == [0]
    at = 0
    for piece in (CSV[:1000], CSV[1000:20000], CSV[20000:]):
        r = chunk(client, uid, at, piece)
        assert r.status_code == 200, r.get_data(as_text=True)
        at = r.get_json()["received"]
    assert at == len(CSV)
    st = client.get(f"/upload/{uid}").get_json()
    assert st["received"] == [len(CSV)] and st["complete"] and not st["staged"]
    assert client.head(f"/upload/{uid}").headers["Upload-Offset"] == str(len(CSV))
    desc = uploads.stage_upload(runs, {"upload_id": uid})
    same = uploads.stage(runs, ["tickets.csv"], ["data:text/csv;base64," + __import__("base64").b64encode(CSV).decode()])
    strip = lambda d: {k: v for k, v in d.items() if k != "upload_id"}  # noqa: E731
    assert strip(desc) == strip(same) and desc["n_rows"] == 2000 and desc["names"] == ["tickets.csv"]
    assert uploads.load_descriptor(runs, {"upload_id": uid})["kind"] == "table"
    assert client.get(f"/upload/{uid}").get_json()["staged"]
    assert chunk(client, uid, len(CSV), b"x").status_code == 409  # a staged upload takes no more bytes


def test_a_cut_transfer_resumes_from_the_offset_the_server_holds(app):
    _, client, runs = app
    uid = create(client, ["a.csv"], [len(CSV)]).get_json()["upload_id"]
    assert chunk(client, uid, 0, CSV[:5000]).get_json() == {"received": 5000}
    # the client lost the answer and sends the same chunk again, or jumps ahead: refused, with the offset
    for wrong in (0, 4000, 6000):
        r = chunk(client, uid, wrong, CSV[wrong:wrong + 1000])
        assert r.status_code == 409 and r.get_json()["received"] == [5000], wrong
    assert client.get(f"/upload/{uid}").get_json()["received"] == [5000]
    with pytest.raises(uploads.InputError, match="incomplete"):
        uploads.stage_upload(runs, {"upload_id": uid})
    assert chunk(client, uid, 5000, CSV[5000:]).status_code == 200
    assert uploads.stage_upload(runs, {"upload_id": uid})["n_rows"] == 2000


def test_sizes_are_declared_and_enforced(app):
    _, client, runs = app
    r = create(client, ["huge.csv"], [uploads.MAX_UPLOAD_BYTES + 1])
    assert r.status_code == 413 and "more than the 20 GB allowed" in r.get_json()["error"]
    assert not (runs / runstore.UPLOADS).exists() or not any((runs / runstore.UPLOADS).iterdir())
    r = create(client, ["meta.json"], [uploads.MAX_METADATA_BYTES + 1], purpose="metadata")
    assert r.status_code == 413
    uid = create(client, ["a.csv"], [100]).get_json()["upload_id"]
    r = chunk(client, uid, 0, b"x" * 101)
    assert r.status_code == 413 and "larger than the 100 bytes declared" in r.get_json()["error"]
    assert client.get(f"/upload/{uid}").get_json()["received"] == [0]  # nothing of it was written
    # a model import must be a .json, a data upload a kind the app reads, before any byte is sent
    assert "not a model file" in create(client, ["t.csv"], [10], purpose="model").get_json()["error"]
    assert create(client, ["x.exe"], [10]).status_code == 400
    assert create(client, ["a.csv"], [-1]).status_code == 400
    assert create(client, ["a.csv"], [10], purpose="../etc").status_code == 400


def test_path_tricks_reach_no_file(app, tmp_path):
    _, client, runs = app
    outside = tmp_path / "runs" / "secret.txt"
    outside.write_text("secret")
    uid = create(client, ["../../secret.csv"], [4]).get_json()["upload_id"]
    assert chunk(client, uid, 0, b"1,2\n").status_code == 200
    udir = runstore.upload_dir(runs, uid)
    assert sorted(p.name for p in udir.iterdir()) == ["f00000.csv", "transfer.json"]
    for bad in ("0" * 32, "A" * 32, uid + "x", "..", "%2E%2E", "..%2F..%2Fsecret.txt"):
        r = client.get(f"/upload/{bad}")  # the last ones are other paths: not this route (the page, or 404)
        assert (r.status_code == 404 or not r.is_json) and b"received" not in r.data, bad
        assert chunk(client, bad, 0, b"x").status_code in (404, 405), bad
    for file in ("-1", "1", "../x", "1e9"):
        assert chunk(client, uid, 4, b"x", file=file).status_code == 400, file
    assert outside.read_text() == "secret"


def test_posts_need_the_upload_header_and_this_site(app):
    _, client, _ = app
    assert create(client, ["a.csv"], [10], headers={}).status_code == 403
    assert create(client, ["a.csv"], [10], headers=dict(H, Origin="http://evil.example")).status_code == 403
    assert create(client, ["a.csv"], [10], headers=dict(H, **{"Sec-Fetch-Site": "cross-site"})).status_code == 403
    uid = create(client, ["a.csv"], [10], headers=dict(H, Origin="http://localhost")).get_json()["upload_id"]
    assert chunk(client, uid, 0, b"x", headers={}).status_code == 403


def test_with_a_password_the_route_needs_the_login(tmp_path, monkeypatch):
    from app import create_app

    monkeypatch.setenv("HERCULES_PASSWORD", "correct horse")
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "model-cache"))
    client = create_app(tmp_path / "runs", include_test_models=True).server.test_client()
    assert create(client, ["a.csv"], [10]).status_code == 401
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"password": "correct horse", "csrf_token": token, "next": "/"})
    r = create(client, ["a.csv"], [10])
    assert r.status_code == 201
    uid = r.get_json()["upload_id"]
    assert create(client, ["a.csv"], [10], headers={}).status_code == 403  # logged in, but no upload header
    other = create_app(tmp_path / "runs", include_test_models=True).server.test_client()  # not logged in
    assert other.get(f"/upload/{uid}").status_code == 401
    assert chunk(other, uid, 0, b"x" * 10).status_code == 401
    assert client.get(f"/upload/{uid}").get_json()["received"] == [0]


def test_abandoned_partial_uploads_are_removed_by_age(app, monkeypatch):
    _, client, runs = app
    old = create(client, ["old.csv"], [10]).get_json()["upload_id"]
    done = uploads.stage(runs, ["d.csv"], ["data:text/csv;base64,YSxiCjEsMgo="])["upload_id"]
    day_ago = time.time() - 25 * 3600
    for uid in (old, done):
        for p in runstore.upload_dir(runs, uid).iterdir():
            os.utime(p, (day_ago, day_ago))
    fresh = create(client, ["new.csv"], [10]).get_json()["upload_id"]  # a new upload sweeps
    assert not runstore.upload_dir(runs, old).exists()
    assert runstore.upload_dir(runs, done).is_dir() and runstore.upload_dir(runs, fresh).is_dir()
    monkeypatch.setenv("HERCULES_UPLOAD_TTL_HOURS", "0")
    assert chunked.sweep(runs, now=time.time() + 1) == [fresh]


def test_server_memory_stays_flat_while_300_mb_arrive(tmp_path):
    """The real server, 300 MB in 8 MB chunks over one keep-alive connection: memory above idle stays
    far below the file's size (the target is <= 300 MB; one chunk is 8 MB)."""
    server = bs.AppServer(tmp_path / "runs", stage_delay=0)
    try:
        time.sleep(1)
        total, step = 300 * 1024**2, chunked.CHUNK_BYTES
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/upload", json.dumps({"purpose": "data", "names": ["big.csv"], "sizes": [total]}),
                     {"Content-Type": "application/json", **H})
        uid = json.loads(conn.getresponse().read())["upload_id"]
        piece = b"0123456789abcdef" * (step // 16)
        t0 = time.monotonic()
        with bs.RssWatch(server.proc.pid) as rss:
            at = 0
            while at < total:
                n = min(step, total - at)
                conn.request("POST", f"/upload/{uid}/chunk?file=0&offset={at}", piece[:n],
                             {"Content-Type": "application/octet-stream", **H})
                resp = conn.getresponse()
                body = json.loads(resp.read())
                assert resp.status == 200, body
                at = body["received"]
        seconds = time.monotonic() - t0
        conn.close()
        stored = runstore.upload_dir(server.runs_dir, uid) / "f00000.csv"
        print(f"300 MB in {seconds:.1f} s ({300 / seconds:.0f} MB/s), server memory peak "
              f"{rss.peak_above_idle / 1024**2:.0f} MB above idle")
        assert stored.stat().st_size == total
        assert rss.peak_above_idle < 100 * 1024**2
    finally:
        server.stop()
