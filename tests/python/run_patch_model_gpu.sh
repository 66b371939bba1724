#!/usr/bin/env bash
# mxq.torch.patch_model on the GPU host (torch + transformers installed, nvcc, no internet):
# builds the package with the CUDA part (build/gpu-py, the same build as run_torch_gpu.sh, so
# a second run is incremental), then runs tests/python/package/test_pkg_patch_model.py: every
# test on "cpu" and "cuda" (patch report, logits vs the dequantized model, greedy generate),
# and torch.compile(fullgraph=True) of each patched model on CUDA. Writes the output to $1
# (default tests/python/results/patch-model-gpu.txt; also copied to $OUT/ if set).
# Carry build/gpu-deps (tests/python/fetch_torch_gpu_deps.sh fills it where PyPI is reachable:
# nanobind, scikit-build-core, nlohmann-json, CLI11). Extra pytest arguments after $1.
#   MXQ_PATCH_COMPILE_CPU=1  also torch.compile on CPU
#   MXQ_PATCH_DEVICES=cuda   only the CUDA cases
#   BENCH=0                  skip the decode benchmark (scripts/patch_model_bench.py, run after
#                            the tests: BENCH_LAYERS (4) layers of gpt-oss-20b's dimensions,
#                            BENCH_ARGS e.g. "--compile --tokens 128"; JSON next to $1)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-tests/python/results/patch-model-gpu.txt}
shift || true
deps=${DEPS:-build/gpu-deps}
mkdir -p "$(dirname "$out")"
py=$(python3 -c 'import sys; print(sys.executable)')
{
  echo "# mxq patch_model tests, $(date -u +%Y-%m-%d), $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -2
  python3 -c "import torch, transformers, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count(), 'transformers', transformers.__version__)"
  prefix=/tmp/mxq-deps
  if ls "$deps"/debs/*.deb >/dev/null 2>&1; then
    for f in "$deps"/debs/*.deb; do dpkg -x "$f" "$prefix"; done
  fi
  if ls "$deps"/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/mxq-site "$deps"/wheels/*.whl
    export PYTHONPATH=/tmp/mxq-site
  fi
  echo "## build (cmake: MXQ_BUILD_PYTHON=ON, MXQ_CUDA=ON, sm_90a)"
  start=$SECONDS
  cmake -S . -B build/gpu-py -G Ninja -DCMAKE_BUILD_TYPE=Release -DMXQ_BUILD_PYTHON=ON \
    -DMXQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a-real -DMXQ_BUILD_BENCH=OFF -DMXQ_BUILD_TESTS=OFF \
    -DCMAKE_PREFIX_PATH="$prefix/usr" -DPython_EXECUTABLE="$py" > /tmp/mxq-configure.log 2>&1 \
    || { tail -40 /tmp/mxq-configure.log; echo "rc=configure-failed"; exit 1; }
  cmake --build build/gpu-py -j "$(nproc)" --target _core mxq > /tmp/mxq-build.log 2>&1 \
    || { grep -E "error|Error" -A3 /tmp/mxq-build.log | head -60; echo "rc=build-failed"; exit 1; }
  echo "built in $((SECONDS - start)) s"
  export PYTHONPATH=$PWD/build/gpu-py/python${PYTHONPATH:+:$PYTHONPATH}
  python3 -c "import mxq; print('mxq', mxq.__version__, 'cuda_built', mxq.cuda_built); [print(' ', b['name'], b['device'], b['supported']) for b in mxq.backends()]"
  echo "## pytest tests/python/package/test_pkg_patch_model.py"
  MXQ_CLI=build/gpu-py/mxq MXQ_REQUIRE_PACKAGE=1 PYTHONUNBUFFERED=1 \
    python3 -m pytest -v -s -rs -p no:cacheprovider tests/python/package/test_pkg_patch_model.py "$@" 2>&1 \
    | grep -vE "^(Loading weights|Writing model shards)"
  echo "rc=${PIPESTATUS[0]}"
  if [ "${BENCH:-1}" = 1 ]; then
    # End-to-end decode tokens/s, gpt-oss-20b dimensions, BENCH_LAYERS layers: BF16 vs patched.
    bench_json=$(dirname "$out")/patch-model-decode.json
    echo "## python3 scripts/patch_model_bench.py --layers ${BENCH_LAYERS:-4} ${BENCH_ARGS:-} --json $bench_json"
    python3 scripts/patch_model_bench.py --layers "${BENCH_LAYERS:-4}" ${BENCH_ARGS:-} \
      --json "$bench_json" 2>&1 | grep -vE "^(Loading weights|Writing model shards)|Warning|warn"
    echo "bench rc=${PIPESTATUS[0]}"
    [ -n "${OUT:-}" ] && [ -f "$bench_json" ] && cp "$bench_json" "$OUT/" || true
  fi
} 2>&1 | tee "$out"
[ -n "${OUT:-}" ] && [ "$(cd "$(dirname "$out")" && pwd)" != "$(cd "$OUT" && pwd)" ] && cp "$out" "$OUT/" || true
