// Which activation x weight type pairs this build compiled kernels for (MXQ_CUDA_INSTANCES,
// top-level CMakeLists.txt). `full`: all four. `minimal` (CI machines without a GPU): BF16 x
// E2M1 and FP16 x E4M3 only, so every kernel template and both halves of every type switch
// compile once at half the cost. The backends refuse the absent pairs through
// mma_types_verdict (mma_claims.h), and the dispatch code never names their instances
// (`if constexpr` on instance_types_compiled), so the absent instance files are not built.
// C++17-clean: included by host code and by the .cu dispatchers.
#pragma once

#ifndef MXQ_CUDA_ALL_INSTANCES
#error "MXQ_CUDA_ALL_INSTANCES must be defined by the build (src/cuda/CMakeLists.txt)"
#endif

namespace mxq::cuda {

inline constexpr bool kAllInstanceTypes = MXQ_CUDA_ALL_INSTANCES != 0;

// Whether kernels exist for `bf16` (else FP16) activations x `fp4` (E2M1, else E4M3) weights.
constexpr bool instance_types_compiled(bool bf16, bool fp4) {
  return kAllInstanceTypes || bf16 == fp4;
}

inline constexpr const char* kMinimalInstancesNote =
    "this build compiled the minimal CUDA instance set (MXQ_CUDA_INSTANCES=minimal: BF16 x "
    "MXFP4 and FP16 x MXFP8 only); rebuild with -DMXQ_CUDA_INSTANCES=full";

}  // namespace mxq::cuda
