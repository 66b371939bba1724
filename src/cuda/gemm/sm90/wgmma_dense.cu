// The cuda-mma GEMM's Hopper variant for dense layers, compiled for sm_90a only (library
// mxq_cuda_gemm_sm90): the 4 kernels (2 activation types x 2 formats, 128 tokens per block)
// that mx_gemm_dispatch.cuh launches through the declaration in mx_gemm_wgmma_launch.h.
#include "cuda/gemm/mx_gemm_wgmma.cuh"

namespace mxq::cuda::gemm {

#define MXQ_WGMMA_DENSE(T, FP4)                                                            \
  template void launch_wgmma<T, FP4, kWgTokens, DenseIO<T>>(                               \
      const uint8_t*, const uint8_t*, int64_t, int64_t, unsigned, const DenseIO<T>&,       \
      cudaStream_t);
MXQ_WGMMA_DENSE(__nv_bfloat16, true)
MXQ_WGMMA_DENSE(__half, false)
#if MXQ_CUDA_ALL_INSTANCES  // the pairs a minimal build leaves out (common/instance_set.h)
MXQ_WGMMA_DENSE(__nv_bfloat16, false)
MXQ_WGMMA_DENSE(__half, true)
#endif
#undef MXQ_WGMMA_DENSE

}  // namespace mxq::cuda::gemm
