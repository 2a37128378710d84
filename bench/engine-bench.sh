#!/usr/bin/env bash
# Engine benchmarks recorded in docs/benchmarks.md ("Engine"): prefill and decode tok/s at
# several contexts (dense), batched decode under a KV budget (dense vs uniform vs a plan),
# and the profiler's forward+backward rate. Usage: bench/engine-bench.sh [PLAN.json]
set -euo pipefail
cd "$(dirname "$0")/.."
MOA=${MOA:-build/cli/moa}
MODEL=${MOA_MODEL:-$(bash scripts/fetch-model.sh)}
PLAN=${1:-}
echo "## $(date -u +%F) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$MOA" bench prefill -m "$MODEL" --context 128,512,1024,2048,4096,8192 -r 3
echo
"$MOA" bench decode -m "$MODEL" --context 128,1024,2048,4096,7900 --tokens 32 -r 3
echo
for a in "" "--uniform 0.5" "--uniform 0.25" ${PLAN:+"--plan $PLAN"}; do
  # shellcheck disable=SC2086
  "$MOA" bench decode -m "$MODEL" --context 2048 --tokens 16 -r 3 --warmup 1 --kv-budget 200000000 $a
  echo
done
"$MOA" bench profile -m "$MODEL" --context 1024,2048,4096 -r 2
