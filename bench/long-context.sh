#!/usr/bin/env bash
# Speed and memory at long context (issue 18, item 5; docs/benchmarks.md "At long context"):
# for dense, the uniform StreamingLLM window and the MoA plan at 50% and 25% density, on one
# model with an f16 KV cache: decode tok/s (batch 1), KV bytes and the prompt's prefill time
# at each context (default 8192, 16384, 32000), then batched decode at the longest context in
# one fixed KV budget (the largest batch that fits each method; default budget: llama.cpp's
# dense f16 cache for 4 sequences at the model's context, as bench/vs-llamacpp.sh).
#
# Every measurement is one `moa bench decode --format json` run kept in the output directory
# with the inputs that made it (command, plan sha256); a rerun skips the runs whose inputs are
# unchanged, so an interrupted run resumes (a 32K prefill of the 0.5B model takes minutes).
# Usage: bench/long-context.sh [options]   (--help lists them)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bench/long-context.sh [options]

  --model NAME|PATH     GGUF file or a scripts/fetch-model.sh name (default qwen2.5-coder-0.5b)
  --contexts LIST       decode depths (default 8192,16384,32000; each plus the decoded tokens
                        must fit the model's context)
  --tokens N            decoded tokens per repeat (default 16)
  --repeats R           timed repeats (default 2; one untimed warm-up before them)
  --plan50 P, --plan25 P  MoA plans (default plans/<model>-50.json and -25.json; a missing plan
                        leaves its rows out)
  --kv-budget BYTES     budget of the batched part (default 4 dense f16 caches at the model's
                        context: 4*n_ctx*n_layer*2*n_head_kv*head_dim*2 bytes)
  --batch-context N     prompt tokens per sequence in the batched part (default the longest context)
  --no-batched          skip the batched part
  --threads T           threads (default nproc)
  --out DIR             raw runs and tables (default results/long-context-bench/<model>)
  --format md|csv|json  table on stdout (default md)
  --report              print the table from the runs already in DIR, run nothing
  -h, --help            this text

Environment: MOA (default build/cli/moa; copy it elsewhere before rebuilding during a run).
EOF
}
die() { echo "long-context-bench: $*" >&2; exit 1; }
bad() { echo "long-context-bench: $*" >&2; usage >&2; exit 2; }

MODEL=qwen2.5-coder-0.5b CONTEXTS=8192,16384,32000 TOKENS=16 REPEATS=2 PLAN50="" PLAN25=""
BUDGET="" BCTX="" BATCHED=1 THREADS=$(nproc) OUT="" FORMAT=md REPORT=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --no-batched) BATCHED=0; shift; continue ;;
    --report) REPORT=1; shift; continue ;;
    --model|--contexts|--tokens|--repeats|--plan50|--plan25|--kv-budget|--batch-context|--threads|--out|--format)
      [ $# -ge 2 ] || bad "$1 needs a value" ;;
    *) bad "unknown option '$1'" ;;
  esac
  case "$1" in
    --model) MODEL=$2 ;; --contexts) CONTEXTS=$2 ;; --tokens) TOKENS=$2 ;; --repeats) REPEATS=$2 ;;
    --plan50) PLAN50=$2 ;; --plan25) PLAN25=$2 ;; --kv-budget) BUDGET=$2 ;; --batch-context) BCTX=$2 ;;
    --threads) THREADS=$2 ;; --out) OUT=$2 ;; --format) FORMAT=$2 ;;
  esac
  shift 2
done
posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
[[ $CONTEXTS =~ ^[0-9]+(,[0-9]+)*$ ]] || bad "--contexts must be a list like 8192,16384"
for v in TOKENS REPEATS THREADS; do posint "${!v}" || bad "--${v,,} must be a positive integer"; done
[ -z "$BCTX" ] || posint "$BCTX" || bad "--batch-context must be a positive integer"
[ -z "$BUDGET" ] || [[ $BUDGET =~ ^[0-9]+$ ]] || bad "--kv-budget must be a byte count (digits)"
case "$FORMAT" in md|csv|json) ;; *) bad "--format must be md, csv or json" ;; esac
for p in "$PLAN50" "$PLAN25"; do [ -z "$p" ] || [ -f "$p" ] || die "plan '$p' not found"; done

