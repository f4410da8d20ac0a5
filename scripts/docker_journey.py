"""The HTTP journey of scripts/docker-check.sh against a running compose stack (no browser needed):

1. without the token every page, callback and download answers 401;
2. upload a CSV, run it with the image's offline models (MiniLM + SmolLM2) on a worker container,
   wait until the runs page says done (or finished with warnings), check the run was executed by a worker container;
3. download model.json and memberships.csv, load the model with hercules_core.load_model;
4. start a second run, SIGKILL the worker container mid-run, and check the runs page shows the run
   interrupted with its message within 60 s (the killed task is not re-queued).

    python scripts/docker_journey.py --url http://127.0.0.1:PORT --project NAME   (token: HERCULES_PASSWORD)
Prints one line per step; exits 1 with the reason on the first failure.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from callbacks import outcome, runstore  # noqa: E402
from hercules_core import load_model  # noqa: E402
from devkit.dash_http import DashSession, wait_for  # noqa: E402
from devkit.procs import runs_row  # noqa: E402

DATA = ROOT / "tests" / "data" / "fortune_sample.csv"
MODELS = {"text_embedder": "minilm", "llm": "smollm2"}


def step(msg: str) -> None:
    print(f"docker-journey: {msg}", flush=True)


def compose(project: str, *args: str) -> str:
    return subprocess.run(["docker-compose", "-p", project, *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def container_status(project: str, run_id: str) -> dict:
    out = compose(project, "exec", "-T", "web", "cat", f"/data/runs/{run_id}/status.json")
    return json.loads(out)


def worker_hostnames(project: str) -> dict[str, str]:
    """hostname -> container id of the stack's worker containers."""
    ids = compose(project, "ps", "-q", "worker").split()
    out = {}
    for cid in ids:
        host = subprocess.run(["docker", "inspect", "-f", "{{.Config.Hostname}}", cid], check=True,
                              capture_output=True, text=True).stdout.strip()
        out[host] = cid
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--timeout", type=float, default=900, help="seconds for the full run")
    args = p.parse_args()
    token = os.environ["HERCULES_PASSWORD"]

    # 1. no token, no access
    for path in ("/", "/_dash-layout", "/runs", f"/files/{runstore.new_id()}/download/model.json"):
        r = requests.get(args.url + path, timeout=30)
        assert r.status_code == 401, f"{path} answered {r.status_code} without the token"
        assert token not in r.text
    r = requests.post(args.url + "/_dash-update-component", json={}, timeout=30)
    assert r.status_code == 401, f"a callback answered {r.status_code} without the token"
    assert requests.get(args.url + "/_dash-layout", headers={"Authorization": "Bearer wrong"},
                        timeout=30).status_code == 401
    step("401 without the token (pages, callbacks, downloads)")

    # 2. a real run on a worker container
    web = DashSession(args.url, token=token, timeout=120)
    t0 = time.monotonic()
    run_id = web.start_text_run(DATA, "4,2", **MODELS)
    step(f"started run {run_id} (MiniLM + SmolLM2, levels 4,2)")
    # the runs page's badge: "done", or "finished with warnings" when the tiny model fell back for more
    # than 10% of the clusters (on 200 texts, 6 clusters, one fallback is enough): both have results
    finished = [f'"{outcome.LABEL[k]}"' for k in (runstore.DONE, outcome.WARNINGS)]
    ended = finished + [f'"{outcome.LABEL[k]}"' for k in (runstore.FAILED, runstore.INTERRUPTED)]
    row = wait_for(lambda: (r := runs_row(web, run_id)) and any(s in r for s in ended) and r,
                   args.timeout, "the run finishing", interval=3)
    assert any(s in row for s in finished), f"the run did not finish: {row[:600]}"
    status = container_status(args.project, run_id)
    workers = worker_hostnames(args.project)
    assert status.get("host") in workers, f"run executed on {status.get('host')}, workers are {list(workers)}"
    step(f"run done in {time.monotonic() - t0:.0f} s on worker container {status['host']}")

    # 3. downloads, and the model loads
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("model.json", "memberships.csv"):
            r = web.get(f"/files/{run_id}/download/{kind}")
            assert r.status_code == 200, f"download {kind}: HTTP {r.status_code}"
            (Path(tmp) / kind).write_bytes(r.content)
        h = load_model(Path(tmp) / "model.json")
        rows = list(csv.DictReader(io.StringIO((Path(tmp) / "memberships.csv").read_text())))
    assert h.n_items == 200 and len(rows) == 200 and len(h.levels) == 3, (h.n_items, len(rows), len(h.levels))
    titles = [c.title + (" (fallback)" if c.fallback else "") for c in h.clusters(1)]
    step(f"downloaded model.json ({h.n_items} items, levels {[len(lv) for lv in h.levels[1:]]}; "
         f"titles {titles}) and memberships.csv ({len(rows)} rows)")

    # 4. the worker container is killed mid-run
    run2 = web.start_text_run(DATA, "8,3", **MODELS)
    wait_for(lambda: container_status(args.project, run2).get("state") == "running"
             and container_status(args.project, run2).get("percent", 0) >= 5, 300, "the second run running", 2)
    host = container_status(args.project, run2)["host"]
    cid = worker_hostnames(args.project)[host]
    subprocess.run(["docker", "kill", "--signal", "KILL", cid], check=True, capture_output=True)
    t_kill = time.monotonic()
    row = wait_for(lambda: (r := runs_row(web, run2)) and '"interrupted"' in r and r, 90,
                   "the killed run shown interrupted", interval=3)
    waited = time.monotonic() - t_kill
    assert waited <= 60, f"the killed run was shown interrupted only after {waited:.0f} s"
    assert runstore.INTERRUPTED_MESSAGE in row, row[:600]
    step(f"worker container killed mid-run: the runs page shows the run interrupted after {waited:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, TimeoutError, RuntimeError, requests.RequestException,
            subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or ""
        print(f"docker-journey: FAILED: {type(e).__name__}: {e} {detail}".strip()[:2000], file=sys.stderr)
        sys.exit(1)
