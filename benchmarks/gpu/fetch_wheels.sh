#!/usr/bin/env bash
# Download the wheels the GPU kit installs (requirements.txt, no dependencies resolved: the list is
# complete) for CPython 3.12 on x86-64 Linux into benchmarks/gpu/wheels/ (git-ignored; $WHEELS moves it).
#   benchmarks/gpu/fetch_wheels.sh [PYTHON_VERSION]      # default 3.12
set -euo pipefail
KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYV="${1:-3.12}"
ABI="cp${PYV/./}"
WHEELS="${WHEELS:-$KIT/wheels}"
mkdir -p "$WHEELS"
python -m pip download --no-deps --only-binary=:all: --dest "$WHEELS" \
  --python-version "$PYV" --implementation cp --abi "$ABI" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -r "$KIT/requirements.txt"
du -sh "$WHEELS"
ls "$WHEELS" | wc -l
