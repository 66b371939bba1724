#!/bin/bash
# Device run (2026-12-07): the FP8 path's pre-decoded tiles (issue 17) -- tests, memcheck, and the
# A/B against the register-A kernel with cuBLAS BF16 / cuBLASLt FP8 rowwise in the same process.
# Needs build/carry/p.tar.xz: p/{mxq_cuda_hopper_tests, mxq_cuda_fp8_operand_tests,
# mxq_cuda_act_tests, libmxq_bench_cuda_shim.so, mxq} of the commit under test; run(carry=["build/carry"]).
# PARTS picks what runs (default all): tests memcheck ab group.
# group (added 2026-12-07, 1dacd41): cuda-mma under fp8-dynamic-group128 (the FP32-scale path
# with per-(token, 128-group) scales) against fp8-dynamic-token (folded path + scale_rows) and
# bf16, M = 1 / 16 / 512. Predicted: 1.1-1.3x the token key's time at M <= 16 (2 extra FP32 ops
# per accumulator per 32-block on an issue-bound decode), 2-4x at M = 512 (no wgmma or
# split-rows variant for the group key). cuda-hopper (0bf3681): the FP8 tensor cores with the
# group scale per k128 promotion; predicted within 1.1x of its token key (32 extra loads + FMA
# for ADD per stage per thread at 128 tokens).
# fixtures (3092ac3): ctest cli_run_fixtures with p/mxq: every producer fixture on cpu, cuda-mma
# and cuda-hopper against cpu-reference.
# suite (2026-12-07, 0c8c483): the whole cuda-mma GEMM / core / MoE suites (5885376 changed how the
# dense launch gets its config).
PARTS=${PARTS:-"tests suite fixtures memcheck ab group"}
has() { [[ " $PARTS " == *" $1 "* ]]; }
R=$OUT/r; L=$R/logs; mkdir -p $L
finish() { cd $OUT && tar -cJf results.tar.xz r && rm -rf r; }
trap finish EXIT
tar -xJf build/carry/p.tar.xz -C build/carry
P=build/carry/p
nvidia-smi -L > $L/device.txt; sha256sum $P/* > $L/sha256.txt; $P/mxq --version > $L/commit.txt 2>&1 || true
PY=/opt/torch/.venv/bin/python3
if has tests; then
  timeout 60 $P/mxq_cuda_fp8_operand_tests > $L/fp8-operand.txt 2>&1; echo "operand rc $?"
  timeout 60 $P/mxq_cuda_act_tests > $L/act.txt 2>&1; echo "act tests rc $?"
  timeout 200 $P/mxq_cuda_hopper_tests --gtest_filter='HopperFp8*' > $L/hopper-fp8.txt 2>&1; echo "fp8 tests rc $?"
  for f in fp8-operand act hopper-fp8; do tail -3 $L/$f.txt; done
fi
if has suite; then
  for t in mxq_cuda_gemm_tests mxq_cuda_tests mxq_cuda_moe_tests; do
    timeout 200 $P/$t > $L/$t.txt 2>&1; echo "$t rc $?"; tail -3 $L/$t.txt
  done
fi
if has fixtures; then
  timeout 200 tests/scripts/cli_run_fixtures_test.sh $P/mxq $L/run-fixtures-detail.txt \
    > $L/run-fixtures.txt 2>&1; echo "fixtures rc $?"
fi
if has memcheck; then
  timeout 150 compute-sanitizer --tool memcheck $P/mxq_cuda_hopper_tests \
    --gtest_filter='HopperFp8Gemm.Predecode*' > $L/memcheck-predecode.txt 2>&1; echo "memcheck rc $?"
  timeout 100 compute-sanitizer --tool memcheck $P/mxq_cuda_act_tests \
    --gtest_filter='CudaActKeys.Fp8*' > $L/memcheck-act-fp8.txt 2>&1; echo "memcheck act rc $?"
fi
if has group; then
  timeout 150 $PY bench/cuda_gemm_bench.py --shim $P/libmxq_bench_cuda_shim.so --out $R/group.json \
    --backends "cuda-hopper+fp8-dynamic-group128,cuda-hopper+fp8-dynamic-token,cuda-mma+fp8-dynamic-group128,cuda-mma+fp8-dynamic-token,cuda-mma,cuda-hopper" \
    --shapes 8192x8192,5760x2880 --ms 1,16,512 --formats mxfp4 --no-humming --no-peers \
    --reps 10 > $L/group.txt 2>&1; echo "group rc $?"
fi
if has ab; then
  K=cuda-hopper+fp8-dynamic-token
  timeout 300 $PY bench/cuda_gemm_bench.py --shim $P/libmxq_bench_cuda_shim.so --out $R/ab.json \
    --backends "$K@128:2:1:1:0:1,$K@128:2:1:1:0:0,cuda-hopper" \
    --shapes 8192x8192,28672x8192,5760x2880 --ms 512,2048,8192 --formats mxfp4 --no-humming \
    --reps 10 > $L/ab.txt 2>&1; echo "ab rc $?"
  # the quantize kernel at decode (W4A8 against W4A16, M = 1 / 16): this shim against
  # p/old_shim.so (the shim before the vectorised quantize, a0467340...), runs alternating
  for run in old-1 new-1 old-2 new-2; do
    S=$P/libmxq_bench_cuda_shim.so; [[ $run == old* ]] && S=$P/old_shim.so
    timeout 60 $PY bench/cuda_gemm_bench.py --shim $S --out $R/small-m-$run.json \
      --backends "$K,cuda-hopper" --shapes 8192x8192,28672x8192,5760x2880 --ms 1,16 \
      --formats mxfp4 --no-humming --no-peers --reps 20 > $L/small-m-$run.txt 2>&1
    echo "small-m $run rc $?"
  done
fi
