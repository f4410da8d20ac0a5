#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (unit, property, integration with the real
# offline embedding model, CLI end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
