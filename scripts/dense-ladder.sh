#!/usr/bin/env bash
# The dense ladder (docs/results.md, "Dense ladder"): dense retrieval of the long-context
# test models on LongEval lines and single needles at growing lengths, 10 samples per
# length (one per position bin), with the time per prompt.
#
# Resumable: every (model, task, length) cell has its own results log in the work
# directory and is run with --resume, so a killed run loses at most the prompt in flight.
# Cells are run length by length (shortest first), so a partial run covers the short
# lengths of every model and task. Run it again to continue; `--report` only prints the
# tables from what is finished.
#
# Usage: scripts/dense-ladder.sh [--report] [MODEL_NAME ...]
#   MODEL_NAME: names of scripts/fetch-model.sh. Default: both Qwen models, in three phases
#   so the cheap cells come first: both models to 8K, then the 0.5B model at 16K and 32K,
#   then the 1.5B model at 16K and 32K (about 3x the 0.5B cost per prompt).
#   MOA_LADDER_DIR   work directory (default: results/dense-ladder in the repository: the
#                    per-sample logs are small and committed, so a later session on another
#                    machine resumes from them)
#   MOA_LADDER_LENGTHS  default 2048,4096,8192,16384,32000 (32000 + max-new fits 32768)
#   MOA_LADDER_SAMPLES  samples per position bin (default 1: 10 per length)
#   MOA_LADDER_TASKS    default "lines needle"
#   MOA_LADDER_STOP     default 0.2: once a (model, task) scores below this at a finished
#                       length, its longer lengths are skipped (retrieval has collapsed; the
#                       ladder goes "as far as the dense model retrieves"); 0 runs every cell
set -euo pipefail
cd "$(dirname "$0")/.."
MOA=${MOA:-build/cli/moa}
DIR="${MOA_LADDER_DIR:-results/dense-ladder}"
LENGTHS="${MOA_LADDER_LENGTHS:-2048,4096,8192,16384,32000}"
SAMPLES="${MOA_LADDER_SAMPLES:-1}"
TASKS="${MOA_LADDER_TASKS:-lines needle}"
STOP="${MOA_LADDER_STOP:-0.2}"
MAX_NEW=48
# The dense reference keeps an f32 KV cache (the logs were begun with it, before f16 became
# the default; the log header does not record the KV type, so it must not change mid-ladder).
KV="--kv-type f32"
"$MOA" eval --help 2>&1 | grep -q -- --kv-type || KV=""
REPORT=0
if [ "${1:-}" = "--report" ]; then REPORT=1; shift; fi
MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ] && [ -z "${MOA_LADDER_LENGTHS:-}" ] && [ "$REPORT" = 0 ]; then
  MOA_LADDER_LENGTHS=2048,4096,8192 bash "$0" qwen2.5-coder-0.5b qwen2.5-coder-1.5b >/dev/null
  MOA_LADDER_LENGTHS=16384,32000 bash "$0" qwen2.5-coder-0.5b >/dev/null
  MOA_LADDER_LENGTHS=16384,32000 bash "$0" qwen2.5-coder-1.5b >/dev/null
  exec bash "$0" --report
fi
[ ${#MODELS[@]} -gt 0 ] || MODELS=(qwen2.5-coder-0.5b qwen2.5-coder-1.5b)
[ -x "$MOA" ] || { echo "dense-ladder: $MOA not built (scripts/build.sh)" >&2; exit 1; }
mkdir -p "$DIR"
source scripts/lib/dense-cells.sh

accuracy() {   # results json -> its accuracy (first length), or empty
  python3 -c 'import json,sys
r=json.load(open(sys.argv[1])); a=[c for c in r.get("lengths",[]) if c.get("accuracy") is not None]
print("%.3f"%a[0]["accuracy"] if a else "")' "$1" 2>/dev/null || true
}

collapsed() {   # model-name task length -> prints the shorter length where accuracy < STOP
  local name=$1 task=$2 len=$3 l a
  for l in "${LENS[@]}"; do
    [ "$l" -lt "$len" ] || continue
    [ -f "$DIR/$name-$task-$l.json" ] || continue
    a=$(accuracy "$DIR/$name-$task-$l.json")
    if [ -n "$a" ] && python3 -c "import sys; sys.exit(0 if float('$a') < float('$STOP') else 1)"; then
      echo "$l ($a)"; return 0
    fi
  done
  return 1
}

cell() {   # model-name path task length -> runs one cell (resumable)
  local name=$1 path=$2 task=$3 len=$4 why
  local out="$DIR/$name-$task-$len.json"
  [ "$REPORT" = 1 ] && return 0
  [ -f "$out" ] && return 0
  if why=$(collapsed "$name" "$task" "$len"); then
    echo "== dense-ladder: $name $task $len skipped: accuracy below $STOP at $why" >&2
    return 0
  fi
  # scripts/long-context.sh runs the same dense cells (seed 0, MAX_NEW, f32 KV, SAMPLES a
  # bin): a finished one is copied, not rerun, an unfinished one continued (scripts/lib)
  dense_cell_copy "$name" "$task" "$len" "$SAMPLES" "$out" && return 0
  echo "== dense-ladder: $name $task $len ($(date -u +%FT%TZ))" >&2
  "$MOA" eval longeval -m "$path" --dense --task "$task" --lengths "$len" --samples "$SAMPLES" \
    --max-new "$MAX_NEW" --seed 0 $KV -o "$out" --log "$out.log" --resume >&2
}

declare -A PATHS
for m in "${MODELS[@]}"; do PATHS[$m]=$(bash scripts/fetch-model.sh "$m"); done
IFS=, read -r -a LENS <<< "$LENGTHS"
for len in "${LENS[@]}"; do
  for m in "${MODELS[@]}"; do
    for t in $TASKS; do cell "$m" "${PATHS[$m]}" "$t" "$len"; done
  done
done

# Report: accuracy and seconds per prompt for every finished or partial cell.
echo "| model | task | length | samples | accuracy | s/prompt (mean) |"
echo "|---|---|---:|---:|---:|---:|"
for m in "${MODELS[@]}"; do
  for t in $TASKS; do
    for len in "${LENS[@]}"; do
      log="$DIR/$m-$t-$len.json.log"
      [ -f "$log" ] || continue
      python3 - "$log" "$m" "$t" "$len" <<'PYEOF' || true
import json, sys
log, m, t, n = sys.argv[1:5]
rows = [json.loads(l) for l in open(log) if l.strip()][1:]   # first line: the header
rows = [r for r in rows if "correct" in r]
if rows:
    acc = sum(1 for r in rows if r["correct"]) / len(rows)
    sec = sum(r.get("seconds", 0) for r in rows) / len(rows)
    print("| %s | %s | %s | %d | %.2f | %.1f |" % (m, t, n, len(rows), acc, sec))
PYEOF
    done
  done
done
