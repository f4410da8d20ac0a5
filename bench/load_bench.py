"""Load benchmark: many concurrent users clicking in the explorer of a 20,000-item run, through the
production server (gunicorn via serve.py) and through the development server (python app.py), one
after the other on the same run, on 127.0.0.1 only.

    .venv/bin/python bench/load_bench.py [--clients 50] [--seconds 60] [--items 20000]

Each client is a thread with its own keep-alive connection that sends, back to back, the three
callbacks one click in the explorer triggers (click-to-highlight patch, sunburst patch, cluster pane
+ tree; bench/app_bench.py's requests) for a random node of a random level. Clients run in two
processes (25 threads each) so the load generator is not limited by one GIL. Reports requests/s,
p50/p99 latency and errors per server, and the ratio. Targets: 0 errors and p99 <= 500 ms through
the production server, and its throughput >= 2x the development server's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from app_bench import _callback, build_model  # noqa: E402  (the same 20k model and callbacks)

N_PROCS = 2


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_bodies(url: str, run_id: str, n: int, seed: int) -> list[dict]:
    """``n`` request bodies: the three callbacks of a click, for random nodes of every level."""
    import requests

    from callbacks.explore_model import make_key
    from hercules_core import load_model

    deps = requests.get(url + "/_dash-dependencies", timeout=60).json()
    h = load_model(ROOT / "bench" / "results" / "load_bench" / "runs" / run_id / "model.json")
    top = h.top_level
    highlight = _callback(deps, "explore-scatter.figure@", "explore-selection.data")
    sunburst = _callback(deps, "explore-sunburst.figure@", "explore-selection.data")
    pane_tree = _callback(deps, "..explore-pane.children", "explore-selection.data")
    run = {"run_id": run_id}
    view = {"level": 1, "space": "representation", "color_level": top, "size_scale": "sqrt", "items": False}
    rng = np.random.default_rng(seed)
    bodies = []
    while len(bodies) < n:
        lv = int(rng.integers(0, top + 1))
        sel = {"key": make_key(lv, int(rng.integers(len(h.levels[lv]))))}
        sel_in = {"id": "explore-selection", "property": "data", "value": sel}
        for dep, inputs, state in (
                (highlight, [sel_in], [{"id": "explore-view", "property": "data", "value": view},
                                       {"id": "explore-run", "property": "data", "value": run}]),
                (sunburst, [sel_in], [{"id": "explore-run", "property": "data", "value": run}]),
                (pane_tree, [sel_in, {"id": "explore-run", "property": "data", "value": run}], [])):
            parts = dep["output"][2:-2].split("...") if dep["output"].startswith("..") else [dep["output"]]
            outputs = [dict(zip(("id", "property"), p.rsplit(".", 1))) for p in parts]
            bodies.append({"output": dep["output"], "outputs": outputs if len(outputs) > 1 else outputs[0],
                           "inputs": inputs, "state": state, "changedPropIds": ["explore-selection.data"]})
    return bodies


def _client_proc(url: str, bodies: list[dict], threads: int, seconds: float, start_at: float, q) -> None:
    import requests

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        s = requests.Session()
        rnd = random.Random(i)
        mine, errs = [], []
        while time.time() < start_at:
            time.sleep(0.01)
        end = start_at + seconds
        while time.time() < end:
            body = bodies[rnd.randrange(len(bodies))]
            t0 = time.perf_counter()
            try:
                r = s.post(url + "/_dash-update-component", json=body, timeout=30)
                ok = r.status_code == 200
                if not ok:
                    errs.append(f"HTTP {r.status_code}")
            except Exception as e:  # a refused or dropped connection counts as an error
                ok = False
                errs.append(type(e).__name__)
            if ok:
                mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)
            errors.extend(errs)

    ts = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put((lat, errors))


def load(url: str, bodies: list[dict], clients: int, seconds: float) -> dict:
    q = mp.get_context("fork").Queue()
    start_at = time.time() + 2.0
    per = [clients // N_PROCS + (1 if i < clients % N_PROCS else 0) for i in range(N_PROCS)]
    ps = [mp.get_context("fork").Process(target=_client_proc, args=(url, bodies, n, seconds, start_at, q))
          for n in per]
    for p in ps:
        p.start()
    lat, errors = [], []
    for _ in ps:
        a, b = q.get(timeout=seconds + 120)
        lat += a
        errors += b
    for p in ps:
        p.join(30)
    lat_ms = np.array(lat) * 1000
    return {"requests": len(lat), "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
            "rps": round(len(lat) / seconds, 1),
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 1) if len(lat) else None}


def start_server(kind: str, runs_dir: Path, log: Path, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERCULES_PASSWORD", "REDIS_URL"))}
    env.update(HERCULES_RUNS_DIR=str(runs_dir), HF_HUB_OFFLINE="1", HERCULES_ACCESS_LOG="0", PYTHONPATH=str(ROOT))
    cmd = ([sys.executable, str(ROOT / "serve.py"), "--workers", str(workers), "--threads", str(threads)]
           if kind == "production" else [sys.executable, str(ROOT / "app.py")])
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd + ["--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    raise RuntimeError(f"{kind} server did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=int(os.environ.get("HERCULES_WORKERS", "2")))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("HERCULES_THREADS", "8")))
    args = ap.parse_args()
    out_dir = ROOT / "bench" / "results" / "load_bench"
    runs_dir = out_dir / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)  # only this benchmark's own model
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_id = build_model(runs_dir, args.items)
    result = {"items": args.items, "clients": args.clients, "seconds": args.seconds,
              "load_before": os.getloadavg()}
    for kind in ("production", "development"):
        proc, url = start_server(kind, runs_dir, out_dir / f"{kind}.log", args.workers, args.threads)
        try:
            bodies = request_bodies(url, run_id, 300, seed=1)
            load(url, bodies, min(args.clients, 2 * N_PROCS * args.workers), 5)  # warm-up: every worker loads the model
            r = load(url, bodies, args.clients, args.seconds)
            r["load_after"] = [round(x, 1) for x in os.getloadavg()]
            if kind == "production":
                r["server"] = f"gunicorn, {args.workers} workers x {args.threads} threads"
            else:
                r["server"] = "Flask development server (threaded)"
            result[kind] = r
            print(f"{kind:12s} {r['server']}: {r['rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                  f"{r['errors']} errors {r['error_kinds']} (load average after: {r['load_after']})", flush=True)
        finally:
            stop(proc)
    prod, dev = result["production"], result["development"]
    ratio = prod["rps"] / dev["rps"] if dev["rps"] else float("inf")
    result["throughput_ratio"] = round(ratio, 2)
    checks = {"0 errors": prod["errors"] == 0, "p99 <= 500 ms": (prod["p99_ms"] or 1e9) <= 500,
              "throughput >= 2x": ratio >= 2}
    print(f"production / development throughput: {ratio:.2f}x; targets: "
          + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in checks.items()))
    (out_dir / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
