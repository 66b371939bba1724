#!/usr/bin/env bash
# Sets everything up and runs mxq's main job:
#   ./scripts/run.sh            quantize the embedded sample model (written by `mxq sample`)
#   ./scripts/run.sh MODEL      quantize MODEL (a safetensors file or a model directory)
# to MXFP4 (compressed-tensors), then inspect the result, verify it against the original, show
# which backend each layer gets on this machine (mxq explain) and run every layer on it against
# cpu-reference (mxq run). The last line of the report says whether every layer matched.
# Extra arguments after MODEL go to `mxq quantize` (e.g. --scheme mxfp8 --scale-rule rceil).
#
# Environment (for CI and tests; the defaults are what a user wants):
#   MXQ_OUT_DIR     where the sample and the quantized model go (default build/out; created)
#   MXQ_BUILD_DIR   the build directory (default build/release, the release preset's). An
#                   existing build is reused as configured (e.g. by scripts/test.sh), so running
#                   both commands builds once.
#   MXQ_SKIP_SETUP=1  skip setup.sh and the build: use the mxq already built in MXQ_BUILD_DIR
#                   (or MXQ_BIN, a path to an mxq binary)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${MXQ_BUILD_DIR:-build/release}
out_dir=${MXQ_OUT_DIR:-build/out}
if [ "${MXQ_SKIP_SETUP:-0}" != 1 ]; then
  ./scripts/setup.sh
  if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    if [ "$build_dir" = build/release ]; then
      cmake --preset release >/dev/null
    else
      cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
  fi
  # Not re-configured when the cache exists: `cmake --build` re-runs CMake itself when a
  # CMakeLists.txt changed, and keeps the options another configure chose (MXQ_BUILD_PYTHON).
  cmake --build "$build_dir" --target mxq
fi
mxq=${MXQ_BIN:-$build_dir/mxq}
if [ ! -x "$mxq" ]; then
  echo "run.sh: no mxq binary at '$mxq' (build it, or unset MXQ_SKIP_SETUP)" >&2
  exit 1
fi
mkdir -p "$out_dir"

if [ $# -ge 1 ]; then
  model=$1
  shift
  if [ ! -e "$model" ]; then
    echo "run.sh: model '$model' does not exist (a safetensors file or a model directory)" >&2
    exit 1
  fi
  out=$out_dir/$(basename "${model%/}")-mx
else
  model=$out_dir/sample-bf16
  out=$out_dir/sample-mxfp4
  echo "== mxq sample $model (no model given: the embedded deterministic sample) =="
  "$mxq" sample "$model" --overwrite
fi
echo "== mxq quantize $model -o $out $* =="
"$mxq" quantize "$model" -o "$out" --overwrite "$@"
echo "== mxq inspect $out =="
"$mxq" inspect "$out"
echo "== mxq verify $out --against $model =="
"$mxq" verify "$out" --against "$model"
echo "== mxq explain $out =="
"$mxq" explain "$out"
echo "== mxq run $out --tokens 4 =="
"$mxq" run "$out" --tokens 4
