// cuda-mma kernel instances for F16 activations x E2M1 weights (mx_gemm_dispatch.cuh).
#include "cuda/gemm/mx_gemm_dispatch.cuh"

namespace mxq::cuda::gemm {

void launch_f16_e2m1(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream) {
  dispatch_tokens<__half, true>(a, c, stream);
}

}  // namespace mxq::cuda::gemm
