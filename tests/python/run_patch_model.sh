#!/usr/bin/env bash
# mxq.torch.patch_model tests on CPU (tests/python/package/test_pkg_patch_model.py): tiny random
# transformers models quantized by mxq, patched, compared with the dequantized model. Not part
# of scripts/test.sh (CI has no torch): this script installs CPU torch + transformers into a
# venv (VENV, default build/torch-venv; torch from the PyTorch CPU index when reachable, else
# PyPI), builds the package in BUILD (default build/patch-model, CPU only) and runs the tests
# and the torch op tests. Options via the environment:
#   MXQ_PATCH_COMPILE_CPU=1  also torch.compile the patched models on CPU (about a minute)
#   TRANSFORMERS=SPEC        the transformers requirement (default: the newest)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${VENV:-build/torch-venv}
build=${BUILD:-build/patch-model}
py=$(command -v python3)
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  "$venv/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
    || "$venv/bin/pip" install -q torch
fi
"$venv/bin/pip" install -q "${TRANSFORMERS:-transformers}" numpy ml_dtypes pytest safetensors
"$venv/bin/python" -c "import torch, transformers, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMXQ_CUDA=OFF -DMXQ_BUILD_PYTHON=ON \
  -DMXQ_BUILD_BENCH=OFF -DMXQ_BUILD_TESTS=OFF -DPython_EXECUTABLE="$venv/bin/python" >/dev/null
cmake --build "$build" -j "$(nproc)" --target _core mxq
MXQ_CLI=$build/mxq MXQ_REQUIRE_PACKAGE=1 PYTHONPATH=$PWD/$build/python \
  "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider \
  tests/python/package/test_pkg_patch_model.py tests/python/package/test_pkg_torch.py "$@"
