#!/usr/bin/env bash
# On a GPU host (issue 19, deliverables 3 and 5): the CUDA allocation-fault tests and the GPU
# stress test, each log written to OUTDIR.
#   scripts/gpu_faults.sh OUTDIR [BUILD_DIR]   (BUILD_DIR: default build/cuda; the binaries are
#                                              BUILD_DIR/tests/cuda/mxq_cuda_fault_tests and
#                                              mxq_cuda_stress, from scripts/build_cuda.sh)
# MXQ_STRESS_SECONDS (default 120) and MXQ_STRESS_THREADS (default 6) set the stress run;
# MXQ_FAULTS_TIMEOUT (default 300 s) bounds each fault-test process, the stress run gets
# MXQ_STRESS_SECONDS + 60.
# The device-allocation sweeps and the host-allocation sweeps run as separate processes, so a
# crash in one (an exception through a noexcept frame) leaves the other's log intact.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_faults.sh OUTDIR [BUILD_DIR]}
b=${2:-build/cuda}
mkdir -p "$out"
status=0
run() {  # name, timeout seconds, command...: log to $out/name.log, remember failures
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  local t0=$SECONDS
  if timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1; then
    echo "   ok ($((SECONDS - t0)) s)"
  else
    echo "   FAILED (rc $?, $((SECONDS - t0)) s)"; status=1
  fi
  tail -n 4 "$out/$name.log" | sed 's/^/   /'
}
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse HEAD 2>/dev/null || echo "commit: unknown (no git here)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
} >"$out/device.txt"
ft=$b/tests/cuda/mxq_cuda_fault_tests
st=$b/tests/cuda/mxq_cuda_stress
for x in "$ft" "$st"; do
  [ -x "$x" ] || { echo "missing $x (scripts/build_cuda.sh builds it)"; exit 2; }
done
limit=${MXQ_FAULTS_TIMEOUT:-300}
run faults_device "$limit" "$ft" --gtest_filter='*DeviceAllocations*:*RealOutOfMemory*'
run faults_host "$limit" "$ft" --gtest_filter='*HostAllocations*'
secs=${MXQ_STRESS_SECONDS:-120}
run stress $((secs + 60)) env MXQ_STRESS_SECONDS="$secs" "$st"
exit $status
