// The MoE gate/up activation in FP32, shared by the grouped GEMM epilogues of both kernel
// families (moe/grouped_gemm_io.cuh for cuda-mma, hopper/gemm_kernel.cuh for cuda-hopper), so
// the two cannot differ: silu(gate) * up, or gpt-oss's swigluoai (gate clamped above at
// `limit`, up to [-limit, limit], gate * sigmoid(alpha * gate) * (up + 1)).
#pragma once

namespace mxq::cuda::moe {

// FP32 with the hardware approximations (MUFU.EX2 for 2^x, MUFU.RCP for the division, each
// within 2 ulp): sigmoid(z) = 1 / (1 + 2^(-z log2 e)). The reference evaluates the same
// formula in float64; the result is rounded to the activation dtype (8 / 11 significant bits),
// so the few FP32 ulp move that rounding by at most one step, and rarely. (The accurate expf
// and IEEE division cost ~25 instructions per value, most of the grouped GEMM epilogue.) For
// z below about -87, 2^(-z log2 e) overflows to +inf and the product is a signed zero, where
// the reference's value is below the smallest BF16 / FP16 subnormal anyway.
__device__ __forceinline__ float fast_sigmoid_times(float x, float z) {
  return __fdividef(x, 1.0f + exp2f(-1.4426950408889634f * z));
}

__device__ __forceinline__ float gate_up_activation(float gate, float up, bool swiglu, float alpha,
                                                    float limit) {
  if (swiglu) {
    gate = fminf(gate, limit);
    up = fminf(fmaxf(up, -limit), limit);
    return fast_sigmoid_times(gate, alpha * gate) * (up + 1.0f);
  }
  return fast_sigmoid_times(gate, gate) * up;
}

}  // namespace mxq::cuda::moe
