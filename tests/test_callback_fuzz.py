"""A fuzzer that keeps issue 7 closed: every server callback of the real app, posted tampered values.

The app runs in a subprocess (``app.py`` on a free port) over a runs folder holding a finished run, an
imported run and a staged upload, each with its own marker text in its items. For every callback
listed by ``/_dash-dependencies``, hypothesis generates values for its inputs and states: upload
descriptors and run ids pointing outside the data (absolute paths, ``..``, ``/dev/zero``, other runs'
ids), wrong types, huge strings. Each answer is checked:

- no content of a file outside what the request names: another run's or upload's marker, a secret
  file next to the runs folder, ``/etc/passwd``, the project's source, the server's runs path;
- no 5xx (a tampered value gets no update or a message);
- afterwards, no file of the finished or imported run has changed, and the server's memory stayed
  bounded (the PSS of the server and its children, sampled throughout: see browser_support.tree_memory).

``HERCULES_FUZZ_REQUESTS`` sets the number of requests (default 2,200; CI needs >= 2,000).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from callbacks import configform, job, page_runs, runstore, search_index, uploads
from devkit import browser_support as bs
from tests import dash_client
from tests.test_app_logic import data_url

pytestmark = [pytest.mark.timeout(900)]

N_REQUESTS = int(os.environ.get("HERCULES_FUZZ_REQUESTS", "2200"))
BACKGROUND_EXAMPLES = 12  # each post to the background run callback starts a worker process
MEMORY_BUDGET = 300 * 1024**2
NEVER = {"/etc/passwd": "root:x:0:0:", "source": "def _check_zip_budget("}


def _rows(marker: str, n: int = 36) -> str:
    topics = ("cats dogs", "stock market", "rain snow")
    return "id,text\n" + "".join(f"{i},{marker} item {i} on {topics[i % 3]}\n" for i in range(n))


def _hashes(folder: Path) -> dict[str, str]:
    """Every file of a run but its lock and the items' search index, which opening the run in the
    explorer builds beside the model (callbacks/search_index.py, also as a temporary file)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "status.lock"
            and not p.name.lstrip(".").startswith(search_index.FILE_NAME)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    runs = base / "runs"
    runs.mkdir()
    secret = base / "secret.csv"  # a readable table next to the runs folder
    secret.write_text("id,text\n1,SECRETMARKOUTSIDE the runs folder\n")
    cfg = configform.config_from_form({"levels_text": "4,2"}, "fixed")
    models = {"text_embedder": "fake-hash", "llm": "keywords"}
    made = {}
    for name, marker in (("finished", "FINMARK"), ("imported", "IMPMARK")):
        desc = uploads.stage(runs, [f"{name}.csv"], [data_url(_rows(marker).encode())])
        run_id = job.create_run(runs, uploads.data_spec(desc, what="text", text_column="text", id_column="id"),
                                cfg, models)
        assert job.run(runs, run_id)["state"] == "done"
        made[name] = (run_id, desc["upload_id"], marker)
    # the imported run: its model JSON uploaded on the runs page; the run it came from is removed
    src_id, src_upload, _ = made["imported"]
    imported_id, _ = page_runs.import_model(runs, "model.json", data_url((runs / src_id / "model.json").read_bytes()))
    import shutil
    shutil.rmtree(runs / src_id)
    shutil.rmtree(runstore.upload_dir(runs, src_upload))
    upload = uploads.stage(runs, ["notes.txt"], [data_url(b"UPLMARK first\nUPLMARK second\n")])
    fin_id, fin_upload, _ = made["finished"]
    owners = {  # marker -> the ids whose naming makes it legitimate in an answer
        "FINMARK": {fin_id, fin_upload}, "IMPMARK": {imported_id}, "UPLMARK": {upload["upload_id"]},
        "SECRETMARKOUTSIDE": set(),
    }
    ids = {"finished": fin_id, "finished_upload": fin_upload, "imported": imported_id,
           "upload": upload["upload_id"]}
    hashes = {rid: _hashes(runs / rid) for rid in (fin_id, imported_id)}
    srv = bs.AppServer(runs, stage_delay=0)
    try:
        yield {"runs": runs, "secret": secret, "owners": owners, "ids": ids, "hashes": hashes, "server": srv}
    finally:
        srv.stop()


