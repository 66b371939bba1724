#!/usr/bin/env bash
# On a GPU host: the activation-key checks of issue 15 (MX activation keys on cuda-mma through
# the GPU fake-quant kernel, the oracle's refusals), with every log written to OUTDIR.
#   scripts/gpu_check_act.sh OUTDIR [BUILD_DIR]      (BUILD_DIR default build/cuda)
# Builds the targets it needs first (nvcc required; a no-op when they are up to date).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check_act.sh OUTDIR [BUILD_DIR]}
b=${2:-build/cuda}
mkdir -p "$out"
status=0
run() {  # name, command...: log to $out/name.log, remember failures
  local name=$1; shift
  echo "== $name: $*"
  if "$@" >"$out/$name.log" 2>&1; then echo "   ok"; else echo "   FAILED (rc $?)"; status=1; fi
  tail -n 3 "$out/$name.log" | sed 's/^/   /'
}
if [ ! -f "$b/build.ninja" ] && [ ! -f "$b/Makefile" ]; then
  cmake -S . -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMXQ_CUDA=ON >/dev/null || exit 1
fi
cmake --build "$b" --target mxq_cuda_act_tests mxq_backend_cases_tests mxq_cuda_moe_layer_tests \
  mxq_cuda_gemm_tests mxq || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv >"$out/device.txt" 2>&1
# The kernel bit for bit against the CPU definition, cuda-mma linear bit for bit against its
# BF16 path on CPU-quantized input, MoE against cpu-reference, the declarations.
run act_tests "$b/tests/cuda/mxq_cuda_act_tests"
# The shared case list: every MX key (fp6 included, floor and even scale rules) and the FP8
# keys on cuda-mma against cpu-reference; the MoE FP8 cases show as skipped on cuda-mma (fused
# gate/up epilogue) and every quantized key as skipped on cuda-hopper ("is not declared").
run cases_act "$b/tests/cases/mxq_backend_cases_tests" --gtest_filter='*dynamic*:*fp8_static*:*_even*'
{ echo "cuda-hopper refusals: $(grep -c 'is not declared by cuda-hopper' "$out/cases_act.log")"
  echo "cuda-mma MoE FP8 refusals: $(grep -c 'fused gate/up epilogue' "$out/cases_act.log")"
} >"$out/cases_act_refusals.txt"
cat "$out/cases_act_refusals.txt"
# The existing cuda-mma tests still pass (the linear and MoE run paths changed).
run gemm_tests "$b/tests/cuda/mxq_cuda_gemm_tests"
run moe_layer_tests "$b/tests/cuda/mxq_cuda_moe_layer_tests"
san="compute-sanitizer --error-exitcode 1"
run memcheck_act $san --tool memcheck "$b/tests/cuda/mxq_cuda_act_tests" \
  --gtest_filter='CudaActKeys.FakeQuant*:CudaActKeys.Fp8*:CudaActKeys.MoEUnderMxKeysMatchesReference'
run racecheck_act $san --tool racecheck "$b/tests/cuda/mxq_cuda_act_tests" \
  --gtest_filter='CudaActKeys.FakeQuantEqualsCpuDefinitionBitForBit'
# explain: cuda-hopper refused for a W4A4 problem with its reason, cuda-mma chosen.
run explain_w4a4 "$b/mxq" explain --op linear --weights mxfp4 --act mxfp4-dynamic --m 512 --n 4096 --k 4096
grep -q "not declared by cuda-hopper" "$out/explain_w4a4.log" || { echo "   explain: no cuda-hopper refusal line"; status=1; }
grep -q "cuda-mma.*chosen" "$out/explain_w4a4.log" || { echo "   explain: cuda-mma not chosen"; status=1; }
# The torch modules, checkpoint activation scheme on CUDA tensors included: the package's
# own GPU runner (it builds the package with the CUDA part; see its header for the deps).
run torch_gpu tests/python/run_torch_gpu.sh "$out/torch-gpu.txt"
exit $status
