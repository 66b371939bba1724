#!/usr/bin/env bash
# Sets everything up and runs every test: the release build (C++ tests, the Python
# cross-check, the Python package built into build/release/python and its numpy tests, CUDA
# code compiled when nvcc exists and GPU tests skipped without a GPU), then the
# AddressSanitizer + UBSan build of the host tests, then the CPU wheel (scripts/build_wheel.sh)
# installed into a fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)

echo "== release build and tests =="
# The Python package is built by this CMake build (not a separate pip build) for the Python
# that setup.sh installed nanobind for; tests/python/package runs against it (ctest label python).
py=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
# The CUDA kernel instance set (MXQ_CUDA_INSTANCES, CMakeLists.txt): where no GPU can run the
# kernels (CI), the minimal set (every kernel template compiled once, sm_90a image, about half
# the CUDA compile time); with a GPU the full set. The environment variable overrides.
if [[ -z ${MXQ_CUDA_INSTANCES:-} ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    MXQ_CUDA_INSTANCES=full
  else
    MXQ_CUDA_INSTANCES=minimal
  fi
fi
echo "CUDA kernel instance set: $MXQ_CUDA_INSTANCES (where nvcc is; MXQ_CUDA_INSTANCES=full|minimal overrides)"
cmake --preset release -DMXQ_BUILD_PYTHON=ON -DPython_EXECUTABLE="$py" \
  -DMXQ_CUDA_INSTANCES="$MXQ_CUDA_INSTANCES" >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

echo "== address/undefined-behaviour sanitizer build and tests =="
# The asan preset compiles at -O1 -g1 (line tables for the stack traces, no full debug info):
# on the 2-core CI machine that roughly halves the sanitizer build, the longest part of CI.
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --preset asan -j "$jobs" -LE fuzz   # the fuzzer already runs under ASan in the release pass
echo "== wheel: build (CPU part), repair to manylinux, install into a fresh venv =="
# scripts/build_wheel.sh compiles the library once more (the wheel's own CMake build, kept in
# build/wheel/ for incremental rebuilds); the install test then takes seconds (issue 20).
# Time-boxed: a fresh build takes about 2 minutes on the 2-core CI machine.
mkdir -p build/dist
MXQ_CUDA=OFF MXQ_WHEEL_JOBS="$jobs" timeout 900 ./scripts/build_wheel.sh build/dist |
  tee build/dist/build_wheel.log
tests/python/wheel_install_test.sh "$(tail -n 1 build/dist/build_wheel.log)"
echo "== all tests passed =="
