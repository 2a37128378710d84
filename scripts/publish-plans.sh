#!/usr/bin/env bash
# The published plans (plans/, issue 18): the 50% and 25% plans of a test model made by
# `moa compress` with its defaults, validated by compress (single needles, dense vs uniform
# StreamingLLM window vs plan at every default evaluation length), then checked on a second
# task the defaults were not tuned on (multi-key needles, 3 samples per position bin).
#
# Writes plans/NAME-50.json and plans/NAME-25.json (the plan, with its model sha256 and the
# validation summary), plans/NAME-50.md / -25.md (compress's report), and the multi-key
# cells under results/plans/NAME/cells; then the KV storage check of issue 15 (single needles
# with the f16 cache, the default, vs the f32 cache, for dense and both plans, on the same
# prompts: lengths MOA_PLANS_KV_LENGTHS, 2 samples per position bin, seed 2). Resumable: the work directory (calibration set,
# profile, evaluation logs) lives in the repository under results/plans/NAME/work and
# compress reuses or resumes every stage; each multi-key cell is an `eval longeval --resume`.
#
# Usage: scripts/publish-plans.sh [--report] [MODEL_NAME]   (default smollm2-135m)
#   MOA               the moa binary (default build/cli/moa)
#   MOA_PLANS_MK_LENGTHS  multi-key lengths (default 1024,2048: where dense SmolLM2 retrieves)
# The 32K model's plans come from scripts/long-context.sh (its validation is per cell there).
set -euo pipefail
cd "$(dirname "$0")/.."
MOA=${MOA:-build/cli/moa}
REPORT=0
if [ "${1:-}" = "--report" ]; then REPORT=1; shift; fi
NAME=${1:-smollm2-135m}
MK_LENGTHS="${MOA_PLANS_MK_LENGTHS:-1024,2048}"
KV_LENGTHS="${MOA_PLANS_KV_LENGTHS:-512,1024,2048}"
[ -x "$MOA" ] || { echo "publish-plans: $MOA not built (scripts/build.sh)" >&2; exit 1; }
MODEL=$(bash scripts/fetch-model.sh "$NAME")
DIR="results/plans/$NAME"
WORK="$DIR/work"
mkdir -p plans "$DIR/cells"

sha() { sha256sum < "$1" | cut -c1-64; }
plan_profile() {   # plan file -> the sha256 of the profile it was made from
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["provenance"]["profile_sha256"])' "$1" 2>/dev/null || true
}
# A cell made with a plan (or matched to its density) records the plan's sha256 beside it
# (CELL.plan, written before the cell starts): it is current while the plan file is unchanged.
# Dense cells depend on no plan.
cell_current() {   # cell json, plan file or "" -> 0 when the finished cell is current
  [ -f "$1" ] || return 1
  [ -z "$2" ] && return 0
  [ -f "$1.plan" ] && [ "$(cat "$1.plan")" = "$(sha "$2")" ]
}
cell_start() {   # cell json, plan file or "": drop a stale cell, record the plan it is made with
  [ -z "$2" ] && return 0
  if [ ! -f "$1.plan" ] || [ "$(cat "$1.plan")" != "$(sha "$2")" ]; then rm -f "$1" "$1.log"; fi
  sha "$2" > "$1.plan.tmp" && mv "$1.plan.tmp" "$1.plan"
}

plan() {   # density tag
  local d=$1 tag=$2 out="plans/$NAME-$2.json"
  [ "$REPORT" = 1 ] && return 0
  # done when made from the work directory's profile (its sha256 in the plan's provenance;
  # by content, not modification times, which a fresh clone does not keep; the work
  # directory's plan.json alternates between the densities, so it cannot tell either)
  [ -f "$out" ] && [ -f "$WORK/profile.h5" ] && [ -f "plans/$NAME-$tag.md" ] &&
    [ "$(plan_profile "$out")" = "$(sha "$WORK/profile.h5")" ] && return 0
  echo "== publish-plans: $NAME $tag% ($(date -u +%FT%TZ))" >&2
  "$MOA" compress -m "$MODEL" --density "$d" --eval-samples 2 -o "$out" --workdir "$WORK" > "plans/$NAME-$tag.md.tmp"
  mv "plans/$NAME-$tag.md.tmp" "plans/$NAME-$tag.md"
}

accuracy() {   # results json -> accuracy per length "L:acc ..."
  python3 -c 'import json,sys
r=json.load(open(sys.argv[1]))
print(" ".join("%d:%.3f"%(c["length"],c["accuracy"]) for c in r.get("lengths",[]) if c.get("accuracy") is not None))' "$1" 2>/dev/null || true
}

cell() {   # method -> multi-key results (resumable)
  local method=$1 args=() pf=""
  local out="$DIR/cells/needle-multikey-$method.json"
  case $method in
    dense) args=(--dense) ;;
    plan50|plan25) pf="plans/$NAME-${method#plan}.json"; args=(--plan "$pf") ;;
    uniform50|uniform25) pf="plans/$NAME-${method#uniform}.json"; args=(--uniform-like "$pf") ;;
  esac
  [ "$REPORT" = 1 ] && return 0
  cell_current "$out" "$pf" && return 0
  cell_start "$out" "$pf"   # another plan: start over
  echo "== publish-plans: $NAME needle-multikey $method ($(date -u +%FT%TZ))" >&2
  "$MOA" eval longeval -m "$MODEL" "${args[@]}" --task needle-multikey --lengths "$MK_LENGTHS" --samples 3 \
    --seed 3 --label "$method" -o "$out" --log "$out.log" --resume >&2
}

kvcell() {   # kv-type method -> single-needle results with that KV storage (resumable)
  local kv=$1 method=$2 args=() pf=""
  local out="$DIR/cells/needle-$kv-$method.json"
  case $method in
    dense) args=(--dense) ;;
    plan50|plan25) pf="plans/$NAME-${method#plan}.json"; args=(--plan "$pf") ;;
  esac
  [ "$REPORT" = 1 ] && return 0
  cell_current "$out" "$pf" && return 0
  cell_start "$out" "$pf"
  echo "== publish-plans: $NAME needle KV $kv $method ($(date -u +%FT%TZ))" >&2
  "$MOA" eval longeval -m "$MODEL" "${args[@]}" --task needle --lengths "$KV_LENGTHS" --samples 2 \
    --seed 2 --kv-type "$kv" --label "$method-$kv" -o "$out" --log "$out.log" --resume >&2
}

plan 0.5 50
plan 0.25 25
for method in dense plan50 uniform50 plan25 uniform25; do cell "$method"; done
for method in dense plan50 plan25; do for kv in f16 f32; do kvcell "$kv" "$method"; done; done

echo "## $NAME: multi-key needles (10 position bins x 3 samples, seed 3)"
echo
echo "| method | accuracy per length |"
echo "|---|---|"
for method in dense plan50 uniform50 plan25 uniform25; do
  f="$DIR/cells/needle-multikey-$method.json"
  [ -f "$f" ] && echo "| $method | $(accuracy "$f") |"
done

echo
echo "## $NAME: single needles, f16 vs f32 KV cache (10 position bins x 2 samples, seed 2)"
echo
echo "| method | KV | accuracy per length |"
echo "|---|---|---|"
for method in dense plan50 plan25; do
  for kv in f16 f32; do
    f="$DIR/cells/needle-$kv-$method.json"
    [ -f "$f" ] && echo "| $method | $kv | $(accuracy "$f") |"
  done
done
