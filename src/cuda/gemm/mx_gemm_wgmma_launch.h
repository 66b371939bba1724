// The launch of the cuda-mma GEMM's Hopper variant (mx_gemm_wgmma.cuh), as the rest of the
// family sees it: its block shape and a declaration. The kernel and this function's definition
// are compiled only into the sm_90a image (gemm/sm90/, moe/sm90/: libraries built for 90a-real
// alone), so the sm_80 image carries no wgmma kernels at all (they would only trap there).
//
// MXQ_WGMMA_VARIANT (set by src/cuda/CMakeLists.txt on the libraries that call it): 1 when the
// build has the sm_90a instances, 0 when its architecture list has no 90a; then the callers
// never reference launch_wgmma and use_wgmma() is false (mx_gemm_dispatch.cuh).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#ifndef MXQ_WGMMA_VARIANT
#error "MXQ_WGMMA_VARIANT must be defined by the build (src/cuda/CMakeLists.txt)"
#endif

namespace mxq::cuda::gemm {

inline constexpr bool kWgmmaVariant = MXQ_WGMMA_VARIANT != 0;

constexpr int kWgTokens = 128;  // tokens per block (the wgmma N): 128, or 64 (MoE blocks)
constexpr int kWgRows = 128;    // weight rows per block (2 warpgroups x 64)

// Launches mx_gemm_wgmma_kernel for NB tokens per block with the IO policy `io` (DenseIO, or
// the MoE grouped GEMMs'). Instantiated explicitly for every (T, format, NB, IO) the family
// calls: gemm/sm90/wgmma_dense.cu (4) and moe/sm90/wgmma_grouped.cu (16).
template <typename T, bool kFp4, int NB = kWgTokens, class IO>
void launch_wgmma(const uint8_t* w, const uint8_t* s, int64_t n, int64_t k, unsigned token_blocks,
                  const IO& io, cudaStream_t stream);

}  // namespace mxq::cuda::gemm