def value_strategies(world) -> dict[str, st.SearchStrategy]:
    ids = world["ids"]
    runs = world["runs"]
    fin = ids["finished"]
    paths = ["/etc/passwd", "../../../../../../etc/passwd", "/dev/zero", "/proc/self/environ", str(world["secret"]),
             "../../../secret.csv", "..", f"../../{fin}/status.json", f"../../{fin}/memberships.csv",
             f"../../{fin}/hierarchy.txt", "../../.cache/background/cache.db", str(runs / fin / "memberships.csv"),
             "f00000.csv", "f00000.txt", "upload.json", "", ".", "/", "C:\\x",
             str(Path(__file__).resolve().parents[1] / "hercules_core" / "data.py")]
    some_ids = list(ids.values()) + ["0" * 32, "../" + fin, fin.upper(), fin + "/..", f"{fin}/../{ids['upload']}",
                                     "/dev/zero", "f" * 33, ""]
    huge = st.sampled_from(["x" * 1_000_000, "é" * 200_000, "[" * 100_000, "L1:" + "9" * 50_000])
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                       st.text(max_size=30), st.sampled_from(paths), st.sampled_from(some_ids),
                       st.sampled_from(["L1:0", "L2:1", "L0:3", "L9:0", "L1:99999", "abc", "auto", "fixed", "line",
                                        "file", "text", "numeric", "sqrt", "log", "description"]))
    rare_huge = st.one_of(*([scalar] * 30), huge)
    kinds = st.sampled_from(["txt", "table", "images", "zip", "labels", 5, None])
    # the shape the page's own store once had, pointing elsewhere: the most likely way in
    forged = st.builds(lambda uid, kind, files, mode: {"upload_id": uid, "kind": kind, "files": files,
                                                       "names": [f"n{i}.csv" for i in range(len(files))],
                                                       "file": files[0], "txt_mode": mode},
                       st.sampled_from(some_ids), st.sampled_from(["txt", "txt", "table", "labels"]),
                       st.lists(st.sampled_from(paths), min_size=1, max_size=3), st.sampled_from(["line", "file"]))
    descriptor = st.fixed_dictionaries(
        {"upload_id": st.one_of(st.sampled_from(some_ids), scalar)},
        optional={"kind": kinds, "files": st.lists(st.sampled_from(paths), max_size=3),
                  "names": st.lists(st.sampled_from(paths), max_size=3), "file": st.sampled_from(paths),
                  "txt_mode": st.sampled_from(["line", "file", 7]), "columns": st.lists(scalar, max_size=3),
                  "n_rows": scalar, "token": scalar})
    run_store = st.fixed_dictionaries({"run_id": st.one_of(st.sampled_from(some_ids), scalar)},
                                      optional={"token": scalar, "key": scalar, "state": scalar,
                                                "message": rare_huge})
    click = st.fixed_dictionaries({"points": st.lists(st.fixed_dictionaries(
        {}, optional={"customdata": st.lists(scalar, max_size=3), "id": scalar, "pointNumber": scalar}), max_size=2)})
    leaf = st.one_of(scalar, scalar, descriptor, run_store, click, rare_huge)
    nested = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=8)
    return {"store": st.one_of(forged, forged, descriptor, run_store, run_store, nested),
            "any": st.one_of(nested, nested, nested, forged)}


def _pattern_ids(ident: dict, draw) -> list[dict]:
    wild = [k for k, v in ident.items() if isinstance(v, list)]
    names = [f.name for f in configform.FIELDS][:6] + ["levels_text", "llm", "text_embedder", "L1:0", "../x"]
    out = []
    for _ in range(draw(st.integers(0, 3))):
        cid = {k: v for k, v in ident.items() if not isinstance(v, list)}
        for k in wild:
            cid[k] = draw(st.sampled_from(names))
        out.append(cid)
    return out


