# shellcheck shell=bash
# Sourced by scripts/dense-ladder.sh and scripts/long-context.sh: both run the same dense
# LongEval cells (seed 0, 48 new tokens, f32 KV, SAMPLES per position bin, the model's chat
# template), and several long-context directories (results/long-context*/, one per
# calibration) share them too. A dense cell depends on none of a directory's plans, so it is
# run once and copied everywhere else.
#
# dense_cell_copy NAME TASK LEN SAMPLES OUT: if another place holds this cell with the same
# settings, copy it to OUT (+ OUT.log) and return 0. A finished cell (results + log) is
# preferred; else the longest unfinished log is copied to OUT.log (the caller's
# `moa eval longeval --resume` continues it) and 1 is returned, as when nothing is found.
dense_cell_copy() {
  local name=$1 task=$2 len=$3 samples=$4 out=$5 src best="" best_rows=0 rows
  local cands=("results/dense-ladder/$name-$task-$len.json")
  for src in results/long-context*/"$name/cells/$task-$len-dense.json.log"; do cands+=("${src%.log}"); done
  for src in "${cands[@]}"; do
    [ "$(realpath -m "$src")" = "$(realpath -m "$out")" ] && continue
    [ -f "$src.log" ] || continue
    rows=$(python3 - "$src.log" "$task" "$len" "$samples" <<'PYEOF'
import json, sys
log, task, n, samples = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
try:
    lines = [l for l in open(log) if l.strip()]
    s = json.loads(lines[0])["settings"]
    ok = (s["task"] == task and s["lengths"] == [n] and s["samples_per_cell"] == samples and s["seed"] == 0
          and s["max_new_tokens"] == 48 and s["model"]["attention"]["kind"] == "dense")
    print(sum(1 for l in lines[1:] if '"correct"' in l) if ok else -1)
except Exception:
    print(-1)
PYEOF
)
    [ "$rows" -ge 0 ] || continue
    if [ -f "$src" ]; then
      { cp "$src.log" "$out.log.tmp" && mv "$out.log.tmp" "$out.log" && cp "$src" "$out.tmp" && mv "$out.tmp" "$out"; } || return 1
      echo "== $task $len dense: copied from $src" >&2
      return 0
    fi
    if [ "$rows" -gt "$best_rows" ]; then best=$src best_rows=$rows; fi
  done
  if [ -n "$best" ] && { [ ! -f "$out.log" ] || [ "$(grep -c '"correct"' "$out.log")" -lt "$best_rows" ]; }; then
    { cp "$best.log" "$out.log.tmp" && mv "$out.log.tmp" "$out.log"; } || return 1
    echo "== $task $len dense: resuming from $best.log ($best_rows samples done there)" >&2
  fi
  return 1
}
