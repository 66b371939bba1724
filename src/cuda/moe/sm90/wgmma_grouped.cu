// The MoE grouped GEMMs' Hopper variant (the cuda-mma wgmma kernel with the gate/up and down
// IO policies of grouped_gemm_io.cuh), compiled for sm_90a only (library mxq_cuda_moe_sm90):
// 2 activation types x 2 formats x {gate/up, down} x {64, 128} tokens per block = 16 kernels,
// launched by dispatch_grouped through the declaration in gemm/mx_gemm_wgmma_launch.h.
#include "cuda/gemm/mx_gemm_wgmma.cuh"
#include "cuda/moe/grouped_gemm_io.cuh"

namespace mxq::cuda::gemm {

#define MXQ_WGMMA_GROUPED(T, FP4, NB, IO)                                                  \
  template void launch_wgmma<T, FP4, NB, moe::IO<T>>(                                      \
      const uint8_t*, const uint8_t*, int64_t, int64_t, unsigned, const moe::IO<T>&,       \
      cudaStream_t);
#define MXQ_WGMMA_GROUPED_TYPE(T, FP4)        \
  MXQ_WGMMA_GROUPED(T, FP4, 64, GateUpIO)     \
  MXQ_WGMMA_GROUPED(T, FP4, 128, GateUpIO)    \
  MXQ_WGMMA_GROUPED(T, FP4, 64, DownIO)       \
  MXQ_WGMMA_GROUPED(T, FP4, 128, DownIO)
MXQ_WGMMA_GROUPED_TYPE(__nv_bfloat16, true)
MXQ_WGMMA_GROUPED_TYPE(__half, false)
#if MXQ_CUDA_ALL_INSTANCES  // the pairs a minimal build leaves out (common/instance_set.h)
MXQ_WGMMA_GROUPED_TYPE(__nv_bfloat16, false)
MXQ_WGMMA_GROUPED_TYPE(__half, true)
#endif
#undef MXQ_WGMMA_GROUPED_TYPE
#undef MXQ_WGMMA_GROUPED

}  // namespace mxq::cuda::gemm
