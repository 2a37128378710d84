#!/usr/bin/env bash
# Side by side with llama.cpp (issue 15, items 3-4): on the same GGUF file and thread count,
# runs llama-bench (pp512, tg128 at several depths, f16 KV) and llama-batched-bench (total
# decode throughput of the largest batch whose KV fits a byte budget) against `moa bench`
# (dense f16 KV, then 50% and 25% plans, and the 25% plan with a q8_0 cache), and prints one
# table with the ratios (md, csv or json). Raw JSON of every run goes to a work directory.
# llama.cpp is built from the llama-cpp-python sdist by scripts/build-llamacpp.sh (cached).
# Usage: bench/vs-llamacpp.sh [options]   (--help lists them; docs/benchmarks.md explains rows)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bench/vs-llamacpp.sh [options]

  --model NAME|PATH     GGUF file or a scripts/fetch-model.sh name (default smollm2-135m)
  --threads T           threads for both engines (default: nproc)
  --depths LIST         decode depths, e.g. 0,2048,7680 (default 0,2048,MAX: MAX = the model's
                        context minus room for the test (SmolLM2: 8192-512), at most 8192)
  --repeats R           timed repeats per test (default 3)
  --plan50 P, --plan25 P  MoA plans (default plans/<model>-50.json and -25.json if they exist,
                        else uniform windows: `moa bench --uniform 0.5 / 0.25`)
  --format md|csv|json  table format on stdout (default md)
  --kv-budget BYTES     KV budget of the batched part (default: llama.cpp's dense f16 KV for 4
                        sequences at the model's context, 4*n_ctx*n_layer*2*n_head_kv*head_dim*2)
  --batch-context N     prompt tokens per sequence in the batched part (default: the longest
                        depth, or 2048 if that is below 256)
  --llama-poll P        llama.cpp's --poll (busy-wait %, default its own: 50; 0 on a shared machine)
  --omp-wait POLICY     OMP_WAIT_POLICY for BOTH engines (the llama.cpp build uses OpenMP too):
                        active or passive; default: unset for both (libgomp's default, a short
                        spin). An OMP_WAIT_POLICY inherited from the caller is ignored (passive
                        slows llama.cpp's decode ~4x on an idle machine: 33 vs 125 tok/s)
  --quick               test the script: 1 repeat, pp128/tg16/batched tg8; default budget 4 dense
                        sequences of the batched context instead of 4 at the model's context
  --out DIR             keep the raw JSON of every run and the table in DIR (default: a temporary
                        directory, removed at exit)
  -h, --help            this text

Environment: MOA (default $MOA_BUILD_DIR/cli/moa or build/cli/moa), LLAMA_BIN (directory of
llama-bench; default: the output of scripts/build-llamacpp.sh), OMP_WAIT_POLICY (ignored: see --omp-wait).
EOF
}
die() { echo "vs-llamacpp: $*" >&2; exit 1; }
bad() { echo "vs-llamacpp: $*" >&2; usage >&2; exit 2; }

MODEL=smollm2-135m THREADS=$(nproc) DEPTHS="" REPEATS=3 PLAN50="" PLAN25="" FORMAT=md
BUDGET="" BCTX="" QUICK=0 OUT="" POLL="" OMPW=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --quick) QUICK=1; shift; continue ;;
    --model|--threads|--depths|--repeats|--plan50|--plan25|--format|--kv-budget|--batch-context|--out|--llama-poll|--omp-wait)
      [ $# -ge 2 ] || bad "$1 needs a value" ;;
    *) bad "unknown option '$1'" ;;
  esac
  case "$1" in
    --model) MODEL=$2 ;; --threads) THREADS=$2 ;; --depths) DEPTHS=$2 ;; --repeats) REPEATS=$2 ;;
    --plan50) PLAN50=$2 ;; --plan25) PLAN25=$2 ;; --format) FORMAT=$2 ;; --kv-budget) BUDGET=$2 ;;
    --batch-context) BCTX=$2 ;; --out) OUT=$2 ;; --llama-poll) POLL=$2 ;; --omp-wait) OMPW=$2 ;;
  esac
  shift 2