if [[ $MODEL == */* || $MODEL == *.gguf ]]; then
  [ -f "$MODEL" ] || die "model file '$MODEL' not found"
  MPATH=$MODEL MNAME=$(basename "$MODEL" .gguf)
else
  MPATH=$(bash scripts/fetch-model.sh "$MODEL") || die "model '$MODEL' not available (scripts/fetch-model.sh --list)"
  MNAME=$MODEL
fi
OUT=${OUT:-results/long-context-bench/$MNAME}
mkdir -p "$OUT"
[ -n "$PLAN50" ] || { [ -f "plans/$MNAME-50.json" ] && PLAN50="plans/$MNAME-50.json"; } || true
[ -n "$PLAN25" ] || { [ -f "plans/$MNAME-25.json" ] && PLAN25="plans/$MNAME-25.json"; } || true

table() {
  for f in md csv json; do
    python3 bench/long-context-table.py "$OUT" "$f" > "$OUT/table.$f.tmp" && mv "$OUT/table.$f.tmp" "$OUT/table.$f" ||
      die "table ($f) failed"
  done
  cat "$OUT/table.$FORMAT"
}
if [ "$REPORT" = 1 ]; then table; exit 0; fi

MOA=${MOA:-build/cli/moa}
[ -x "$MOA" ] || die "$MOA not found: build first (scripts/build.sh) or set MOA"
info=$("$MOA" info "$MPATH") || die "moa info $MPATH failed"
hp() { sed -n "s/^$1 *\([0-9][0-9]*\).*/\1/p" <<< "$info" | head -1; }
N_CTX=$(hp 'context length (training):') N_LAYER=$(hp 'layers:') HEAD_DIM=$(hp 'head dim:')
N_HEAD_KV=$(sed -n 's/^heads: .*KV heads \([0-9]*\).*/\1/p' <<< "$info" | head -1)
for v in N_CTX N_LAYER HEAD_DIM N_HEAD_KV; do [ -n "${!v}" ] || die "could not read $v from 'moa info $MPATH'"; done
IFS=, read -r -a CL <<< "$CONTEXTS"
ROOM=$((TOKENS * (1 + REPEATS)))
for c in "${CL[@]}"; do
  [ $((c + ROOM)) -le "$N_CTX" ] || bad "context $c + $ROOM decoded tokens exceeds the model's context $N_CTX"
done
[ -n "$BCTX" ] || BCTX=${CL[${#CL[@]}-1]}
[ $((BCTX + ROOM)) -le "$N_CTX" ] || bad "--batch-context $BCTX + $ROOM decoded tokens exceeds the model's context $N_CTX"
[ -n "$BUDGET" ] || BUDGET=$((4 * N_CTX * N_LAYER * 2 * N_HEAD_KV * HEAD_DIM * 2))

export OMP_NUM_THREADS=$THREADS
METHODS=(dense uniform50)
[ -z "$PLAN50" ] || METHODS+=(plan50)
METHODS+=(uniform25)
[ -z "$PLAN25" ] || METHODS+=(plan25)
method_args() {
  case "$1" in
    dense) ;; uniform50) echo "--uniform 0.5" ;; uniform25) echo "--uniform 0.25" ;;
    plan50) echo "--plan $PLAN50" ;; plan25) echo "--plan $PLAN25" ;;
  esac
}
plan_sha() { case "$1" in plan50) sha256sum < "$PLAN50" | cut -c1-64 ;; plan25) sha256sum < "$PLAN25" | cut -c1-64 ;; *) echo - ;; esac; }

runs=() 
for c in "${CL[@]}"; do for m in "${METHODS[@]}"; do runs+=("decode $m $c"); done; done
[ "$BATCHED" = 0 ] || for m in "${METHODS[@]}"; do runs+=("batched $m $BCTX"); done
i=0
for r in "${runs[@]}"; do
  i=$((i + 1))
  read -r kind m c <<< "$r"
  name="$kind-$m-$c.json"
  args=(bench decode -m "$MPATH" --context "$c" --tokens "$TOKENS" -r "$REPEATS" --warmup 1 --kv-type f16 --format json)
  # shellcheck disable=SC2207
  args+=($(method_args "$m"))
  [ "$kind" = decode ] || args+=(--kv-budget "$BUDGET")
  inputs=$(printf 'command: moa %s\nthreads: %s\nplan sha256: %s\n' "${args[*]}" "$THREADS" "$(plan_sha "$m")")
  if [ -f "$OUT/$name" ] && [ "$(cat "$OUT/$name.inputs" 2>/dev/null)" = "$inputs" ]; then
    echo "long-context-bench: [$i/${#runs[@]}] $kind $m at $c: done before, kept" >&2; continue
  fi
  echo "long-context-bench: [$i/${#runs[@]}] $kind $m at $c ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2
  rm -f "$OUT/$name" "$OUT/$name.inputs"
  t0=$(date +%s)
  if ! "$MOA" "${args[@]}" > "$OUT/$name.tmp" 2> "$OUT/$name.err"; then
    echo "long-context-bench: FAILED: moa ${args[*]}: $(tail -n 1 "$OUT/$name.err")" >&2
    rm -f "$OUT/$name.tmp"; continue
  fi
  python3 - "$OUT/$name.tmp" "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" <<'EOF'
import json, sys
p, end, load, commit, cpu = sys.argv[1:6]
r = json.load(open(p))
r.update({"end_utc": end, "load_at_end": load, "source_commit": commit, "cpu": cpu})
json.dump(r, open(p, "w"))
EOF
  mv "$OUT/$name.tmp" "$OUT/$name"
  echo "$inputs" > "$OUT/$name.inputs"
  echo "long-context-bench:   took $(( $(date +%s) - t0 )) s" >&2
done
table
