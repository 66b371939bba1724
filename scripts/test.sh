#!/usr/bin/env bash
# Sets everything up and runs every test: the release build (C++ tests, the Python
# cross-check, CUDA code compiled when nvcc exists and GPU tests skipped without a GPU),
# then the AddressSanitizer + UBSan build of the host tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)

echo "== release build and tests =="
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

echo "== address/undefined-behaviour sanitizer build and tests =="
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --preset asan -j "$jobs" -LE fuzz   # the fuzzer already runs under ASan in the release pass
echo "== all tests passed =="
