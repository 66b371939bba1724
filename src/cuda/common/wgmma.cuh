// Hopper warpgroup MMA (wgmma, sm_90a) wrappers for the cuda-mma kernels. The instructions
// exist only in the sm_90a build; elsewhere the wrappers trap, and the host never launches a
// kernel that uses them on another architecture (mx_gemm_wgmma.cuh, launch).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/common/wgmma_arch.h"  // MXQ_HAS_WGMMA
#include "cuda/common/wgmma_rs.cuh"  // WgmmaRS<T, N>: the generated register-A wgmma wrappers

namespace mxq::cuda::ptx {

// Shared-memory matrix descriptor, no swizzle: `smem` the first 8x16-byte core matrix,
// `lbo` bytes between core matrices adjacent along K, `sbo` along M/N.
__device__ __forceinline__ uint64_t smem_desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return uint64_t((addr >> 4) & 0x3FFF) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFF) << 32);
}

__device__ __forceinline__ void wgmma_fence() {
#if MXQ_HAS_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if MXQ_HAS_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if MXQ_HAS_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Orders this thread's ordinary shared-memory stores before later async-proxy (wgmma) reads.
__device__ __forceinline__ void fence_proxy_async() {
#if MXQ_HAS_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// D[64 x NB] (+)= A[64 x 16] (registers, the mma.m16n8k16 A fragment per warp: warp w of the
// warpgroup holds rows 16w..16w+15) * B[16 x NB] (shared memory, K-major, descriptor), FP32;
// scale_d = 0: D = A * B. Accumulator ownership per warp (lane = 4g + t): d[4i + 0/1] = (row g,
// cols 8i + 2t + 0/1), d[4i + 2/3] = (row g + 8, cols 8i + 2t + 0/1). NB = 64 or 128 here.
template <typename T, int NB>
__device__ __forceinline__ void wgmma_rs(float (&d)[NB / 2], const uint32_t (&a)[4],
                                         uint64_t b_desc, int scale_d) {
  static_assert(NB == 64 || NB == 128, "cuda-mma's wgmma variant uses 64- and 128-wide tiles");
  WgmmaRS<T, NB>::mma(d, a, b_desc, scale_d);
}
}  // namespace mxq::cuda::ptx
