// The cuda-hopper GEMM (sm_90a): y[M, N] = x[M, K] . dequant(W[N, K])^T (+ bias), MX weights
// (E2M1 / E4M3 + E8M0) in the hopper layout (layout.h), BF16 / FP16 activations, FP32
// accumulation, BF16 / FP16 / F32 output. Host interface of gemm.cu; the kernel is
// gemm_kernel.cuh, the launch decision gemm_config.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/gemm/repack.h"  // RepackStats
#include "cuda/hopper/gemm_config.h"
#include "cuda/hopper/layout.h"
#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::cuda::hopper {

// GPU repack of canonical weights (device memory) into the hopper layout: `out` gets
// hopper_layout(w).bytes(); `stats` (device memory, initialised to {0, 255, 0}) may be null.
// Asynchronous on `stream`, allocates nothing.
Status repack_hopper(const FragSource& w, uint8_t* out, RepackStats* stats, cudaStream_t stream);

struct HopperGemmArgs {
  ElemType elem = ElemType::kE2M1;  // weight elements (E2M1 or E4M3)
  DType act = DType::kBF16;         // x dtype: BF16 or F16
  DType out = DType::kBF16;         // y dtype: BF16, F16 or F32
  const uint8_t* w = nullptr;       // hopper layout (device)
  const float* bias = nullptr;      // [N] FP32 (device) or null
  const void* x = nullptr;          // [M, K], row stride ldx elements (16-byte aligned, ldx % 8 == 0)
  void* y = nullptr;                // [M, N], row stride ldy elements
  int64_t m = 0, n = 0, k = 0, ldx = 0, ldy = 0;
};

// The launch a problem gets on the current device (tile, stages, split, persistent grid).
StatusOr<HopperGemmConfig> choose_hopper_config(const HopperGemmArgs& a);

// Checks the arguments, chooses the config and launches on `stream`. Asynchronous, allocates
// nothing, no host synchronisation: safe inside CUDA graph capture. `ran` (optional) receives
// the config that was launched. The weights' scale codes must lie in
// scale_in_weights_range(elem, act) (the backend checks at prepare).
Status hopper_gemm(const HopperGemmArgs& a, cudaStream_t stream, HopperGemmConfig* ran = nullptr);

// ---- the FP8 GEMM (issue 17) ----------------------------------------------------------------
// y[M, N] = out(s_m x 2^(base_n - 127) x sum_k code_m,k . q_n,k + bias[n]): E4M3 activation codes
// (fp8_act_quant_codes) x MXFP4 weights folded into E4M3 operands (fp8_layout.h, every row
// folding: fp8_fold.h), FP8 wgmma, each k128 stage's sum added into FP32 accumulators (the
// tensor core sums a stage below FP32 precision: docs/cuda.md, "The FP8 MMA does not add in
// FP32"), the scales and bias in the epilogue.
struct HopperFp8GemmArgs {
  DType out = DType::kBF16;             // BF16, F16 or F32
  const uint8_t* w = nullptr;           // fp8::Fp8Layout{1, n, k} chunks (device)
  const float* row_mul = nullptr;       // [n_pad] 2^(base - 127) per row (device)
  const float* bias = nullptr;          // [N] FP32 (device) or null
  const uint8_t* x = nullptr;           // E4M3 codes [M, K], row stride ldx bytes (16-aligned)
  const float* act_row_scale = nullptr; // [M] per-token scales (device), or null:
  float act_scale = 1.0f;               //   the per-tensor scale
  // fp8-dynamic-group128: [M, ceil(K / 128)] scales per (token, 128-column group) (device;
  // fp8_group_act_quant_codes), applied at each k128 stage's FP32 promotion; act_row_scale must
  // then be null and act_scale 1. Null for the per-token and per-tensor keys.
  const float* act_group_scale = nullptr;
  void* y = nullptr;                    // [M, N], row stride ldy elements
  int64_t m = 0, n = 0, k = 0, ldx = 0, ldy = 0;
  // The pre-decoded path's tiles (HopperGemmConfig::fp8_tiles; device memory, 16-byte
  // aligned): at least hopper_fp8_workspace_bytes(*this) bytes, which the caller allocates
  // (stream-ordered, so the call stays graph-capturable); unused (may be null) otherwise.
  uint8_t* workspace = nullptr;
  size_t workspace_bytes = 0;
};
StatusOr<HopperGemmConfig> choose_hopper_fp8_config(const HopperFp8GemmArgs& a);
// The workspace the chosen launch needs: 0 unless it runs on pre-decoded tiles, else one
// chunk of rows' tiles (at most MXQ_HOPPER_FP8_WORKSPACE_MB, default 64 MiB).
StatusOr<size_t> hopper_fp8_workspace_bytes(const HopperFp8GemmArgs& a);
// Checks, chooses and launches on `stream`: asynchronous, allocates nothing (the workspace is
// the caller's), graph-capturable. An invalid-argument error if the chosen launch needs a
// larger workspace than given.
Status hopper_fp8_gemm(const HopperFp8GemmArgs& a, cudaStream_t stream,
                       HopperGemmConfig* ran = nullptr);

