// MoE grouped GEMM instances for F16 activations x E2M1 weights (grouped_gemm_io.cuh).
#include "cuda/moe/grouped_gemm_io.cuh"

namespace mxq::cuda::moe {

void gate_up_f16_e2m1(const MoEGateUpArgs& a, cudaStream_t s) { gate_up<__half, true>(a, s); }
void down_f16_e2m1(const MoEDownArgs& a, cudaStream_t s) { down<__half, true>(a, s); }

}  // namespace mxq::cuda::moe
