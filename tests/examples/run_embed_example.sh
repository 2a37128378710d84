#!/usr/bin/env bash
# Installs the runtime from the build tree into a temporary prefix, builds examples/embed
# against the installed package only (find_package(moa), <moa/runtime.h>), runs it, and
# checks the pkg-config file. Usage: run_embed_example.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" --component Unspecified >/dev/null
test -f "$tmp/prefix/include/moa/runtime.h" -a -f "$tmp/prefix/include/moa/base.h"
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --libs --cflags moa | grep -q -- "-lmoa"
cmake -S "$src/examples/embed" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/build" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/build/toy_engine"
# a published plan file through the C API (plans/ of the repository, or a test plan)
plan=$(ls "$src"/plans/*.json 2>/dev/null | head -1 || true)
[ -n "$plan" ] || plan="$src/tests/fuzz/corpus/plan/validated.json"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/build/toy_engine" "$plan" 2048 | tee "$tmp/plan.out"
grep -q "toy_engine: ok" "$tmp/plan.out"
# the same program built with pkg-config alone
cc -o "$tmp/toy_pc" "$src/examples/embed/toy_engine.c" $(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs moa) -lm
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/toy_pc" | tail -1
echo "1 passed, 0 failed"
