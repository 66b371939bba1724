#!/usr/bin/env bash
# The CUDA half of issue 20's packaging checks, for a machine with nvcc (the install test) and
# a GPU (the bench and the wheel's torch tests); CI covers the CPU half.
#   scripts/check_cuda_package.sh OUTDIR [WHEEL]
# 1. builds libmxq (static + shared, with the CUDA backends) and the CLI in build/cuda
#    (cmake --preset cuda) and runs tests/install/install_test.sh on it: cmake --install into a
#    temp prefix, a consumer project with find_package(mxq) + mxq::mxq built and run (needs
#    nvcc only, no GPU);
# 2. with a GPU: `mxq bench` of an MXFP4 linear layer (M=1 and M=512) and a gpt-oss-shaped MoE
#    layer on every backend that can run them, JSON reports into OUTDIR;
# 3. with WHEEL (scripts/build_wheel.sh where nvcc is; CUDA part for sm_80 + sm_90a):
#    tests/python/gpu_wheel_test.sh WHEEL OUTDIR/wheel: a fresh venv that sees the host's torch
#    (also when the host Python is itself a venv, as /opt/torch/.venv on the GPU host; PYTHON
#    picks it, default python3), the offline install timed, the version and CLI check, the CUDA
#    part check and the torch tests of tests/python/package from the installed wheel; its logs
#    and summary.txt in OUTDIR/wheel.
# Every step logs to OUTDIR/<step>.log; exit 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/check_cuda_package.sh OUTDIR [WHEEL]}
whl=${2:-}
mkdir -p "$out"
status=0
run() {  # name, command...
  local name=$1; shift
  echo "== $name: $*"
  if "$@" >"$out/$name.log" 2>&1; then echo "   ok"; else echo "   FAILED (rc $?)"; status=1; fi
  tail -n 3 "$out/$name.log" | sed 's/^/   /'
}
cmake --preset cuda >"$out/configure.log" 2>&1 || { tail -20 "$out/configure.log"; exit 1; }
run build cmake --build build/cuda --target mxq mxq_lib_static mxq_lib_shared
run install_package tests/install/install_test.sh build/cuda "$(command -v cmake)" "$(command -v c++)" Ninja ON
if nvidia-smi -L >/dev/null 2>&1; then
  m=build/cuda/mxq
  # (cpu-reference computes in float64: minutes per call at these sizes; cpu at M=512 too.)
  run bench_linear_m1 $m bench --op linear --weights mxfp4 --m 1 --n 8192 --k 8192 \
    --skip cpu-reference --json "$out/bench_linear_m1.json"
  run bench_linear_m512 $m bench --op linear --weights mxfp4 --m 512 --n 8192 --k 8192 \
    --skip cpu-reference --skip cpu --json "$out/bench_linear_m512.json"
  run bench_moe $m bench --op moe --weights mxfp4 --m 1 --n 2880 --k 2880 --experts 128 --topk 4 \
    --activation swigluoai --layout interleaved --routing topk-softmax --bias --json "$out/bench_moe.json"
else
  echo "== no GPU: bench steps skipped"
fi
if [ -n "$whl" ]; then
  run gpu_wheel tests/python/gpu_wheel_test.sh "$whl" "$out/wheel"
fi
exit $status
