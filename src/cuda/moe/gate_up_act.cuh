// The MoE gate/up activation in FP32, shared by the grouped GEMM epilogues of both kernel
// families (moe/grouped_gemm_io.cuh for cuda-mma, hopper/gemm_kernel.cuh for cuda-hopper), so
// the two cannot differ: silu(gate) * up, or gpt-oss's swigluoai (gate clamped above at
// `limit`, up to [-limit, limit], gate * sigmoid(alpha * gate) * (up + 1)).
#pragma once

namespace mxq::cuda::moe {

// FP32 with the accurate expf (the build has no fast-math): the reference evaluates the same
// formula in float64; the difference moves the rounding to the activation dtype by at most
// one step.
__device__ __forceinline__ float gate_up_activation(float gate, float up, bool swiglu, float alpha,
                                                    float limit) {
  if (swiglu) {
    gate = fminf(gate, limit);
    up = fminf(fmaxf(up, -limit), limit);
    return gate / (1.0f + expf(-alpha * gate)) * (up + 1.0f);
  }
  return gate / (1.0f + expf(-gate)) * up;
}

}  // namespace mxq::cuda::moe
