#!/usr/bin/env bash
# Sets up everything and runs the whole test suite: the Release build with every test
# (labels unit, model; gpu tests skip without a device), then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer. Exits non-zero on any failure.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
MOA_MODEL=$(bash scripts/fetch-model.sh)
# the long-context test model (qwen2): tokenizer corpus, dequantisation golden, logits
# golden, chat answer and a 4K needle (tests labelled model that read MOA_MODEL_QWEN)
MOA_MODEL_QWEN=$(bash scripts/fetch-model.sh qwen2.5-coder-0.5b)
export MOA_MODEL MOA_MODEL_QWEN
BUILD=$(bash scripts/build.sh)

status=0
echo "== ctest: all tests (unit, model, gpu) in $BUILD =="
ctest --test-dir "$BUILD" --output-on-failure -j2 --timeout 1500 || status=1

echo "== ctest: unit tests under ASan + UBSan =="
SAN=build-asan
cmake -S . -B "$SAN" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOA_SANITIZE=ON -DMOA_UNIT_ONLY=ON >&2
cmake --build "$SAN" -j"$(nproc)" >&2
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$SAN" -L unit --output-on-failure -j2 --timeout 900 || status=1

exit $status
