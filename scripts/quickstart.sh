#!/usr/bin/env bash
# The main job on a fresh Debian machine: install dependencies, build, fetch the default
# model (SmolLM2-135M-Instruct), then compress its attention to a 50% KV budget with
# `moa compress` (calibrate -> profile -> optimise -> validate) and print the plan and its
# validation against the dense model and a uniform StreamingLLM window.
# Usage: scripts/quickstart.sh [DENSITY]     (default 0.5; outputs in ~/.cache/moa/quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
DENSITY=${1:-0.5}
# spinning OpenMP workers collapse when the machine is shared; passive costs little when idle
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
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
# validation at 512-2048 tokens: SmolLM2 retrieves to about 2K (the default would add 4096
# and 7680, doubling the time of this step)
"$BUILD/cli/moa" compress -m "$MODEL" --density "$DENSITY" -o "$OUT/plan.json" --eval-lengths 512,1024,2048
echo
echo "== the compressed model vs dense: decode after a 2048-token context =="
"$BUILD/cli/moa" bench decode -m "$MODEL" --context 2048 --tokens 32 -r 2 | tail -3
"$BUILD/cli/moa" bench decode -m "$MODEL" --context 2048 --tokens 32 -r 2 --plan "$OUT/plan.json" | tail -1
