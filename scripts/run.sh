#!/usr/bin/env bash
# Sets everything up, then runs HERCULES on the offline defaults (MiniLM embeddings, keyword
# summaries) over the bundled sample and prints the hierarchy. Pass your own arguments to
# `python -m hercules_core run` to override, e.g.: bash scripts/run.sh data.csv --text-column text --out out/
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$#" -eq 0 ]; then
  sample=../shared/data/fortune_dev8.csv
  [ -f "$sample" ] || sample=tests/data/fortune_sample.csv
  set -- "$sample" --text-column text --id-column id --labels-column label --levels 40,8 --out out/demo
fi
.venv/bin/python -m hercules_core run "$@"
out=out/demo
for ((i=1; i<=$#; i++)); do [ "${!i}" = "--out" ] && j=$((i+1)) && out=${!j}; done
cat "$out/hierarchy.txt"
