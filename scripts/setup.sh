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
# torch is pinned first in requirements.txt so pip takes the CPU build
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
echo "setup: ok ($(.venv/bin/python --version))"
