#!/usr/bin/env bash
# Runs the compressed-tensors interop test where torch is installed (the GPU host), installing
# compressed-tensors from wheels in $WHEELS (default: build/wheels, filled on a machine with
# PyPI by scripts/fetch_interop_wheels.sh), and writes the output to $1
# (default tests/python/results/interop.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-tests/python/results/interop.txt}
wheels=${WHEELS:-build/wheels}
mkdir -p "$(dirname "$out")"
python3 -c "import compressed_tensors" 2>/dev/null ||
  python3 -m pip install -q --no-index --no-deps "$wheels"/*.whl
{
  echo "# compressed-tensors interop, $(date -u +%Y-%m-%d), $(hostname)"
  python3 -c "import torch, compressed_tensors; print('torch', torch.__version__, 'compressed-tensors', compressed_tensors.__version__)"
  MXQ_CLI=${MXQ_CLI:-build/release/mxq} python3 -m pytest -v -s tests/python/test_compressed_tensors_interop.py 2>&1
} | tee "$out"
