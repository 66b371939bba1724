// cuda-mma kernel instances for BF16 activations x E4M3 weights (mx_gemm_dispatch.cuh).
#include "cuda/gemm/mx_gemm_dispatch.cuh"

namespace mxq::cuda::gemm {

void launch_bf16_e4m3(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream) {
  dispatch_tokens<__nv_bfloat16, false>(a, c, stream);
}

}  // namespace mxq::cuda::gemm
