#!/usr/bin/env bash
# Regenerates the golden fixtures in tests/fixtures/ from an independent Python oracle.
# Usage: scripts/golden/run.sh [tokenizer|dequant|logits|tokenizer_corpus|qwen_logits|logits_llamacpp ...]
#   (default: tokenizer dequant logits). Opt-in targets that need llama.cpp, built here by
#   scripts/build-llamacpp.sh (~15 min the first time), and the Qwen2.5-Coder GGUF files
#   (fetched by scripts/fetch-model.sh): tokenizer_corpus (Qwen2.5-Coder-0.5B, $MOA_MODEL_QWEN)
#   and qwen_logits (~30 min, both Qwen2.5-Coder files); logits_llamacpp (llama.cpp on the
#   SmolLM2 golden prompts, ~1 min, after logits)
# Creates/updates a venv OUTSIDE the repo at ${MOA_CACHE_DIR:-$XDG_CACHE_HOME/moa}/golden-venv,
# installs the exact pins from requirements.txt, fetches the model with scripts/fetch-model.sh.
# Idempotent: the venv is reused while requirements.txt is unchanged.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${MOA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/moa}"
VENV="$CACHE/golden-venv"
PY_SYS="${PYTHON:-python3}"

mkdir -p "$CACHE"
req_hash=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
stamp="$VENV/.moa-requirements.sha256"
if [ ! -x "$VENV/bin/python" ]; then
  echo "golden: creating venv $VENV" >&2
  "$PY_SYS" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$req_hash" ]; then
  echo "golden: installing pinned requirements" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$req_hash" > "$stamp"
fi

MOA_MODEL="$(bash "$REPO/scripts/fetch-model.sh")"
export MOA_MODEL
echo "golden: model $MOA_MODEL" >&2

# Keep CPU use modest on shared machines (numpy/BLAS threads).
export PYTHONDONTWRITEBYTECODE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokenizer dequant logits)
for t in "${targets[@]}"; do
  case "$t" in
    tokenizer|dequant|logits|qwen_logits) ;;
    tokenizer_corpus|logits_llamacpp) bash "$REPO/scripts/build-llamacpp.sh" >/dev/null ;;
    *) echo "golden: unknown target '$t' (tokenizer|dequant|logits|tokenizer_corpus|qwen_logits|logits_llamacpp)" >&2; exit 2 ;;
  esac
  echo "golden: make_${t}_golden.py" >&2
  "$VENV/bin/python" "$HERE/make_${t}_golden.py"
done