// ---- grouped (MoE) GEMMs ---------------------------------------------------------------------
// One launch over all local experts on the padded dispatch of moe_dispatch (moe/dispatch.h):
// token tile = dispatch block, item = (block, 128-row block of the expert's N), block b of
// expert block_expert[b] (-1: past the end, skipped), the same ring, decode, split K and
// deterministic reduction as the dense kernel.
struct HopperGroupedShape {
  ElemType elem = ElemType::kE2M1;
  DType act = DType::kBF16;
  int64_t n = 0, k = 0;      // per expert: gate/up n = 2I, k = H; down n = H, k = I
  int block = 16;            // tokens per dispatch block = the token tile (16 .. 256)
  int64_t capacity = 0;      // rows of the padded dispatch (a multiple of block)
  int64_t live_blocks = 0;   // blocks expected to hold pairs (ranks the split of K)
};

struct HopperGroupedArgs {
  HopperGroupedShape shape;
  const uint8_t* w = nullptr;            // hopper layout, batch = local experts (gate/up: in
                                         // the gate/up row order, frag_layout.h)
  const int32_t* block_expert = nullptr; // [capacity / block]
  const int32_t* pairs = nullptr;        // sorted_token_pairs [capacity]
  const void* x = nullptr;               // [capacity, k] rows in dispatch order, row stride ldx
                                         // (gate/up: x gathered by moe_gather_rows, padding
                                         // rows zero; down: the gate/up output)
  int64_t ldx = 0;
  bool gate_up = true;
  // gate/up: y = the intermediate [capacity, ldy] in the activation dtype; bias / bias_up
  // [E, n / 2] FP32 or null; silu-and-mul or swigluoai(alpha, limit).
  // down: y = FP32 [pairs, ldy] per (token, slot) pair, w_p * (acc + bias[e]), bias [E, n].
  bool swiglu = false;
  float alpha = 1.702f, limit = 7.0f;
  const float* bias = nullptr;
  const float* bias_up = nullptr;
  const float* topk_weights = nullptr;   // down: [pairs]
  void* y = nullptr;
  int64_t ldy = 0;
};

// Blocks of `block` tokens expected to hold pairs: every expert's count rounded up to blocks,
// for `pairs` pairs spread uniformly over `experts` local experts.
int64_t expected_live_blocks(int64_t pairs, int64_t experts, int block);
// The dispatch block (= token tile) for a grouped call: the tile whose cost-model time for the
// average expert hit is lowest: expected blocks per expert (counts ~ Normal(avg, sqrt(avg) +
// 0.1 avg), gemm.cu expected_blocks) x the tile's step cost; the tail tiles 80 / 144 / 288
// included. MXQ_HOPPER_CONFIG's token tile, when set, is the block.
int hopper_grouped_block(int64_t tokens, int64_t topk, int64_t experts);
StatusOr<HopperGemmConfig> choose_hopper_grouped_config(const HopperGroupedShape& g);
Status hopper_grouped_gemm(const HopperGroupedArgs& a, cudaStream_t stream,
                           HopperGemmConfig* ran = nullptr);

}  // namespace mxq::cuda::hopper
