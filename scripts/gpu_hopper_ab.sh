#!/usr/bin/env bash
# On a GPU host (sm_90), after scripts/build_cuda.sh: an A/B of a cuda-hopper switch that is read
# from the environment per call (MXQ_HOPPER_EPILOGUE=direct, MXQ_HOPPER_CONFIG=...), in one go:
#   1. the hopper tests and the shared case list (full tier) with the switch set (B), and the
#      hopper tests without it (A);
#   2. compute-sanitizer memcheck (sanitizer cases + ring wraps) and racecheck (sanitizer cases)
#      with the switch set;
#   3. bench/cuda_gemm_bench.py twice each way, interleaved A, B, A, B (every shape, M 1..2048,
#      MXFP4 + MXFP8, cuda-hopper, no peers: the peer run is a separate job);
#   then packs every log and JSON into OUTDIR/ab.tar.xz (the device tool returns few files).
#   scripts/gpu_hopper_ab.sh OUTDIR NAME=VALUE [BUILD_DIR]
# e.g. scripts/gpu_hopper_ab.sh "$OUT" MXQ_HOPPER_EPILOGUE=direct
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_hopper_ab.sh OUTDIR NAME=VALUE [BUILD_DIR]}
switch=${2:?usage: scripts/gpu_hopper_ab.sh OUTDIR NAME=VALUE [BUILD_DIR]}
b=${3:-build/cuda}
case "$switch" in *=*) ;; *) echo "NAME=VALUE expected, got '$switch'" >&2; exit 2 ;; esac
logs=$out/ab-logs
mkdir -p "$logs"
status=0
t0=$(date +%s)
step() {  # name, timeout, command...: log to $logs/name.txt, one summary line
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" >"$logs/$name.txt" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || status=1
  echo "$name rc=$rc t=$(( $(date +%s) - t0 ))s" | tee -a "$logs/summary.txt"
}
{
  git log -1 --format='commit %H %s' 2>/dev/null
  git status --short 2>/dev/null | head -20
  sha256sum "$b/bench/libmxq_bench_cuda_shim.so" "$b/tests/cuda/mxq_cuda_hopper_tests"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv
  echo "switch: $switch"
} >"$logs/provenance.txt" 2>&1
step hopper_A 300 "$b/tests/cuda/mxq_cuda_hopper_tests"
step hopper_B 300 env "$switch" "$b/tests/cuda/mxq_cuda_hopper_tests"
step cases_B 300 env "$switch" MXQ_CASES=full "$b/tests/cases/mxq_backend_cases_tests"
san="compute-sanitizer --error-exitcode 1"
step memcheck_B 300 env "$switch" $san --tool memcheck "$b/tests/cuda/mxq_cuda_hopper_tests" \
  --gtest_filter='HopperGemm.SanitizerSizedClusters:HopperGemm.SanitizerRingWraps:HopperGemm.TmaEpilogue*'
step racecheck_B 300 env "$switch" $san --tool racecheck "$b/tests/cuda/mxq_cuda_hopper_tests" \
  --gtest_filter='HopperGemm.SanitizerSizedClusters'
bench=(python3 bench/cuda_gemm_bench.py --shim "$b/bench/libmxq_bench_cuda_shim.so"
       --backends cuda-hopper --no-humming --no-peers --reps 20 --formats mxfp4,mxfp8
       --ms 1,16,64,128,256,512,2048)
for r in 1 2; do
  step "bench_A_$r" 300 "${bench[@]}" --out "$logs/bench-A-$r.json"
  step "bench_B_$r" 300 env "$switch" "${bench[@]}" --out "$logs/bench-B-$r.json"
done
tar -cJf "$out/ab.tar.xz" -C "$out" ab-logs
echo "logs: $out/ab.tar.xz (status $status)"
exit $status
