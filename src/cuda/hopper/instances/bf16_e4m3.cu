// cuda-hopper GEMM instances: bf16 activations x e4m3 weights, tokens per item 16 .. 256.
#include "cuda/hopper/gemm_launch.cuh"

namespace mxq::cuda::hopper {
MXQ_HOPPER_INSTANCES(__nv_bfloat16, false)
}  // namespace mxq::cuda::hopper
