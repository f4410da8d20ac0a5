"""The Celery path end to end: redis-server + the app with REDIS_URL + a Celery worker, one run driven
through headless Chromium. The run must be executed by the worker (its pid is in the run's status.json),
so this would fail if the app silently fell back to DiskcacheManager."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(600)]

if not os.path.exists(bs.CHROMIUM):
    pytest.skip(f"{bs.CHROMIUM} is missing (scripts/setup.sh installs it)", allow_module_level=True)
REDIS = shutil.which("redis-server")
if REDIS is None:
    pytest.skip("redis-server is missing (scripts/setup.sh installs it: apt-get install redis-server)",
                allow_module_level=True)
pytest.importorskip("celery", reason="pip install 'celery>=5' 'redis>=5' (requirements.txt)")
redis_py = pytest.importorskip("redis", reason="pip install 'redis>=5' (requirements.txt)")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")

from tests.test_browser import configure, run_and_watch, upload  # noqa: E402


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate the process group of ``proc`` (started with start_new_session), then kill it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up\n{tail}")


@pytest.fixture(scope="session")
def celery_stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("celery")
    runs_dir = base / "runs"
    runs_dir.mkdir()
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        # redis on a free port, no persistence, in the foreground so it can be terminated
        port = bs.free_port()
        rlog = open(base / "redis.log", "w")
        logs.append(rlog)
        redis_proc = subprocess.Popen([REDIS, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                       "--appendonly", "no", "--daemonize", "no", "--dir", str(base)],
                                      stdout=rlog, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(redis_proc)
        client = redis_py.Redis(host="127.0.0.1", port=port, socket_timeout=1)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis_py.RedisError:
                return False

        _wait(pong, 20, "redis-server", redis_proc, base / "redis.log")
        redis_url = f"redis://127.0.0.1:{port}/0"

        env = dict(os.environ, REDIS_URL=redis_url, HERCULES_TEST_MODELS="1", HERCULES_TEST_STAGE_DELAY="0.4",
                   HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", HERCULES_RUNS_DIR=str(runs_dir),
                   HERCULES_CACHE_DIR=str(base / "model-cache"))
        # the Celery worker: solo pool, so the task runs in the worker process itself
        wlog_path = base / "worker.log"
        wlog = open(wlog_path, "w")
        logs.append(wlog)
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "app:celery_app", "worker",
                                   "--loglevel=info", "--concurrency=1", "--pool=solo", "--without-gossip",
                                   "--without-mingle", "--without-heartbeat", "-n", f"hercules-test-{port}@%h"],
                                  cwd=bs.ROOT, env=env, stdout=wlog, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        procs.append(worker)
        _wait(lambda: " ready." in wlog_path.read_text(errors="replace"), 90, "the Celery worker", worker, wlog_path)

        # the app server, as the browser tests start theirs, with REDIS_URL in its env
        app_port = bs.free_port()
        alog_path = base / f"server-{app_port}.log"
        alog = open(alog_path, "w")
        logs.append(alog)
        app_proc = subprocess.Popen([sys.executable, str(bs.ROOT / "app.py"), "--host", "127.0.0.1",
                                     "--port", str(app_port), "--runs-dir", str(runs_dir)],
                                    cwd=bs.ROOT, env=env, stdout=alog, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        procs.append(app_proc)
        url = f"http://127.0.0.1:{app_port}"

        def answers() -> bool:
            import urllib.request

            try:
                urllib.request.urlopen(url + "/", timeout=2)
                return True
            except OSError:
                return False

        _wait(answers, 60, "the app server", app_proc, alog_path)

        class Stack:
            pass

        s = Stack()
        s.url, s.runs_dir, s.worker, s.worker_log, s.app_log = url, runs_dir, worker, wlog_path, alog_path
        yield s
    finally:
        for p in reversed(procs):
            _stop(p)
        for f in logs:
            f.close()


@pytest.fixture
def page():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=bs.CHROMIUM, args=bs.CHROMIUM_ARGS)
        context = b.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.errors = []
        bs.watch_console(pg, pg.errors)
        yield pg
        context.close()
        b.close()


def test_a_run_goes_through_celery(page, celery_stack):
    from hercules_core import load_model

    from callbacks import runstore

    upload(page, celery_stack, bs.ROOT / "tests" / "data" / "fortune_sample.csv")
    assert page.query_selector(".upload-ok"), page.inner_text("#data-upload-msg")
    configure(page, "6,2", text_embedder="fake-hash", llm="keywords")
    run_id, seen = run_and_watch(page, "celery", timeout=180)
    result = page.inner_text(".run-result") if page.query_selector(".run-result") else "(no result)"
    assert "Run finished" in result, (result, celery_stack.worker_log.read_text(errors="replace")[-3000:])
    assert seen[-1] == 100, seen

    rdir = runstore.run_dir(celery_stack.runs_dir, run_id)
    h = load_model(rdir / "model.json")
    assert h.n_items > 0 and len(h.levels) == 3
    status = runstore.read_status(rdir)
    assert status["state"] == "done"
    # executed by the Celery worker (solo pool: in the worker process), not by the app server
    assert status["pid"] == celery_stack.worker.pid, (status["pid"], celery_stack.worker.pid)
    wlog = celery_stack.worker_log.read_text(errors="replace")
    assert "succeeded" in wlog, wlog[-3000:]
    print(f"\nrun {run_id}: status.json pid={status['pid']} == celery worker pid={celery_stack.worker.pid}")
    print("\n".join(line for line in wlog.splitlines() if "Task " in line))
    assert page.errors == [], page.errors