done
isnum() { [[ $1 =~ ^[0-9]+$ ]]; }
case "$FORMAT" in md|csv|json) ;; *) bad "--format must be md, csv or json" ;; esac
posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
posint "$THREADS" || bad "--threads must be a positive integer"
posint "$REPEATS" || bad "--repeats must be a positive integer"
[ -z "$BCTX" ] || posint "$BCTX" || bad "--batch-context must be a positive integer"
[ -z "$BUDGET" ] || isnum "$BUDGET" || bad "--kv-budget must be a byte count (digits)"
[ -z "$POLL" ] || isnum "$POLL" || bad "--llama-poll must be 0..100"
case "$OMPW" in ""|active|passive) ;; *) bad "--omp-wait must be active or passive" ;; esac
# one OpenMP wait policy for both engines (both use libgomp)
if [ -n "$OMPW" ]; then export OMP_WAIT_POLICY=$OMPW; else unset OMP_WAIT_POLICY; fi
[ -z "$DEPTHS" ] || [[ $DEPTHS =~ ^[0-9]+(,[0-9]+)*$ ]] || bad "--depths must be a list like 0,2048"

# Test sizes: prompt processing PP, generation TG at each depth, batched generation BTG.
PP=512 TG=128 BTG=32
if [ "$QUICK" = 1 ]; then REPEATS=1 PP=128 TG=16 BTG=8; fi
WARMUP=1   # moa bench: untimed warm-up runs (llama-bench does one warm-up of its own)

