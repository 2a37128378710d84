#!/usr/bin/env bash
# The main job on a fresh Debian machine: install dependencies, build, fetch the default
# model (SmolLM2-135M-Instruct), then compress its attention to a 50% KV budget with
# `moa compress` (calibrate -> profile -> optimise -> validate) and print the plan and its
# validation against the dense model and a uniform StreamingLLM window.
# Usage: scripts/quickstart.sh [DENSITY]     (default 0.5; outputs in ~/.cache/moa/quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
DENSITY=${1:-0.5}
bash scripts/setup-deps.sh
BUILD=$(bash scripts/build.sh)
MODEL=$(bash scripts/fetch-model.sh)
OUT="${MOA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/moa}/quickstart"
mkdir -p "$OUT"
"$BUILD/cli/moa" info "$MODEL" | sed -n '4,17p'
echo
"$BUILD/cli/moa" generate -m "$MODEL" -p "The capital of France is" -n 8
echo
echo "== moa compress --density $DENSITY (resumable; work directory $OUT/plan.json.work) =="
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} \
  "$BUILD/cli/moa" compress -m "$MODEL" --density "$DENSITY" -o "$OUT/plan.json"
echo
"$BUILD/cli/moa" generate -m "$MODEL" --plan "$OUT/plan.json" --chat -p "Name three primary colours." -n 48
