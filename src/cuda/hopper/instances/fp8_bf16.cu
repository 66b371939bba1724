// cuda-hopper FP8 GEMM instances: E4M3 activation codes x MXFP4 weights (FP8 layout), BF16 (or
// F32) output.
#include "cuda/hopper/gemm_launch.cuh"

namespace mxq::cuda::hopper {
MXQ_HOPPER_FP8_INSTANCES(__nv_bfloat16)
}  // namespace mxq::cuda::hopper
