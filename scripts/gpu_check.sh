#!/usr/bin/env bash
# On a GPU host, after scripts/build_cuda.sh (here or elsewhere): the GPU tests, the shared case
# list on the GPU backends (full tier), compute-sanitizer memcheck + racecheck, and the GEMM
# benchmark, with every log and result written to OUTDIR.
#   scripts/gpu_check.sh OUTDIR [--quick]   (--quick: benchmark a subset of M)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check.sh OUTDIR [--quick]}
quick=${2:-}
mkdir -p "$out"
b=build/cuda
status=0
run() {  # name, command...: log to $out/name.log, remember failures
  local name=$1; shift
  echo "== $name: $*"
  if "$@" >"$out/$name.log" 2>&1; then echo "   ok"; else echo "   FAILED (rc $?)"; status=1; fi
  tail -n 3 "$out/$name.log" | sed 's/^/   /'
}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv >"$out/device.txt" 2>&1
for t in mxq_cuda_tests mxq_cuda_layout_tests mxq_cuda_gemm_tests mxq_cuda_hopper_tests \
         mxq_cuda_quant_tests mxq_cuda_moe_tests mxq_cuda_moe_layer_tests mxq_cuda_act_tests \
         mxq_cuda_fault_tests; do
  [ -x "$b/tests/cuda/$t" ] && run "$t" "$b/tests/cuda/$t"
done
# The stress test (issue 19): MXQ_STRESS_SECONDS, default 120 (scripts/gpu_faults.sh runs it
# with the fault tests alone).
[ -x "$b/tests/cuda/mxq_cuda_stress" ] &&
  run stress env MXQ_STRESS_SECONDS="${MXQ_STRESS_SECONDS:-120}" "$b/tests/cuda/mxq_cuda_stress"
MXQ_CASES=full run cases_full "$b/tests/cases/mxq_backend_cases_tests"
san="compute-sanitizer --error-exitcode 1"
run memcheck_gemm $san --tool memcheck "$b/tests/cuda/mxq_cuda_gemm_tests" \
  --gtest_filter='CudaRepack.*:CudaMmaGemm.EveryTokenBlockSizeFormatAndDtype:CudaMmaGemm.ExtremeScales*'
run racecheck_gemm $san --tool racecheck "$b/tests/cuda/mxq_cuda_gemm_tests" \
  --gtest_filter='CudaMmaGemm.ExtremeScales*:CudaMmaGemm.CapturedInACudaGraphGivesTheSameBits'
if [ -x "$b/tests/cuda/mxq_cuda_hopper_tests" ]; then
  run memcheck_hopper $san --tool memcheck "$b/tests/cuda/mxq_cuda_hopper_tests" \
    --gtest_filter='HopperRepack.*:HopperGemm.SanitizerSizedClusters:HopperGemm.BitwiseDeterministic*'
  # The sanitizer-sized cases (splits 1 / 2 / 8, seconds under racecheck; the determinism test
  # takes minutes there).
  run racecheck_hopper $san --tool racecheck "$b/tests/cuda/mxq_cuda_hopper_tests" \
    --gtest_filter='HopperGemm.SanitizerSizedClusters'
fi
run memcheck_moe $san --tool memcheck "$b/tests/cuda/mxq_cuda_moe_layer_tests" \
  --gtest_filter='CudaMoERepack.*:CudaMoE.EveryTokenBlockSizeAndSplitRows:CudaMoE.ExpertsWithout*:CudaMoE.LocalExpertMap'
run racecheck_moe $san --tool racecheck "$b/tests/cuda/mxq_cuda_moe_layer_tests" \
  --gtest_filter='CudaMoE.LocalExpertMap:CudaMoE.ScalesOffTheFoldRange'
if [ -x "$b/tests/cuda/mxq_cuda_quant_tests" ]; then
  run memcheck_quant $san --tool memcheck "$b/tests/cuda/mxq_cuda_quant_tests"
fi
bench_args=(--shim "$b/bench/libmxq_bench_cuda_shim.so" --out "$out/gemm.json")
[ -x "$b/tests/cuda/mxq_cuda_hopper_tests" ] && bench_args+=(--backends cuda-hopper,cuda-mma)
[ "$quick" = "--quick" ] && bench_args+=(--quick)
run gemm_bench python3 bench/cuda_gemm_bench.py "${bench_args[@]}"
exit $status
