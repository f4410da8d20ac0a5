"""Runs survive faults: real redis-server, real Celery workers, real web servers (gunicorn via serve.py),
runs started over HTTP exactly as the browser starts them (devkit/dash_http.py).

- a worker SIGKILLed mid-run: the run is shown ``interrupted`` with a message (not re-queued: Celery
  acknowledges a task when it starts), and the next run works on a new worker;
- Redis restarted mid-run and between runs: the run finishes, finished runs stay intact, the runs page
  works, new runs work once Redis is back;
- the web process restarted mid-run, and two web processes over one runs directory: the run goes on in
  the worker and is listed and explorable through the other/new web process;
- the disk full while the worker saves: ``failed`` with "disk full", no half-written model.json,
  earlier runs intact.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from callbacks import runstore
from hercules_core import load_model
from devkit import procs
from devkit.browser_support import ROOT
from devkit.dash_http import DashSession

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
if procs.REDIS is None:
    pytest.skip("redis-server is missing (scripts/setup.sh installs it)", allow_module_level=True)
pytest.importorskip("celery", reason="pip install -r requirements.txt")
pytest.importorskip("gunicorn", reason="pip install -r requirements.txt")

DATA = ROOT / "tests" / "data" / "fortune_sample.csv"
MODELS = {"text_embedder": "fake-hash", "llm": "keywords"}


def status(runs: Path, run_id: str) -> dict:
    return runstore.read_status(runs / run_id)


def wait_state(runs: Path, run_id: str, states: tuple[str, ...], timeout: float, proc=None) -> dict:
    return procs.wait_until(lambda: status(runs, run_id).get("state") in states and status(runs, run_id),
                            timeout, f"run {run_id[:8]} reaching {states}", proc)


@pytest.fixture
def stack(tmp_path):
    """redis + one worker + one web server over ``tmp_path/runs``; everything stopped afterwards."""
    runs = tmp_path / "runs"
    runs.mkdir()
    started: list[procs.Proc] = []

    class Stack:
        pass

    s = Stack()
    s.runs, s.folder, s.started = runs, tmp_path, started
    s.redis, s.redis_url = procs.redis_server(tmp_path)
    started.append(s.redis)
    s.env = procs.app_env(runs, s.redis_url)

    def worker(name: str = "w1") -> procs.Proc:
        w = procs.celery_worker(s.env, tmp_path, name)
        started.append(w)
        return w

    def web(**kw) -> tuple[procs.Proc, str]:
        p, url = procs.web_server(s.env, tmp_path, **kw)
        started.append(p)
        return p, url

    s.worker, s.web = worker, web
    yield s
    for p in reversed(started):
        p.stop()


def test_worker_killed_mid_run_is_shown_interrupted_and_the_next_run_works(stack):
    w1 = stack.worker("w1")
    _, url = stack.web()
    web = DashSession(url)
    run_id = web.start_text_run(DATA, "6,2", **MODELS)
    running = wait_state(stack.runs, run_id, ("running",), 60, w1)
    assert running["pid"] == w1.pid  # executed by the worker, not by the web server
    procs.wait_until(lambda: status(stack.runs, run_id).get("percent", 0) >= 5, 60, "the run progressing")
    w1.kill()
    t_kill = time.monotonic()
    row = procs.wait_until(lambda: "interrupted" in (r := procs.runs_row(web, run_id)) and r, 60,
                           "the runs page showing the run interrupted")
    assert time.monotonic() - t_kill < 60
    assert runstore.INTERRUPTED_MESSAGE in row
    assert not (stack.runs / run_id / "model.json").exists()

    # a new worker takes new runs; the killed run is not re-queued (the task was acknowledged at start)
    w2 = stack.worker("w2")
    run2 = web.start_text_run(DATA, "6,2", **MODELS)
    done = wait_state(stack.runs, run2, ("done", "failed"), 120, w2)
    assert done["state"] == "done" and done["pid"] == w2.pid
    assert runstore.effective_state(status(stack.runs, run_id)) == "interrupted"
    assert "done" in procs.runs_row(web, run2)


def _stale_heartbeat(rdir, monkeypatch):
    stale = time.time() - runstore.HEARTBEAT_STALE - 1
    with monkeypatch.context() as m:
        m.setattr(runstore.time, "time", lambda: stale)
        runstore.heartbeat(rdir)


def test_heartbeat_marks_a_run_of_another_machine_interrupted(tmp_path, monkeypatch):
    """Web and worker in different containers: the pid means nothing here, the heartbeat does."""
    rdir = tmp_path / runstore.new_id()
    runstore.create(rdir)
    runstore.start(rdir, pid=1, host="another-container")
    with runstore.Heartbeat(rdir, interval=0.05):
        time.sleep(0.2)
        assert runstore.read_status(rdir)["heartbeat_ts"] > time.time() - 1
        assert runstore.effective_state(runstore.read_status(rdir)) == "running"
    _stale_heartbeat(rdir, monkeypatch)
    assert runstore.effective_state(runstore.read_status(rdir)) == "interrupted"
    listed = runstore.list_runs(tmp_path)
    assert listed[0]["state"] == "interrupted" and listed[0]["error"] == runstore.INTERRUPTED_MESSAGE
    assert runstore.finish(rdir)["state"] == "interrupted"  # the lost job's late finish cannot revive it
    other = tmp_path / runstore.new_id()  # only running runs go stale
    runstore.create(other)
    runstore.start(other, pid=1, host="another-container")
    _stale_heartbeat(other, monkeypatch)
    assert runstore.effective_state(runstore.finish(other)) == "done"


def test_redis_restarted_mid_run_and_between_runs(stack):
    stack.env["HERCULES_TEST_STAGE_DELAY"] = "1.0"
    w = stack.worker()
    _, url = stack.web()
    web = DashSession(url)
    first = web.start_text_run(DATA, "6,2", **MODELS)
    assert wait_state(stack.runs, first, ("done", "failed"), 120, w)["state"] == "done"
    first_model = (stack.runs / first / "model.json").read_bytes()

    second = web.start_text_run(DATA, "6,2", **MODELS)
    wait_state(stack.runs, second, ("running",), 60, w)
    port = int(stack.redis_url.rsplit(":", 1)[1].split("/")[0])
    stack.redis.stop()  # mid-run
    assert "done" in procs.runs_row(web, first)  # the runs page works without Redis
    time.sleep(2)
    stack.redis, _ = procs.redis_server(stack.folder, port)
    stack.started.append(stack.redis)
    done = wait_state(stack.runs, second, ("done", "failed", "interrupted"), 180, w)
    assert done["state"] == "done", (done, w.tail())
    assert load_model(stack.runs / second / "model.json").n_items == 200

    stack.redis.stop()  # between runs
    stack.redis, _ = procs.redis_server(stack.folder, port)
    stack.started.append(stack.redis)
    third = procs.wait_until(lambda: _try_start(web), 60, "a run starting once Redis is back")
    assert wait_state(stack.runs, third, ("done", "failed"), 120, w)["state"] == "done", w.tail()
    assert (stack.runs / first / "model.json").read_bytes() == first_model
    for run_id in (first, second, third):
        assert "done" in procs.runs_row(web, run_id)


def _try_start(web: DashSession) -> str | None:
    try:
        return web.start_text_run(DATA, "6,2", **MODELS)
    except RuntimeError:  # the first request after the restart may meet the old connection
        return None


def test_web_restarted_mid_run_and_a_second_web_process_sees_the_run(stack):
    stack.env["HERCULES_TEST_STAGE_DELAY"] = "1.0"
    w = stack.worker()
    web1, url1 = stack.web()
    _, url2 = stack.web()  # a second replica over the same runs directory
    run_id = DashSession(url1).start_text_run(DATA, "6,2", **MODELS)
    wait_state(stack.runs, run_id, ("running",), 60, w)
    other = DashSession(url2)
    assert "running" in procs.runs_row(other, run_id) or "queued" in procs.runs_row(other, run_id)
    web1.kill()  # the web process that started the run dies mid-run
    web1b, url1b = stack.web()  # and is started again
    done = wait_state(stack.runs, run_id, ("done", "failed", "interrupted"), 180, w)
    assert done["state"] == "done" and done["pid"] == w.pid, w.tail()
    for url in (url1b, url2):
        s = DashSession(url)
        assert "done" in procs.runs_row(s, run_id)
        r = s.get(f"/files/{run_id}/download/model.json")
        assert r.status_code == 200 and r.json()["format"]
        # explorable: the explore page's scatter callback draws the run's clusters
        s.open("/explore", f"?run={run_id}")
        s.fire("explore-level.value", only="explore-scatter.figure")
        fig = s.props.get(("explore-scatter", "figure"))
        assert fig and fig["data"], url


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs (a disk that fills up) needs root")
def test_disk_full_while_the_worker_saves(stack, tmp_path):
    small = tmp_path / "small-disk"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        runs = small / "runs"
        runs.mkdir()
        stack.env.update(HERCULES_RUNS_DIR=str(runs), HERCULES_TEST_STAGE_DELAY="2.0")
        w = stack.worker()
        _, url = stack.web()
        web = DashSession(url)
        earlier = web.start_text_run(DATA, "6,2", **MODELS)
        assert wait_state(runs, earlier, ("done", "failed"), 120, w)["state"] == "done"
        earlier_files = {p.name: p.read_bytes() for p in (runs / earlier).iterdir() if p.is_file()}

        run_id = web.start_text_run(DATA, "6,2", **MODELS)
        # evaluation is the last stage before saving; the stage delay leaves 2 s to fill the disk
        procs.wait_until(lambda: status(runs, run_id).get("stage", "").startswith("Evaluation"), 120,
                         "the run reaching evaluation", w)
        _fill(small, leave=48 * 1024)
        end = wait_state(runs, run_id, ("done", "failed", "interrupted"), 120, w)
        assert end["state"] == "failed", end
        assert "disk full" in end["error"].lower() or "no space left" in end["error"].lower(), end["error"]
        assert not (runs / run_id / "model.json").exists()
        assert not list((runs / run_id).glob(".model.json*"))  # no half-written temporary file either
        assert {p.name: p.read_bytes() for p in (runs / earlier).iterdir() if p.is_file()} == earlier_files
        assert load_model(runs / earlier / "model.json").n_items == 200
        assert "failed" in procs.runs_row(web, run_id) and "done" in procs.runs_row(web, earlier)
    finally:
        for p in reversed(stack.started):
            p.stop()
        stack.started.clear()
        subprocess.run(["umount", "-l", str(small)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until only about ``leave`` bytes are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(free - leave, 0))
