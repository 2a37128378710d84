#!/usr/bin/env bash
# The main job on a fresh Debian machine: install dependencies, build, fetch the default
# model (SmolLM2-135M-Instruct), and run it. Usage: scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
BUILD=$(bash scripts/build.sh)
MODEL=$(bash scripts/fetch-model.sh)
"$BUILD/cli/moa" info "$MODEL" | sed -n '1,16p'
echo
echo "== moa generate (dense) =="
"$BUILD/cli/moa" generate -m "$MODEL" -p "The capital of France is" -n 8
"$BUILD/cli/moa" generate -m "$MODEL" --chat -p "Name three primary colours." -n 48
