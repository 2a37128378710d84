#!/usr/bin/env bash
# Configures and builds the project (Release) into build/ (or $MOA_BUILD_DIR). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${MOA_BUILD_DIR:-build}"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "$@" >&2
cmake --build "$BUILD" -j"$(nproc)" >&2
echo "$BUILD"
