// MoE grouped GEMM instances for F16 activations x E4M3 weights (grouped_gemm_io.cuh).
#include "cuda/moe/grouped_gemm_io.cuh"

namespace mxq::cuda::moe {

void gate_up_f16_e4m3(const MoEGateUpArgs& a, cudaStream_t s) { gate_up<__half, false>(a, s); }
void down_f16_e4m3(const MoEDownArgs& a, cudaStream_t s) { down<__half, false>(a, s); }

}  // namespace mxq::cuda::moe
