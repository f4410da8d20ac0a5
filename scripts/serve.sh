#!/usr/bin/env bash
# Sets everything up, then serves the HERCULES web app with gunicorn, the production WSGI server
# (serve.py), without Docker. Arguments go to serve.py, e.g.:
#   HERCULES_PASSWORD='team password' bash scripts/serve.sh --host 0.0.0.0 --port 8050
# Bound to anything but 127.0.0.1 it refuses to start without HERCULES_PASSWORD (or _FILE).
# Runs go to Celery workers when REDIS_URL is set (start them with: .venv/bin/celery -A app:celery_app worker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python serve.py "$@"
