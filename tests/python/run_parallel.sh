#!/usr/bin/env bash
# mxq.torch's tensor- / expert-parallel modules on CPU (tests/python/package/test_pkg_parallel.py:
# gloo process groups of 2 and 4 spawned by torch.multiprocessing) and the shard tests. Not part
# of scripts/test.sh (CI has no torch, where the file skips with the reason): this script
# installs torch into a venv (VENV, default build/torch-venv: torch from the PyTorch CPU index
# when reachable, else PyPI), builds the package in BUILD (default build/parallel, CPU only,
# one job unless JOBS) and runs the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${VENV:-build/torch-venv}
build=${BUILD:-build/parallel}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  "$venv/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
    || "$venv/bin/pip" install -q torch
fi
"$venv/bin/pip" install -q numpy ml_dtypes pytest
"$venv/bin/python" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMXQ_CUDA=OFF -DMXQ_BUILD_PYTHON=ON \
  -DMXQ_BUILD_BENCH=OFF -DMXQ_BUILD_TESTS=OFF -DPython_EXECUTABLE="$venv/bin/python" >/dev/null
cmake --build "$build" -j "${JOBS:-1}" --target _core mxq
MXQ_CLI=$build/mxq MXQ_REQUIRE_PACKAGE=1 PYTHONPATH=$PWD/$build/python \
  "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider \
  tests/python/package/test_pkg_parallel.py tests/python/package/test_pkg_shard.py "$@"
