#!/bin/bash
# Device run prepared 2026-12-07, not yet run (no machine): FP8 small-M config sweep + ncu durations, MoE M=1 per-kernel times, ModelOpt GPU fixtures
# Needs build/carry/gpu.tar.xz holding pdl/libmxq_bench_cuda_shim.so (the bench shim of HEAD) and
# build/carry-modelopt (tests/fixtures/producers/README.md); run(carry=["build/carry", "build/carry-modelopt"]).
# PARTS picks what runs (default all; the four take ~750 s, over one call's 600 s): sweep ncu moe modelopt.
PARTS=${PARTS:-"sweep ncu moe modelopt"}
has() { [[ " $PARTS " == *" $1 "* ]]; }
R=$OUT/r; L=$R/logs; mkdir -p $L
finish() { cd $OUT && tar -cJf results.tar.xz r && rm -rf r; }
trap finish EXIT
tar -xJf build/carry/gpu.tar.xz -C build/carry
nvidia-smi -L > $L/device.txt; sha256sum build/carry/pdl/* > $L/sha256.txt
S=build/carry/pdl/libmxq_bench_cuda_shim.so
PY=/opt/torch/.venv/bin/python3
K=cuda-hopper+fp8-dynamic-token
B="cuda-hopper,$K"
for c in 16:2:1:1:0 16:2:2:1:0 16:2:4:1:0 16:3:1:1:0 16:3:2:1:0 16:4:1:1:0 16:4:2:1:0 32:2:2:1:0; do B="$B,$K@$c"; done
has sweep && timeout 150 $PY bench/cuda_gemm_bench.py --shim $S --out $R/fp8-small-m.json --backends $B --shapes 8192x8192,28672x8192,5760x2880 --ms 1,16 --formats mxfp4 --no-humming --no-peers --reps 20 > $L/fp8-small-m.txt 2>&1
echo "sweep rc $?"
has ncu && timeout 120 ncu --kernel-name-base function -k regex:'fp8_rows|hopper_gemm' -c 8 --metrics gpu__time_duration.sum,sm__cycles_elapsed.max,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size $PY bench/cuda_gemm_bench.py --shim $S --out $R/ncu-run.json --backends $K,cuda-hopper --shapes 8192x8192 --ms 1 --formats mxfp4 --no-humming --no-peers --reps 1 > $L/ncu-fp8-m1.txt 2>&1
echo "ncu rc $?"
has moe && timeout 150 $PY bench/cuda_moe_bench.py --shim $S --out $R/moe-kernels.json --backends cuda-hopper,cuda-mma --formats mxfp4 --shapes gpt-oss-120b,deepseek-v3,qwen3-30b-a3b --routings uniform --ms 1,4,16 --reps 10 --no-peers --no-humming --kernels > $L/moe-kernels.txt 2>&1
echo "moe rc $?"
has modelopt && mkdir -p $R/modelopt && OUT=$R/modelopt timeout 330 bash tests/fixtures/producers/gpu_modelopt.sh build/carry-modelopt > $L/modelopt-driver.txt 2>&1
echo "modelopt rc $?"
