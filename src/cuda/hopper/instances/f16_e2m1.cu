// cuda-hopper GEMM instances: f16 activations x e2m1 weights, tokens per item 16 .. 256.
#include "cuda/hopper/gemm_launch.cuh"

namespace mxq::cuda::hopper {
MXQ_HOPPER_INSTANCES(__half, true)
}  // namespace mxq::cuda::hopper
