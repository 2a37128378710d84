#!/usr/bin/env bash
# Builds llama.cpp, our comparator and independent oracle, from the source distribution of
# llama-cpp-python on PyPI (it vendors llama.cpp), into a cache outside the repository, and
# prints the directory holding its programs (llama-bench, llama-batched-bench,
# llama-tokenize, llama-simple) and libllama.so. Idempotent: a finished build is reused.
# Usage: scripts/build-llamacpp.sh          (CPU only, -march=native, shared libraries)
# Cache: $MOA_CACHE_DIR, else $XDG_CACHE_HOME/moa, else ~/.cache/moa; the build lives in
# $CACHE/llama.cpp-$VERSION. Takes ~10-15 minutes on 2 cores the first time.
set -euo pipefail

VERSION=0.3.36
SDIST_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CACHE="${MOA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/moa}"
ROOT="$CACHE/llama.cpp-$VERSION"
BIN="$ROOT/build/bin"
TARGETS=(llama-bench llama-batched-bench llama-tokenize llama-simple llama)

die() { echo "build-llamacpp: $*" >&2; exit 1; }

if [ -f "$ROOT/.done" ]; then echo "$BIN"; exit 0; fi
command -v cmake >/dev/null || die "cmake is required (scripts/setup-deps.sh)"
mkdir -p "$ROOT"
SD="$ROOT/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SD" ] || [ "$(sha256sum "$SD" | cut -d' ' -f1)" != "$SDIST_SHA" ]; then
  rm -f "$SD"
  echo "build-llamacpp: downloading llama-cpp-python==$VERSION (sdist) from PyPI" >&2
  tmpd=$(mktemp -d "$ROOT/dl.XXXXXX")
  trap 'rm -rf "$tmpd"' EXIT
  echo "llama-cpp-python==$VERSION --hash=sha256:$SDIST_SHA" > "$tmpd/req.txt"
  # The file itself, from the package index's simple page (PEP 503; $PIP_INDEX_URL if set):
  # `pip download` of an sdist prepares its metadata, which on a new machine means building
  # its build dependencies from source (--no-binary :all:) for a long while.
  python3 - "$VERSION" "$tmpd" <<'PY' >&2 ||
import os, re, ssl, sys, urllib.parse, urllib.request
version, out = sys.argv[1], sys.argv[2]
index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
ctx = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
name = "llama_cpp_python-%s.tar.gz" % version
page = urllib.request.urlopen(index + "/llama-cpp-python/", context=ctx, timeout=120).read().decode()
links = [h for h in re.findall(r'href="([^"]+)"', page) if h.split("#")[0].endswith("/" + name)]
if not links:
    sys.exit("build-llamacpp: %s not listed on %s/llama-cpp-python/" % (name, index))
url = urllib.parse.urljoin(index + "/llama-cpp-python/", links[0].split("#")[0])
with urllib.request.urlopen(url, context=ctx, timeout=600) as r, open(os.path.join(out, name), "wb") as f:
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        f.write(b)
PY
  python3 -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    --require-hashes -r "$tmpd/req.txt" -d "$tmpd" >&2 ||
    die "download of llama-cpp-python==$VERSION failed (or its sha256 is not $SDIST_SHA)"
  got=$(sha256sum "$tmpd"/llama_cpp_python-$VERSION.tar.gz | cut -d' ' -f1)
  [ "$got" = "$SDIST_SHA" ] || die "sdist sha256 $got, expected $SDIST_SHA (refused)"
  mv "$tmpd"/llama_cpp_python-$VERSION.tar.gz "$SD"
  rm -rf "$tmpd"
  trap - EXIT
fi
if [ ! -d "$ROOT/src/vendor/llama.cpp" ]; then
  rm -rf "$ROOT/src" "$ROOT/src.tmp"
  mkdir -p "$ROOT/src.tmp"
  tar xzf "$SD" -C "$ROOT/src.tmp" --strip-components=1
  mv "$ROOT/src.tmp" "$ROOT/src"
fi
echo "build-llamacpp: building ${TARGETS[*]} (CPU) in $ROOT/build" >&2
cmake -S "$ROOT/src/vendor/llama.cpp" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build "$ROOT/build" -j"$(nproc)" --target "${TARGETS[@]}" >&2
for t in llama-bench llama-batched-bench llama-tokenize llama-simple; do
  [ -x "$BIN/$t" ] || die "$BIN/$t was not built"
done
touch "$ROOT/.done"
echo "$BIN"
