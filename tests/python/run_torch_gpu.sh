#!/usr/bin/env bash
# The torch tests of the mxq Python package on the GPU host (torch + nvcc, no internet): builds
# the package there with CMake (CUDA part on, sm_90a), then runs tests/python/package (numpy
# suite + test_pkg_torch.py: opcheck, torch.compile, CUDA graphs, results vs cpu-reference) and
# writes the output to $1 (default tests/python/results/torch-gpu.txt; also $OUT/ if set).
# Carry build/gpu-deps (tests/python/fetch_torch_gpu_deps.sh fills it on a machine with PyPI).
# With PIP_CHECK=1 it also checks `pip install --no-build-isolation .` there.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-tests/python/results/torch-gpu.txt}
deps=${DEPS:-build/gpu-deps}
mkdir -p "$(dirname "$out")"
py=$(python3 -c 'import sys; print(sys.executable)')
{
  echo "# mxq Python package torch tests, $(date -u +%Y-%m-%d), $(hostname)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -2
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
  prefix=/tmp/mxq-deps
  if ls "$deps"/debs/*.deb >/dev/null 2>&1; then
    for f in "$deps"/debs/*.deb; do dpkg -x "$f" "$prefix"; done
  fi
  if ls "$deps"/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/mxq-site "$deps"/wheels/*.whl
    export PYTHONPATH=/tmp/mxq-site
  fi
  python3 -c "import nanobind; print('nanobind', nanobind.__version__)"
  echo "## build (cmake: MXQ_BUILD_PYTHON=ON, MXQ_CUDA=ON, sm_90a)"
  start=$SECONDS
  cmake -S . -B build/gpu-py -G Ninja -DCMAKE_BUILD_TYPE=Release -DMXQ_BUILD_PYTHON=ON \
    -DMXQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a-real -DMXQ_BUILD_BENCH=OFF -DMXQ_BUILD_TESTS=OFF \
    -DCMAKE_PREFIX_PATH="$prefix/usr" -DPython_EXECUTABLE="$py" > /tmp/mxq-configure.log 2>&1 \
    || { tail -40 /tmp/mxq-configure.log; echo "rc=configure-failed"; exit 1; }
  cmake --build build/gpu-py -j "$(nproc)" --target _core mxq > /tmp/mxq-build.log 2>&1 \
    || { grep -E "error|Error" -A3 /tmp/mxq-build.log | head -60; echo "rc=build-failed"; exit 1; }
  echo "built in $((SECONDS - start)) s"
  # how libstdc++ reaches the extension (a static copy needs <iostream> in module.cc)
  echo "_core libstdc++: $(ldd build/gpu-py/python/mxq/_core*.so | grep -o 'libstdc++[^ ]*' || echo 'not dynamic'); link flags: $(grep -o -- '-static-lib[a-z+]*' build/gpu-py/build.ninja | sort -u | tr '\n' ' ')${LDFLAGS:+ LDFLAGS=$LDFLAGS}"
  export PYTHONPATH=$PWD/build/gpu-py/python${PYTHONPATH:+:$PYTHONPATH}
  python3 -c "import mxq; print('mxq', mxq.__version__, 'cuda_built', mxq.cuda_built); print(mxq.device()); [print(' ', b) for b in mxq.backends()]"
  echo "## pytest tests/python/package"
  MXQ_CLI=build/gpu-py/mxq MXQ_REQUIRE_PACKAGE=1 PYTHONUNBUFFERED=1 \
    python3 -m pytest -v -rs -p no:cacheprovider tests/python/package 2>&1
  echo "rc=$?"
  if [ "${PIP_CHECK:-0}" = 1 ]; then
    echo "## pip install --no-build-isolation --no-deps . (into /tmp/mxq-pip)"
    start=$SECONDS
    CMAKE_PREFIX_PATH="$prefix/usr" python3 -m pip install -q --no-build-isolation --no-deps \
      --no-index --target /tmp/mxq-pip . 2>&1 | tail -5
    (cd /tmp && PYTHONPATH=/tmp/mxq-pip python3 -c "import mxq; print('pip-installed mxq ok, cuda_built', mxq.cuda_built)")
    echo "pip build+install $((SECONDS - start)) s"
  fi
} 2>&1 | tee "$out"
[ -n "${OUT:-}" ] && [ "$(cd "$(dirname "$out")" && pwd)" != "$(cd "$OUT" && pwd)" ] && cp "$out" "$OUT/" || true
