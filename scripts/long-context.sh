#!/usr/bin/env bash
# MoA at long context (issue 18, docs/results.md "Long context"): plans for the 32K test model
# made by `moa compress` with the long-context defaults, then validated cell by cell on
# LongEval lines, single needles and multi-key needles, dense vs uniform window vs plan, at
# 50% and 25% density, from 2K up to the model's context.
#
# Resumable pieces, so that sessions cut off at any moment continue where they stopped:
#   1. plans: `moa compress --skip-eval` at 50% then 25% in one work directory (the second
#      reuses the calibration set and the profile; compress resumes its own stages).
#   2. cells: one `moa eval longeval --resume` per (length, task, method), length by length
#      (shortest first) so that a partial run covers the short lengths of every task. The
#      dense cell of a (length, task) runs first; where dense accuracy is below 0.5 the
#      other methods are skipped there (the bars of issue 18 apply where dense >= 0.5).
#   2b. held-out response loss at the selection length (compress's validation length, the
#      longest calibration length: 16384 for a 32K model), as `moa compress` reports it but
#      without its needle validation: `moa calib` makes MOA_LC_HELDOUT_SAMPLES (default 4)
#      held-out samples (the calibration tasks, seed calibration seed + 1000, answered by
#      the dense model; resumable), then `moa eval loss` per method. Runs once the cells of
#      the shorter lengths are done.
#   3. publish: for each plan with at least one single-needle plan cell, `moa plan annotate`
#      checks the needle cells (dense, uniform, plan; same model, prompts and plan file) and
#      writes plans/NAME-TAG.json, the plan with its validation summary; plans/NAME-TAG.md
#      gets the table below (every task). Cheap: it reruns after every session.
# Everything small (work directory: calib.h5, profile.h5, plans, reports; every cell's
# results and per-sample log) lives in the repository under results/long-context/NAME, so a
# later session on another machine resumes from the committed files.
#
# Usage: scripts/long-context.sh [--report | --publish] [MODEL_NAME]   (default qwen2.5-coder-0.5b)
#   --report               print the tables from what is finished, run nothing
#   --publish              the same, then the publish step (3) from what is finished
#   MOA                    the moa binary (default build/cli/moa; copy it elsewhere before
#                          rebuilding during a run)
#   MOA_LC_DIR             default results/long-context
#   MOA_LC_CALIB_TASKS     calibration tasks of a new directory (default
#                          needle-multivalue,needle-multiquery; kept in DIR/calib-tasks)
#   MOA_LC_LENGTHS         default 2048,4096,8192,16384,32000 (the dense ladder's lengths)
#   MOA_LC_TASKS           default "needle lines needle-multikey"
#   MOA_LC_SAMPLES         samples per position bin (default 1: 10 per cell)
# Time: on 2 idle cores the plans take about 2 hours for the 0.5B model; a dense 32K prompt
# about 15 minutes (docs/results.md).
set -euo pipefail
cd "$(dirname "$0")/.."
MOA=${MOA:-build/cli/moa}
REPORT=0
PUBLISH=1
if [ "${1:-}" = "--report" ]; then REPORT=1; PUBLISH=0; shift;
elif [ "${1:-}" = "--publish" ]; then REPORT=1; shift; fi
NAME=${1:-qwen2.5-coder-0.5b}
DIR="${MOA_LC_DIR:-results/long-context}/$NAME"
LENGTHS="${MOA_LC_LENGTHS:-2048,4096,8192,16384,32000}"
TASKS="${MOA_LC_TASKS:-needle lines needle-multikey}"
SAMPLES="${MOA_LC_SAMPLES:-1}"
# The dense ladder's settings (scripts/dense-ladder.sh: seed 0, 48 new tokens, f32 KV), so its
# dense cells are this script's dense cells (copied, not rerun), and every method sees the
# same prompts with the same exact KV storage (the plan's effect alone). The calibration uses
# seed 1 and the tasks in $DIR/calib-tasks (written when the directory's plans are first
# made: MOA_LC_CALIB_TASKS, default compress's default needle-multivalue,needle-multiquery;
# results/long-context/qwen2.5-coder-0.5b was made with longdep,lines, the default until
# 2026-12-07), passed to compress explicitly: the validation prompts are unseen.
SEED=0
CALIB_SEED=1
MAX_NEW=48
KV=f32
# the dense cells are shared with scripts/dense-ladder.sh and the other long-context directories
source scripts/lib/dense-cells.sh
[ -x "$MOA" ] || { echo "long-context: $MOA not built (scripts/build.sh)" >&2; exit 1; }
MODEL=$(bash scripts/fetch-model.sh "$NAME")
WORK="$DIR/work"
mkdir -p "$DIR/cells"
if [ -f "$DIR/calib-tasks" ]; then CALIB_TASKS=$(cat "$DIR/calib-tasks")
else
  CALIB_TASKS="${MOA_LC_CALIB_TASKS:-needle-multivalue,needle-multiquery}"
  [ "$REPORT" = 1 ] || { echo "$CALIB_TASKS" > "$DIR/calib-tasks.tmp" && mv "$DIR/calib-tasks.tmp" "$DIR/calib-tasks"; }
