#!/usr/bin/env bash
# The GPU kit on a bare machine (Python, PyTorch, NumPy, ONNX Runtime; no network):
#  1. installs the carried wheels (benchmarks/gpu/wheels/, from fetch_wheels.sh) with
#     pip install --no-index --no-deps --target benchmarks/gpu/site, put first on PYTHONPATH;
#  2. unpacks CIFAR-10 from shared/data/cifar10-jpg.tar.gz (or ../shared/data, or $CIFAR_TAR) into
#     $CIFAR_DIR (default /tmp/cifar10) unless it is there;
#  3. runs kit.py: (a) search with a 10-minute budget, (b) loop vs DataLoader, (c) utilisation.
#     benchmarks/gpu/run.sh                                   # on the GPU, all defaults
#     benchmarks/gpu/run.sh --device cpu --budget 20 --epochs 1 --limit 20 --test-limit 20 \
#         --util-seconds 15 --jobs 2 --loop-epochs 1 --repeats 1 --widths 16,32,64   # CPU check
set -euo pipefail
KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$KIT/../.." && pwd)"
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-$KIT/wheels}"
SITE="${SITE:-$KIT/site}"
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  if [ ! -f "$SITE/.installed" ]; then
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
    touch "$SITE/.installed"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"  # carried versions win over older ones
else
  echo "no wheels in $WHEELS (run fetch_wheels.sh where there is a network); using what is installed" >&2
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
CIFAR_DIR="${CIFAR_DIR:-/tmp/cifar10}"
if [ ! -d "$CIFAR_DIR/train" ]; then
  TAR="${CIFAR_TAR:-}"
  for t in "$REPO/shared/data/cifar10-jpg.tar.gz" "$REPO/../shared/data/cifar10-jpg.tar.gz"; do
    [ -z "$TAR" ] && [ -f "$t" ] && TAR="$t"
  done
  [ -n "$TAR" ] || { echo "CIFAR-10 not found: set CIFAR_TAR=/path/cifar10-jpg.tar.gz" >&2; exit 1; }
  mkdir -p "$CIFAR_DIR" && tar -xzf "$TAR" -C "$CIFAR_DIR"
fi
"$PY" -c "import torch, onnxruntime, optuna, torch_pruning, onnx, typer; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), '| onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
exec "$PY" "$KIT/kit.py" --data "$CIFAR_DIR" "$@"
