// MoE grouped GEMM instances for BF16 activations x E4M3 weights (grouped_gemm_io.cuh).
#include "cuda/moe/grouped_gemm_io.cuh"

namespace mxq::cuda::moe {

void gate_up_bf16_e4m3(const MoEGateUpArgs& a, cudaStream_t s) { gate_up<__nv_bfloat16, false>(a, s); }
void down_bf16_e4m3(const MoEDownArgs& a, cudaStream_t s) { down<__nv_bfloat16, false>(a, s); }

}  // namespace mxq::cuda::moe
