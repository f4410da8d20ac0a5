"""Real processes for the fault tests: redis-server, Celery workers and web servers (gunicorn through
serve.py, or the development server) on free ports, each in its own process group with a log file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from devkit.browser_support import ROOT, free_port

REDIS = shutil.which("redis-server")


def wait_until(pred, timeout: float, what: str, proc: "Proc | None" = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc is not None and not proc.alive():
            break
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not happen within {timeout:.0f} s" + (f"\n{proc.tail()}" if proc else ""))


class Proc:
    """One process (and its children) started in a new session, output in ``log``."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.cmd, self.env, self.log = cmd, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing gets to clean up."""
        if self.alive():
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def redis_server(folder: Path, port: int | None = None) -> tuple[Proc, str]:
    """redis-server with append-only persistence in ``folder`` (so a restart keeps the queue)."""
    port = port or free_port()
    p = Proc([REDIS, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--appendonly", "yes",
              "--save", "", "--daemonize", "no"], dict(os.environ), folder / f"redis-{port}.log").start()

    def pong() -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    wait_until(pong, 30, "redis-server answering", p)
    return p, f"redis://127.0.0.1:{port}/0"


def app_env(runs_dir: Path, redis_url: str, stage_delay: float = 0.5, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_PASSWORD")}
    env.update(REDIS_URL=redis_url, HERCULES_TEST_MODELS="1", HERCULES_TEST_STAGE_DELAY=str(stage_delay),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", HERCULES_RUNS_DIR=str(runs_dir),
               HERCULES_CACHE_DIR=str(runs_dir.parent / "model-cache"), PYTHONPATH=str(ROOT), **extra)
    return env


def celery_worker(env: dict[str, str], folder: Path, name: str) -> Proc:
    """A Celery worker, solo pool: the run executes in the worker process itself (its pid is in status.json)."""
    log = folder / f"worker-{name}.log"
    p = Proc([sys.executable, "-m", "celery", "-A", "app:celery_app", "worker", "--loglevel=info", "--pool=solo",
              "--concurrency=1", "--without-gossip", "--without-mingle", "--without-heartbeat",
              "-n", f"{name}-{os.getpid()}@%h"], env, log).start()
    wait_until(lambda: " ready." in log.read_text(errors="replace"), 120, f"Celery worker {name} ready", p)
    return p


def web_server(env: dict[str, str], folder: Path, production: bool = True, port: int | None = None,
               workers: int = 1, threads: int = 4) -> tuple[Proc, str]:
    """serve.py (gunicorn) or app.py (development server) on 127.0.0.1; waits for /healthz."""
    port = port or free_port()
    cmd = ([sys.executable, str(ROOT / "serve.py"), "--workers", str(workers), "--threads", str(threads)]
           if production else [sys.executable, str(ROOT / "app.py")])
    p = Proc(cmd + ["--host", "127.0.0.1", "--port", str(port)], env, folder / f"web-{port}.log").start()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_until(healthy, 120, f"web server on port {port}", p)
    return p, url


def runs_row(session, run_id: str) -> str:
    """The runs page's row of ``run_id`` as text (JSON of its components), fetched through the web app;
    empty when the run is not listed."""
    session.open("/runs")
    session.fire("runs-refresh.n_clicks", only="runs-table")
    table = session.props.get(("runs-table", "children"))
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            props = node.get("props", {})
            if props.get("data-run") == run_id:
                found.append(json.dumps(node))
                return
            for v in props.values():
                walk(v)

    walk(table)
    return found[0] if found else ""
