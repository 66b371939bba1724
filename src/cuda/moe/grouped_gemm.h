// The MoE grouped GEMMs of cuda-mma: one launch per GEMM over all local experts, on the
// padded per-expert token lists of moe_dispatch (dispatch.h). The kernel is the cuda-mma GEMM
// (gemm/mx_gemm.cuh) with MoE rows and epilogues (grouped_gemm_io.cuh):
//
//   gate/up: a[r, :] = act(x[token(r)] . W13[e]^T + b13[e])     r: padded pair row of block b,
//            e = block_expert[b], token(r) = sorted_token_pairs[r] / topk; W13 in the gate/up
//            row order (frag_layout.h), so the activation (silu-and-mul or swigluoai) is applied
//            to FP32 gate/up values in the epilogue and `a` is written once, in the activation
//            dtype (the reference rounds the intermediate to it too).
//   down:    o[p, :] = w_p * (a[r] . W2[e]^T + b2[e])          p = sorted_token_pairs[r], w_p its
//            float32 top-k weight; o is FP32 [M * topk, H] in pair order, summed per token in
//            slot order by moe_combine: deterministic, no atomics.
// Padding rows (pair -1) read zeros and store nothing. Blocks of 64 tokens split rows among
// the warps when there are enough of them to fill the GPU (as the dense GEMM does). Device pointers, asynchronous,
// allocation-free: graph-capturable. C++17-clean (compiled by nvcc).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::cuda {

enum class MoEGemmAct : int { kSiluAndMul = 0, kSwigluOAI = 1 };

// What both GEMMs share: the weights of one GEMM and the dispatch of this call.
struct MoEGemmCommon {
  ElemType elem = ElemType::kE2M1;  // E2M1 or E4M3
  DType act = DType::kBF16;         // activation dtype: BF16 or F16
  const uint8_t* w = nullptr;       // fragment layout, batch = local experts
  const uint8_t* w_scales = nullptr;
  bool scale_in_weights = false;    // every scale code in scale_in_weights_range(elem, act)
  int64_t n = 0, k = 0;             // per expert: gate/up n = 2I, k = H; down n = H, k = I
  int64_t topk = 1;
  int block = 8;                    // tokens per block B: 8, 16, 64 (mma.sync, or wgmma for 64
                                    // on a Hopper) or 128 (wgmma: sm_90 and scale_in_weights)
  int64_t capacity = 0;             // entries of sorted_token_pairs (a multiple of B)
  const int32_t* sorted_token_pairs = nullptr;
  const int32_t* block_expert = nullptr;
};

// The token block B for a call, from the average number of (token, slot) pairs per expert
// avg = ceil(tokens * topk / experts) (uniform routing; a hot expert just gets several blocks):
// 8 up to 8, 16 up to 16, else 64; on a Hopper with `wgmma_ok` (both GEMMs' scales fold
// into the weights, x rows 16-byte aligned) 8 up to avg 4, 16 up to 12, then 64 (the wgmma
// variant with 64 tokens), and 128 from 768 (measured, grouped_gemm.cu). 64-token blocks of a
// GEMM whose scales do not fold run mma.sync (warps over rows when they fill the GPU).
int moe_block_size(int64_t tokens, int64_t topk, int64_t experts, bool wgmma_ok);

struct MoEGateUpArgs {
  MoEGemmCommon c;
  const void* x = nullptr;          // [M, H] in c.act, row stride ldx (8-byte aligned rows)
  int64_t ldx = 0;
  const float* bias_gate = nullptr; // [E_local, I] or null
  const float* bias_up = nullptr;   // [E_local, I] or null
  void* a = nullptr;                // [capacity, lda] in c.act (rows of padding untouched)
  int64_t lda = 0;
  MoEGemmAct activation = MoEGemmAct::kSiluAndMul;
  float alpha = 1.702f, limit = 7.0f;  // swigluoai
};

struct MoEDownArgs {
  MoEGemmCommon c;
  const void* a = nullptr;          // [capacity, lda] in c.act (the gate/up output)
  int64_t lda = 0;
  const float* bias = nullptr;      // [E_local, H] or null
  const float* topk_weights = nullptr;  // [M * topk]
  float* o = nullptr;               // [M * topk, H] FP32 (rows of dropped pairs untouched)
};

Status moe_gate_up_gemm(const MoEGateUpArgs& a, cudaStream_t stream);
Status moe_down_gemm(const MoEDownArgs& a, cudaStream_t stream);

// y[t, :] = sum over slots s of topk_ids[t, s] that are local (expert_map) of o[t * topk + s, :],
// in slot order, FP32, stored in `out` (BF16 / F16 / F32). expert_map [experts] or null.
Status moe_combine(const float* o, const int32_t* topk_ids, const int32_t* expert_map,
                   int64_t experts, int64_t local_experts, int64_t tokens, int64_t topk,
                   int64_t hidden, void* y, DType out, cudaStream_t stream);

}  // namespace mxq::cuda