# ---- model, programs, hyperparameters -------------------------------------------------------
if [[ $MODEL == */* || $MODEL == *.gguf ]]; then
  [ -f "$MODEL" ] || die "model file '$MODEL' not found"
  MPATH=$MODEL MNAME=$(basename "$MODEL" .gguf)
else
  MPATH=$(bash scripts/fetch-model.sh "$MODEL") ||
    die "model '$MODEL' not available (names: $(bash scripts/fetch-model.sh --list | tr '\n' ' '); or give a GGUF path)"
  MNAME=$MODEL
fi
MOA=${MOA:-${MOA_BUILD_DIR:-build}/cli/moa}
[ -x "$MOA" ] || die "$MOA not found: build first (MOA_BUILD_DIR=... bash scripts/build.sh) or set MOA"
LLAMA_BIN=${LLAMA_BIN:-$(bash scripts/build-llamacpp.sh)} || die "llama.cpp build failed (scripts/build-llamacpp.sh)"
for t in llama-bench llama-batched-bench; do [ -x "$LLAMA_BIN/$t" ] || die "$LLAMA_BIN/$t not found"; done

info=$("$MOA" info "$MPATH") || die "moa info $MPATH failed"
hp() { sed -n "s/^$1 *\([0-9][0-9]*\).*/\1/p" <<< "$info" | head -1; }
N_CTX=$(hp 'context length (training):') N_LAYER=$(hp 'layers:') HEAD_DIM=$(hp 'head dim:')
N_HEAD_KV=$(sed -n 's/^heads: .*KV heads \([0-9]*\).*/\1/p' <<< "$info" | head -1)
for v in N_CTX N_LAYER HEAD_DIM N_HEAD_KV; do [ -n "${!v}" ] || die "could not read $v from 'moa info $MPATH'"; done
# llama.cpp's dense f16 cache: K and V rows of n_head_kv*head_dim halves per layer and token
LLAMA_KV_TOK=$((N_LAYER * 2 * N_HEAD_KV * HEAD_DIM * 2))

# Depths: each must leave room for llama-bench's pp test (depth+PP) and for moa bench's
# decode, which plans depth + TG*(warm-up + repeats) positions.
ROOM=$PP; [ $((TG * (WARMUP + REPEATS))) -gt "$ROOM" ] && ROOM=$((TG * (WARMUP + REPEATS)))
if [ -z "$DEPTHS" ]; then
  MAXD=$((N_CTX - ROOM)); [ "$MAXD" -gt 8192 ] && MAXD=8192
  DEPTHS="0,2048,$MAXD"
fi
IFS=, read -r -a DL <<< "$DEPTHS"
for d in "${DL[@]}"; do
  [ $((d + ROOM)) -le "$N_CTX" ] || bad "depth $d + $ROOM tokens of test exceeds the model's context $N_CTX"
done

# Budget and the batched part, at the longest depth unless --batch-context says otherwise.
# llama.cpp rounds its context up to a multiple of 256, so -c is the budget in tokens rounded
# down to 256. Both sides prefill the prompt once and copy it into every sequence, each copy
# its own bytes: llama-batched-bench -pps with per-sequence streams (-no-kvu: the cells of -c
# split into one stream per sequence, and seq_cp across streams copies the buffers), moa bench
# with moa_ctx_seq_copy. BCTX+BTG cells per sequence.
if [ -z "$BCTX" ]; then BCTX=${DL[${#DL[@]}-1]}; [ "$BCTX" -ge 256 ] || BCTX=2048; fi
if [ -z "$BUDGET" ]; then
  if [ "$QUICK" = 1 ]; then BUDGET=$(( (4 * (BCTX + BTG * (WARMUP + REPEATS)) + 255) / 256 * 256 * LLAMA_KV_TOK ))
  else BUDGET=$((4 * N_CTX * LLAMA_KV_TOK)); fi
fi
LLAMA_C=$(( BUDGET / LLAMA_KV_TOK / 256 * 256 ))
NPL_MAX=$(( LLAMA_C / (BCTX + BTG) ))
[ "$NPL_MAX" -ge 1 ] || die "--kv-budget $BUDGET holds no llama.cpp sequence of $BCTX+$BTG tokens"
NPL=$NPL_MAX   # each -npl value prefills again: only the largest batch that fits

# Plans: MoA plans if given or found, else uniform windows (StreamingLLM: sinks + one window).
for p in "$PLAN50" "$PLAN25"; do [ -z "$p" ] || [ -f "$p" ] || die "plan '$p' not found"; done
plan_args() {   # $1 = given plan, $2 = default file, $3 = uniform density -> "kind|label|args"
  local p=$1
  [ -n "$p" ] || { [ -f "$2" ] && p=$2; }
  if [ -n "$p" ]; then
    echo "plan|$p|--plan $p"
  else
    echo "uniform|uniform $3|--uniform $3"
  fi
}
IFS='|' read -r K50 L50 A50 <<< "$(plan_args "$PLAN50" "plans/$MNAME-50.json" 0.5)"
IFS='|' read -r K25 L25 A25 <<< "$(plan_args "$PLAN25" "plans/$MNAME-25.json" 0.25)"

if [ -n "$OUT" ]; then
  mkdir -p "$OUT"; W=$(cd "$OUT" && pwd); WDESC=$W
else
  W=$(mktemp -d "${TMPDIR:-/tmp}/vs-llamacpp.XXXXXX"); WDESC="a temporary directory, removed at exit (--out DIR keeps them)"
  trap 'rm -rf "$W"' EXIT
fi

export OMP_NUM_THREADS=$THREADS
MOA_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || MOA_COMMIT="$MOA_COMMIT-dirty"
LLAMA_COMMIT=$(sed -n 's/.*LLAMA_COMMIT = "\(.*\)".*/\1/p' "$LLAMA_BIN/../common/build-info.cpp" 2>/dev/null || true)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u +%FT%TZ)
POLL_ARGS=(); [ -z "$POLL" ] || POLL_ARGS=(--poll "$POLL")

# ---- runs -------------------------------------------------------------------------------------
step=0
note() { step=$((step + 1)); echo "vs-llamacpp: [$step] $* ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2; }
# run NAME CMD...: stdout to $W/NAME, stderr to $W/NAME.err; a failure is reported and the cell
# stays empty in the table (e.g. a uniform window that does not fit a short context).
run() {
  local name=$1; shift
  rm -f "$W/$name.failed"   # a kept work directory: an earlier run's failure is not this one's
  echo "$*" > "$W/$name.cmd"
  if ! "$@" > "$W/$name" 2> "$W/$name.err"; then
    echo "vs-llamacpp: FAILED: $* (see $W/$name.err: $(tail -n 1 "$W/$name.err"))" >&2
    mv "$W/$name" "$W/$name.failed"
  fi
}

# llama.cpp with flash attention off and on (its default "auto" picks on for the CPU, which is
# 2.3x slower at depth 2048 on SmolLM2 here: 19.3 vs 44.6 tok/s): the table takes the faster.
note "llama-bench -p $PP -n $TG -d $DEPTHS -fa 0,1 -r $REPEATS"
run llama-bench.json "$LLAMA_BIN/llama-bench" -m "$MPATH" -t "$THREADS" -p "$PP" -n "$TG" -d "$DEPTHS" \
  -fa 0,1 -r "$REPEATS" "${POLL_ARGS[@]}" -o json

if [[ ,$DEPTHS, != *,0,* ]]; then   # the pp row compares prompt processing into an empty cache
  note "llama-bench -p $PP -n 0 -d 0 -r $REPEATS"
  run llama-bench-pp.json "$LLAMA_BIN/llama-bench" -m "$MPATH" -t "$THREADS" -p "$PP" -n 0 -d 0 \
    -fa 0,1 -r "$REPEATS" "${POLL_ARGS[@]}" -o json
fi

note "moa bench prefill --context $PP"
run moa-pp.json "$MOA" bench prefill -m "$MPATH" --context "$PP" -r "$REPEATS" --warmup "$WARMUP" \
  --kv-type f16 --format json

CONFIGS=(dense p50 p25 p25q8)
cfg_args() {
  case "$1" in
    dense) echo "--kv-type f16" ;; p50) echo "$A50 --kv-type f16" ;;
    p25) echo "$A25 --kv-type f16" ;; p25q8) echo "$A25 --kv-type q8_0" ;;
  esac
}
for d in "${DL[@]}"; do
  for c in "${CONFIGS[@]}"; do
    note "moa bench decode --context $d --tokens $TG $(cfg_args "$c")"
    # shellcheck disable=SC2046
    run "moa-tg-$c-d$d.json" "$MOA" bench decode -m "$MPATH" --context "$d" --tokens "$TG" -r "$REPEATS" \
      --warmup "$WARMUP" $(cfg_args "$c") --format json
  done
done

for fa in off on; do
  note "llama-batched-bench -c $LLAMA_C -no-kvu -pps -npp $BCTX -ntg $BTG -npl $NPL -fa $fa"
  run "llama-batched-bench-fa-$fa.jsonl" "$LLAMA_BIN/llama-batched-bench" -m "$MPATH" -t "$THREADS" -tb "$THREADS" \
    -c "$LLAMA_C" -no-kvu -pps -npp "$BCTX" -ntg "$BTG" -npl "$NPL" -fa "$fa" "${POLL_ARGS[@]}" --output-format jsonl
done

for c in "${CONFIGS[@]}"; do
  note "moa bench decode --context $BCTX --tokens $BTG --kv-budget $BUDGET $(cfg_args "$c")"
  # shellcheck disable=SC2046
  run "moa-batched-$c.json" "$MOA" bench decode -m "$MPATH" --context "$BCTX" --tokens "$BTG" -r "$REPEATS" \
    --warmup "$WARMUP" --kv-budget "$BUDGET" $(cfg_args "$c") --format json
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- table ------------------------------------------------------------------------------------
{
  echo "date_utc=$START"
  echo "end_utc=$(date -u +%FT%TZ)"
  echo "model=$MPATH"
  echo "model_name=$MNAME"
  echo "moa_commit=$MOA_COMMIT"
  echo "llama_commit=${LLAMA_COMMIT:-unknown}"
  echo "llama_version=llama-cpp-python $(basename "$(dirname "$(dirname "$LLAMA_BIN")")" | sed 's/^llama.cpp-//') sdist"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "cores=$(nproc)"
  echo "threads=$THREADS"
  echo "load_start=$LOAD_START"
  echo "load_end=$LOAD_END"
  echo "omp_wait_policy=${OMP_WAIT_POLICY:-default}"
  echo "llama_poll=${POLL:-default (50)}"
  echo "repeats=$REPEATS"
  echo "moa_warmup=$WARMUP"
  echo "quick=$QUICK"
  echo "pp=$PP"
  echo "tg=$TG"
  echo "btg=$BTG"
  echo "depths=$DEPTHS"
  echo "n_ctx=$N_CTX"
  echo "n_layer=$N_LAYER"
  echo "n_head_kv=$N_HEAD_KV"
  echo "head_dim=$HEAD_DIM"
  echo "llama_kv_bytes_per_token=$LLAMA_KV_TOK"
  echo "kv_budget=$BUDGET"
  echo "batch_context=$BCTX"
  echo "llama_c=$LLAMA_C"
  echo "npl=$NPL"
  echo "p50_kind=$K50"
  echo "p50_label=$L50"
  echo "p25_kind=$K25"
  echo "p25_label=$L25"
  echo "workdir=$WDESC"
} > "$W/meta.txt"
for f in md csv json; do
  python3 bench/vs-llamacpp-table.py "$W" "$f" > "$W/table.$f" || die "table ($f) failed"
done
cat "$W/table.$FORMAT"
echo "vs-llamacpp: raw results in $WDESC" >&2
