#!/usr/bin/env bash
# Sets everything up, then starts the HERCULES web app on 127.0.0.1 (offline defaults: MiniLM
# embeddings, keyword summaries) and prints the address to open in a browser. Arguments go to
# app.py, e.g.: bash scripts/run.sh --port 8080. The command-line tool is documented in README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
