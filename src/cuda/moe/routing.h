// MoE routing on the GPU: router logits [M, E] -> per token top-k global expert ids (int32) and
// weights (float32), for the three MoEParams::routing modes, with the semantics of the CPU
// routing (src/cpu/common/routing.h, the definition):
//   - the selected ids are identical, including the order (best first) and the tie rule (ties
//     go to the lower expert / group index; a NaN score wins only where the CPU's sequential
//     scan would keep it, i.e. when it is the first candidate);
//   - the math is float64 on the logits widened exactly, as on the CPU; the weights agree with
//     the CPU's to float32 rounding: within 1 ulp, because the device's float64 exp and the
//     order of the softmax denominator's sum (a warp tree instead of a left-to-right loop)
//     may differ from the host's in the last float64 bit, which moves the final float32
//     rounding only when the value sits on a rounding boundary.
//
// Device pointers and a stream; no allocation, no synchronization: graph-capturable. One warp
// per token. Limits: E <= 512, k <= 32, n_group <= 32 (DeepSeek-V3 256 / 8 / 8 groups, gpt-oss
// 128 / 4, Qwen3 128 / 8 are well inside). Errors: invalid_argument naming the value (nothing
// enqueued) or internal for a failed launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mxq/problem.h"
#include "mxq/status.h"

namespace mxq::cuda {

// logits [tokens, p.experts] row-major contiguous in `dtype` (F32 / BF16 / F16);
// correction_bias [p.experts] F32 exactly when p.correction_bias (sigmoid-grouped-topk only),
// else nullptr; topk_ids / topk_weights [tokens, p.topk].
Status moe_route(const MoEParams& p, const void* logits, DType dtype, int64_t tokens,
                 const float* correction_bias, int32_t* topk_ids, float* topk_weights,
                 cudaStream_t stream);

}  // namespace mxq::cuda
