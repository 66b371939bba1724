#!/usr/bin/env bash
# Sets everything up and runs mxq's main job:
#   ./scripts/run.sh            quantize the embedded sample model (written by `mxq sample`)
#   ./scripts/run.sh MODEL      quantize MODEL (a safetensors file or a model directory)
# to MXFP4 (compressed-tensors), then inspect the result, verify it against the original, show
# which backend each layer gets on this machine (mxq explain) and run every layer on it against
# cpu-reference (mxq run).
# Extra arguments after MODEL go to `mxq quantize` (e.g. --scheme mxfp8 --scale-rule rceil).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target mxq
mxq=./build/release/mxq

if [ $# -ge 1 ]; then
  model=$1
  shift
  out=build/out/$(basename "${model%/}")-mx
else
  model=build/out/sample-bf16
  out=build/out/sample-mxfp4
  echo "== mxq sample $model (no model given: the embedded deterministic sample) =="
  "$mxq" sample "$model" --overwrite
fi
mkdir -p build/out
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
