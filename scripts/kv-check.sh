#!/usr/bin/env bash
# The f16 KV cache against f32 on the same prompts (issue 15: "needle accuracy of the f16 cache
# equal to f32 on the test models' validation sets"), for the dense model at the dense
# ladder's cells and for the plans at scripts/long-context.sh's plan cells: both run with an
# f32 cache, seed 0, 48 new tokens, 1 sample per position bin; this script runs the same
# cells with the f16 cache (the default) and compares them sample by sample (same prompts:
# same seed and settings, checked). Resumable (`eval longeval --resume`); results under
# results/kv-check/NAME.
#
# Usage: scripts/kv-check.sh [MODEL_NAME] [TASK:LENGTH[:METHOD] ...]
#   METHOD: dense (default; reference results/dense-ladder), plan50 or plan25 (reference
#           MOA_LC_DIR/NAME/cells/TASK-LENGTH-METHOD.json, plan MOA_LC_DIR/NAME/plan-TAG.json)
#   default: qwen2.5-coder-0.5b needle:2048 needle:4096 lines:2048
#   MOA         the moa binary (default build/cli/moa)
#   MOA_LC_DIR  the long-context directory of the plan cells (default results/long-context-v2)
# Prints one row per cell: f32 and f16 accuracy, and the samples whose correctness differs.
set -euo pipefail
cd "$(dirname "$0")/.."
MOA=${MOA:-build/cli/moa}
NAME=${1:-qwen2.5-coder-0.5b}
shift || true
CELLS=("$@")
[ ${#CELLS[@]} -gt 0 ] || CELLS=(needle:2048 needle:4096 lines:2048)
[ -x "$MOA" ] || { echo "kv-check: $MOA not built (scripts/build.sh)" >&2; exit 1; }
MODEL=$(bash scripts/fetch-model.sh "$NAME")
LADDER=results/dense-ladder
LC="${MOA_LC_DIR:-results/long-context-v2}/$NAME"
DIR=results/kv-check/$NAME
mkdir -p "$DIR"

echo "| task | length | method | f32 | f16 | samples that differ |"
echo "|---|---:|---|---:|---:|---|"
for c in "${CELLS[@]}"; do
  IFS=: read -r task len method <<< "$c"
  method=${method:-dense}
  case $method in
    dense) ref="$LADDER/$NAME-$task-$len.json" args=(--dense) out="$DIR/$task-$len-f16.json"
           hint="scripts/dense-ladder.sh $NAME" ;;
    plan50|plan25) ref="$LC/cells/$task-$len-$method.json" args=(--plan "$LC/plan-${method#plan}.json")
           out="$DIR/$task-$len-$method-f16.json" hint="scripts/long-context.sh $NAME" ;;
    *) echo "kv-check: $c: method '$method' (expected dense, plan50 or plan25)" >&2; exit 2 ;;
  esac
  if [ ! -f "$ref" ]; then
    echo "kv-check: $ref not found (run $hint first); skipped" >&2
    continue
  fi
  if [ "$method" != dense ] && [ "$(sha256sum < "${args[1]}" | cut -c1-64)" != \
       "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["settings"]["model"]["attention"]["sha256"])' "$ref")" ]; then
    echo "kv-check: $ref was made with another ${args[1]}; skipped" >&2
    continue
  fi
  if [ ! -f "$out" ]; then
    echo "== kv-check: $NAME $task $len $method f16 ($(date -u +%FT%TZ))" >&2
    "$MOA" eval longeval -m "$MODEL" "${args[@]}" --task "$task" --lengths "$len" --samples 1 \
      --max-new 48 --seed 0 --kv-type f16 --label "$method-f16" -o "$out" --log "$out.log" --resume >&2
  fi
  python3 - "$ref.log" "$out.log" "$task" "$len" "$method" <<'EOF'
import json, sys
def samples(path):
    rows = {}
    with open(path) as f:
        head = json.loads(f.readline())
        for line in f:
            r = json.loads(line)
            rows[(r["bin"], r["k"])] = r
    return head, rows
h32, a = samples(sys.argv[1])
h16, b = samples(sys.argv[2])
keys = sorted(set(a) & set(b))
for k in keys:   # the same prompts: same seed and prompt length per sample
    if a[k]["seed"] != b[k]["seed"] or a[k]["prompt_tokens"] != b[k]["prompt_tokens"]:
        sys.exit("kv-check: sample %s differs in its prompt between %s and %s" % (k, sys.argv[1], sys.argv[2]))
acc = lambda rows: "%d/%d" % (sum(rows[k]["correct"] for k in keys), len(keys))
diff = [("bin %d: f32 %d, f16 %d" % (k[0], a[k]["correct"], b[k]["correct"])) for k in keys
        if a[k]["correct"] != b[k]["correct"]]
print("| %s | %s | %s | %s | %s | %s |" % (sys.argv[3], sys.argv[4], sys.argv[5], acc(a), acc(b), "; ".join(diff) or "none"))
EOF
done
