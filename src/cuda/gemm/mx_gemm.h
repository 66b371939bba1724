// The cuda-mma mixed-input GEMM: y[M, N] = x[M, K] . dequant(W[N, K])^T (+ bias), with MX
// weights (E2M1 / E4M3 + E8M0 scales) in the fragment layout (frag_layout.h) and BF16 or FP16
// activations; FP32 accumulation; BF16 / FP16 / FP32 output. Host interface of mx_gemm.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::cuda {

// The columns of one fp8-dynamic-group128 activation scale (mxq::kFp8ActGroup in problem.h,
// which this C++17 header does not include; act_operand.cc checks they agree).
inline constexpr int64_t kActGroupColumns = 128;

struct GemmArgs {
  ElemType elem = ElemType::kE2M1;  // weight elements (E2M1 or E4M3)
  DType act = DType::kBF16;         // x dtype: BF16 or F16
  DType out = DType::kBF16;         // y dtype: BF16, F16 or F32
  const uint8_t* w = nullptr;       // fragment-layout elements (device)
  const uint8_t* w_scales = nullptr;  // fragment-layout scales (device)
  const float* bias = nullptr;      // [N] FP32 (device) or null
  const void* x = nullptr;          // [M, K], row stride ldx elements, 8-byte aligned rows
  void* y = nullptr;                // [M, N], row stride ldy elements
  int64_t m = 0, n = 0, k = 0, ldx = 0, ldy = 0;
  // Every scale code of W lies in scale_in_weights_range(elem, act): the kernel folds the scale
  // into the 16-bit weights (exact there) instead of scaling each block's FP32 partial sum.
  bool scale_in_weights = false;
  // fp8-dynamic-group128: x holds E4M3 values (exact in 16 bits) and x_group_scales [M, G]
  // (G = ceil(K / 128), row stride G; device) the FP32 scale of each token's 128-column group.
  // The kernel multiplies each 32-block's FP32 partial by its token's group scale and the
  // block's weight scale (the FP32-scale path, whatever scale_in_weights says), so y is the
  // layer of the dequantized activations up to FP32 accumulation order. Null otherwise.
  const float* x_group_scales = nullptr;
};

// Scale codes c for which every element times 2^(c-127) is exact in the activation dtype and
// the decode multiplier fits it: E2M1 x BF16 [0, 128], E4M3 x BF16 [12, 134], E2M1 x FP16
// [104, 128], E4M3 x FP16 [112, 134]. Real checkpoints' scales lie inside; the FP32 path
// handles every other code.
struct ScaleRange {
  int lo, hi;
};
ScaleRange scale_in_weights_range(ElemType elem, DType act);

// The launch a problem gets (the tile heuristic, mx_gemm.cu); printable for explain/bench.
struct GemmConfig {
  int tokens_per_block = 8;  // 8 * NT
  int warps = 8;             // warps per block, splitting K
  int prefetch = 4;          // k64 tiles of weights in flight per warp
  bool scale_in_weights = false;
  bool split_rows = false;   // warps own row tiles (large M) instead of splitting K
  bool wide = false;         // 8-token blocks on a wide layer: 8 warps x fewer tiles each
  bool wgmma = false;        // the Hopper wgmma variant (many tokens, mx_gemm_wgmma.cuh)
  bool act_group_scales = false;  // per-(token, 128-group) activation scales (x_group_scales)
  std::string to_string() const;
};
// The one place the launch is decided: mx_gemm launches exactly this config.
GemmConfig choose_gemm_config(const GemmArgs& a);

// Checks the arguments and launches on `stream`. Asynchronous, allocates nothing, no host
// synchronisation: safe inside CUDA graph capture.
Status mx_gemm(const GemmArgs& a, cudaStream_t stream);

}  // namespace mxq::cuda