fi

plan() {   # density tag -> $DIR/plan-TAG.json (compress resumes and reuses its own stages)
  local d=$1 tag=$2 out="$DIR/plan-$2.json"
  [ -f "$out" ] && return 0
  [ "$REPORT" = 1 ] && return 0
  echo "== long-context: $NAME plan $tag% ($(date -u +%FT%TZ))" >&2
  "$MOA" compress -m "$MODEL" --density "$d" --calib-tasks "$CALIB_TASKS" --calib-seed "$CALIB_SEED" -o "$out" \
    --workdir "$WORK" --skip-eval > "$DIR/report-$tag.md.tmp"
  mv "$DIR/report-$tag.md.tmp" "$DIR/report-$tag.md"
}

HELDOUT_LEN="${MOA_LC_HELDOUT_LENGTH:-$(( $(sed -n 's/^context length (training): *\([0-9]*\).*/\1/p' <<< "$("$MOA" info "$MODEL")") / 2 ))}"
HELDOUT_SAMPLES="${MOA_LC_HELDOUT_SAMPLES:-4}"
heldout() {   # -> $DIR/cells/heldout-LEN-METHOD.json (mean response CE per method)
  local hf="$WORK/heldout-$HELDOUT_LEN.h5" method out args
  [ "$REPORT" = 1 ] && return 0
  if [ ! -f "$hf" ]; then
    echo "== long-context: $NAME held-out set, $HELDOUT_SAMPLES x $HELDOUT_LEN ($(date -u +%FT%TZ))" >&2
    "$MOA" calib -m "$MODEL" --task "$CALIB_TASKS" --lengths "$HELDOUT_LEN" --samples "$HELDOUT_SAMPLES" \
      --seed $((CALIB_SEED + 1000)) --max-new 64 -o "$hf" --resume >&2
  fi
  for method in dense plan50 uniform50 plan25 uniform25; do
    out="$DIR/cells/heldout-$HELDOUT_LEN-$method.json"
    [ -f "$out" ] && continue
    case $method in
      dense) args=(--dense) ;;
      plan50|plan25) args=(--plan "$DIR/plan-${method#plan}.json") ;;
      uniform50|uniform25) args=(--uniform-like "$DIR/plan-${method#uniform}.json") ;;
    esac
    echo "== long-context: $NAME held-out loss $HELDOUT_LEN $method ($(date -u +%FT%TZ))" >&2
    "$MOA" eval loss -m "$MODEL" -c "$hf" "${args[@]}" --kv-type "$KV" -o "$out.tmp" >&2 && mv "$out.tmp" "$out"
  done
}

heldout_ce() {   # method tag -> its held-out mean CE (repr), or nothing
  python3 -c 'import json,sys; print(repr(json.load(open(sys.argv[1]))["mean_ce"]))' \
    "$DIR/cells/heldout-$HELDOUT_LEN-$1.json" 2>/dev/null || true
}

accuracy() {   # results json -> mean accuracy over its cells, or empty
  python3 -c 'import json,sys
r=json.load(open(sys.argv[1])); a=[c for c in r.get("lengths",[]) if c.get("accuracy") is not None]
print("%.3f"%a[0]["accuracy"] if a else "")' "$1" 2>/dev/null || true
}

cell() {   # task length method -> one results file (resumable)
  local task=$1 len=$2 method=$3 args=()
  local out="$DIR/cells/$task-$len-$method.json"
  case $method in
    dense) args=(--dense) ;;
    plan50|plan25) args=(--plan "$DIR/plan-${method#plan}.json") ;;
    uniform50|uniform25) args=(--uniform-like "$DIR/plan-${method#uniform}.json") ;;
  esac
  [ -f "$out" ] && return 0
  [ "$REPORT" = 1 ] && return 0
  if [ "$method" = dense ] && dense_cell_copy "$NAME" "$task" "$len" "$SAMPLES" "$out"; then return 0; fi
  echo "== long-context: $NAME $task $len $method ($(date -u +%FT%TZ))" >&2
  "$MOA" eval longeval -m "$MODEL" "${args[@]}" --task "$task" --lengths "$len" --samples "$SAMPLES" \
    --max-new "$MAX_NEW" --seed "$SEED" --kv-type "$KV" --label "$method" -o "$out" --log "$out.log" --resume >&2
}