def _values(cb: dash_client.Callback, draw, strategies) -> list:
    concrete: dict[str, list] = {}
    values = []
    for ident, prop in cb.args():
        kind = dash_client.is_pattern(ident)
        strategy = strategies["store"] if prop == "data" else strategies["any"]
        if kind in ("ALL", "ALLSMALLER", "MATCH"):
            key = json.dumps(ident, sort_keys=True)
            if key not in concrete:
                concrete[key] = _pattern_ids(ident, draw) or ([] if kind != "MATCH" else
                                                              [{**ident, "key": "L1:0"}])
            cids = concrete[key]
            if kind == "MATCH":
                cid = cids[0] if cids else {**{k: v for k, v in ident.items() if not isinstance(v, list)},
                                            "key": "L1:0"}
                values.append((cid, draw(strategy)))
            else:
                values.append([(cid, draw(strategy)) for cid in cids])
        else:
            values.append(draw(strategy))
    return values


class Monitor(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc, self.peak, self.stop_flag = psutil.Process(pid), 0, threading.Event()

    def rss(self) -> int:
        return bs.tree_memory(self.proc)

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.05)


def test_every_callback_survives_tampered_input(world):
    srv = world["server"]
    session = requests.Session()
    cbs = [c for c in dash_client.callbacks(lambda path: session.get(srv.url + path, timeout=30).json())
           if not c.dep.get("clientside_function")]  # those run in the browser; the server has no handler
    assert len(cbs) >= 20, [c.output for c in cbs]
    strategies = value_strategies(world)
    never = dict(NEVER, runs_path=str(world["runs"]))
    per_cb = math.ceil((N_REQUESTS - BACKGROUND_EXAMPLES) / max(len([c for c in cbs if not c.background]), 1))
    stats = {"requests": 0, "by_status": {}, "leaks": [], "errors": []}
    monitor = Monitor(srv.proc.pid)
    # warm up: open the finished run's explorer once, so the model cache is part of the baseline
    session.get(f"{srv.url}/explore?run={world['ids']['finished']}", timeout=60)
    baseline = monitor.rss()
    monitor.start()

    def post(cb, values):
        body = json.dumps(cb.body(values))
        r = session.post(srv.url + "/_dash-update-component", data=body, timeout=120,
                         headers={"Content-Type": "application/json"})
        stats["requests"] += 1
        stats["by_status"][r.status_code] = stats["by_status"].get(r.status_code, 0) + 1
        if r.status_code >= 500:
            stats["errors"].append((cb.output, r.status_code, body[:300]))
        text = r.text.lower()
        for marker, owners in world["owners"].items():
            if marker.lower() in text and not any(o in body for o in owners):
                stats["leaks"].append((cb.output, marker, body[:300]))
        for name, marker in never.items():
            if marker.lower() in text:
                stats["leaks"].append((cb.output, name, body[:300]))

    t0 = time.monotonic()
    for cb in cbs:
        examples = BACKGROUND_EXAMPLES if cb.background else per_cb

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def fuzz(data):
            post(cb, _values(cb, data.draw, strategies))

        fuzz()
    elapsed = time.monotonic() - t0
    monitor.stop_flag.set()
    monitor.join()
    growth = monitor.peak - baseline
    print(f"\nfuzz: {stats['requests']} requests to {len(cbs)} callbacks in {elapsed:.0f} s; statuses "
          f"{dict(sorted(stats['by_status'].items()))}; server memory (PSS) peak {growth / 1024**2:.0f} MB above baseline "
          f"({baseline / 1024**2:.0f} MB); load {os.getloadavg()[0]:.1f}")
    assert stats["leaks"] == [], (sorted({e[:2] for e in stats["leaks"]}), stats["leaks"][:3])
    assert stats["errors"] == [], (sorted({e[0] for e in stats["errors"]}), stats["errors"][:3])
    # the app's on_error backstop turned no exception of one of our callbacks into "no update":
    # only Dash's own page router (a tampered pathname) may need it
    srv.log.flush()
    caught = [ln for ln in Path(srv.log.name).read_text(errors="replace").splitlines()
              if "callback error:" in ln and "_pages_" not in ln]
    assert caught == [], caught[:5]
    assert stats["requests"] >= min(N_REQUESTS, 2000)
    assert growth <= MEMORY_BUDGET, f"server memory grew by {growth / 1024**2:.0f} MB"
    assert srv.proc.poll() is None
    # no finished or imported run changed (give a started background worker time to finish first)
    time.sleep(1.0)
    runs = world["runs"]
    for rid, before in world["hashes"].items():
        assert _hashes(runs / rid) == before, rid
