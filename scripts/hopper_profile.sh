#!/usr/bin/env bash
# cuda-hopper diagnosis on a GPU host (after scripts/build_cuda.sh): Nsight Compute profiles of
# chosen GEMM cases (full set, per-instruction SASS samples as CSV), the SASS of the kernels,
# and compute-sanitizer racecheck with every hazard printed. Everything lands in OUTDIR.
#   scripts/hopper_profile.sh OUTDIR [cases]   cases: "backend:format:NxK:M ..." (default below)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/hopper_profile.sh OUTDIR [cases]}
cases=${2:-"cuda-hopper:mxfp4:8192x8192:1 cuda-hopper:mxfp4:8192x8192:128 cuda-mma:mxfp4:8192x8192:1"}
b=${MXQ_BUILD_DIR:-build/cuda}
shim=$b/bench/libmxq_bench_cuda_shim.so
mkdir -p "$out"
for c in $cases; do
  IFS=: read -r backend fmt shape m <<<"$c"
  tag=${backend}_${fmt}_${shape}_m${m}
  kern='regex:hopper_gemm_kernel'
  [ "$backend" = cuda-mma ] && kern='regex:mx_gemm'
  echo "== ncu $tag"
  timeout 240 ncu --set full --import-source yes -k "$kern" --launch-skip 1 --launch-count 1 \
    -o "$out/$tag" python3 bench/cuda_gemm_bench.py --shim "$shim" --out /tmp/prof.json \
    --backends "$backend" --shapes "$shape" --ms "$m" --formats "$fmt" --no-peers --no-humming \
    --reps 1 >"$out/$tag.run.log" 2>&1 || echo "   ncu failed: $(tail -3 "$out/$tag.run.log")"
  if [ -f "$out/$tag.ncu-rep" ]; then
    ncu -i "$out/$tag.ncu-rep" --page details >"$out/$tag.details.txt" 2>&1
    ncu -i "$out/$tag.ncu-rep" --page source --csv --print-source sass >"$out/$tag.sass.csv" 2>&1
    xz -T0 "$out/$tag.sass.csv"
    grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Registers Per|Achieved Occupancy" \
      "$out/$tag.details.txt" | head -20
  fi
done
echo "== sass"
cuobjdump -sass "$shim" 2>/dev/null | xz -T0 >"$out/shim.sass.xz"
echo "== racecheck"
timeout 300 compute-sanitizer --tool racecheck --racecheck-report all --print-limit 40 \
  "$b/tests/cuda/mxq_cuda_hopper_tests" --gtest_filter='HopperGemm.BitwiseDeterministic*' \
  >"$out/racecheck.log" 2>&1
tail -5 "$out/racecheck.log"