plan 0.5 50
plan 0.25 25
IFS=, read -r -a LENS <<< "$LENGTHS"
held=0
for len in "${LENS[@]}"; do
  if [ "$held" = 0 ] && [ "$len" -ge "$HELDOUT_LEN" ]; then heldout; held=1; fi
  for task in $TASKS; do
    cell "$task" "$len" dense
    acc=$(accuracy "$DIR/cells/$task-$len-dense.json")
    if [ -n "$acc" ] && python3 -c "import sys; sys.exit(0 if float('$acc') >= 0.5 else 1)"; then
      for method in plan50 uniform50 plan25 uniform25; do cell "$task" "$len" "$method"; done
    elif [ -n "$acc" ] && [ "$REPORT" = 0 ]; then
      echo "== long-context: $task $len: dense accuracy $acc < 0.5, plans not evaluated there" >&2
    fi
  done
done

table() {   # accuracy per (task, length) and method, markdown
  echo "## $NAME: accuracy (10 position bins x $SAMPLES sample(s), seed $SEED, max-new $MAX_NEW, KV $KV)"
  echo
  echo "| task | length | dense | plan 50% | uniform 50% | plan 25% | uniform 25% |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  local task len row any method f a
  for task in $TASKS; do
    for len in "${LENS[@]}"; do
      row="| $task | $len |"
      any=0
      for method in dense plan50 uniform50 plan25 uniform25; do
        f="$DIR/cells/$task-$len-$method.json"
        a=""
        [ -f "$f" ] && a=$(accuracy "$f") && any=1
        row="$row ${a:--} |"
      done
      [ "$any" = 1 ] && echo "$row"
    done
  done
  ls "$DIR"/cells/heldout-*.json > /dev/null 2>&1 || return 0
  echo
  echo "Held-out response loss (mean CE, nats/token, $HELDOUT_SAMPLES samples of the calibration tasks, seed $((CALIB_SEED + 1000))):"
  echo
  echo "| length | dense | plan 50% | uniform 50% | plan 25% | uniform 25% |"
  echo "|---:|---:|---:|---:|---:|---:|"
  row="| $HELDOUT_LEN |"
  for method in dense plan50 uniform50 plan25 uniform25; do
    a=$(heldout_ce "$method")
    [ -z "$a" ] || a=$(printf '%.3f' "$a")
    row="$row ${a:--} |"
  done
  echo "$row"
  return 0
}

publish() {   # density tag -> plans/NAME-TAG.json (+ .md), when a needle plan cell exists
  local tag=$1 plan="$DIR/plan-$1.json" out="plans/$NAME-$1"
  local dense=() uniform=() planned=() len f
  [ -f "$plan" ] || return 0
  for len in "${LENS[@]}"; do
    f="$DIR/cells/needle-$len"
    [ -f "$f-dense.json" ] && dense+=("$f-dense.json")
    [ -f "$f-uniform$tag.json" ] && uniform+=("$f-uniform$tag.json")
    [ -f "$f-plan$tag.json" ] && planned+=("$f-plan$tag.json")
  done
  [ "${#planned[@]}" -gt 0 ] || return 0
  local args=(--task needle --plan "$(IFS=,; echo "${planned[*]}")")
  [ "${#dense[@]}" -gt 0 ] && args+=(--dense "$(IFS=,; echo "${dense[*]}")")
  [ "${#uniform[@]}" -gt 0 ] && args+=(--uniform "$(IFS=,; echo "${uniform[*]}")")
  local ce m hargs=()
  for m in dense uniform plan; do
    ce=$(heldout_ce "$m$([ "$m" = dense ] || echo "$tag")")
    [ -z "$ce" ] || hargs+=("--heldout-$m" "$ce")
  done
  [ "${#hargs[@]}" -eq 0 ] || args+=(--heldout-length "$HELDOUT_LEN" --heldout-samples "$HELDOUT_SAMPLES" "${hargs[@]}")
  mkdir -p plans
  echo "== long-context: publishing $out.json (${#planned[@]} plan cell(s)) ($(date -u +%FT%TZ))" >&2
  "$MOA" plan annotate "$plan" "${args[@]}" --calib-tasks "$CALIB_TASKS" --calib-seed "$CALIB_SEED" \
    -o "$out.json" >&2 || return 1
  {
    echo "# $NAME, $tag% plan"
    echo
    echo "\`$out.json\`: made by \`moa compress\` at density $tag% with \`--skip-eval\` (report: \`$DIR/report-$tag.md\`),"
    echo "validated cell by cell by scripts/long-context.sh (cells: \`$DIR/cells/TASK-LENGTH-METHOD.json\`);"
    echo "its validation summary holds the single-needle cells. Every task:"
    echo
    table
  } > "$out.md.tmp"
  mv "$out.md.tmp" "$out.md"
}

table
if [ "$PUBLISH" = 1 ]; then
  failed=0
  for tag in 50 25; do publish "$tag" || failed=1; done
  [ "$failed" = 0 ] || { echo "long-context: publishing failed (above)" >&2; exit 1; }
fi
