#!/usr/bin/env bash
# Engine benchmarks recorded in docs/benchmarks.md ("Engine"): prefill and decode tok/s at
# several contexts (dense), batched decode under a KV budget (dense vs uniform vs a plan),
# and the profiler's forward+backward rate. Usage: bench/engine-bench.sh [PLAN.json]
# On a shared machine run with OMP_WAIT_POLICY=passive (spinning OpenMP workers collapse
# under contention); on an idle one the default is faster.
set -euo pipefail
cd "$(dirname "$0")/.."
MOA=${MOA:-build/cli/moa}
MODEL=${MOA_MODEL:-$(bash scripts/fetch-model.sh)}
PLAN=${1:-}
echo "## $(date -u +%F) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-default}"
"$MOA" bench prefill -m "$MODEL" --context 512,2048,8192 -r 2
echo
"$MOA" bench decode -m "$MODEL" --context 128,2048,7900 --tokens 32 -r 3
echo
for a in "" "--uniform 0.5" "--uniform 0.25" ${PLAN:+"--plan $PLAN"}; do
  # shellcheck disable=SC2086
  "$MOA" bench decode -m "$MODEL" --context 2048 --tokens 16 -r 3 --warmup 1 --kv-budget 200000000 $a
  echo
done
"$MOA" bench prefill -m "$MODEL" --context 8192 -r 1 --uniform 0.25
echo
"$MOA" bench profile -m "$MODEL" --context 1024,2048 -r 1
