#!/usr/bin/env bash
# Builds mxq with its CUDA part where nvcc is (no GPU needed): the GPU tests, the layout test,
# the shared case list and the GPU benchmark shim, in build/cuda. Carry build/cuda (or the
# binaries scripts/gpu_check.sh names) to a GPU host and run scripts/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset cuda >/dev/null
targets=(mxq_cuda_tests mxq_cuda_layout_tests mxq_cuda_gemm_tests mxq_cuda_moe_layer_tests
         mxq_backend_cases_tests mxq_cuda_fault_tests mxq_cuda_stress
         mxq_bench_cuda_shim mxq)
for t in mxq_cuda_quant_tests mxq_bench_cuda_quant mxq_cuda_moe_tests mxq_cuda_hopper_tests \
         mxq_cuda_act_tests; do  # when present
  if cmake --build build/cuda --target help | grep -q "^$t"; then targets+=("$t"); fi
done
cmake --build build/cuda --target "${targets[@]}"
echo "built: ${targets[*]}"
