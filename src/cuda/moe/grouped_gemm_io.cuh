// The MoE grouped GEMMs' IO policies for the cuda-mma kernel (gemm/mx_gemm.cuh, DenseIO has the
// contract) and their launch templates, instantiated per activation x weight type by
// moe/instances/. Semantics in grouped_gemm.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/gemm/mx_gemm_dispatch.cuh"
#include "cuda/moe/gate_up_act.cuh"
#include "cuda/moe/grouped_gemm.h"

namespace mxq::cuda::moe {

template <typename T>
__device__ __forceinline__ T to_act(float v) {
  if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(v);
  else
    return __float2bfloat16_rn(v);
}

// The gathered rows both GEMMs share: token block tb is expert block_expert[tb]; row r of the
// padded pair list is pair sorted[r] (-1: padding).
struct PairRows {
  const int32_t* sorted;
  const int32_t* block_expert;
  __device__ __forceinline__ int batch(int tb) const { return block_expert[tb]; }
  __device__ __forceinline__ int pair(int r) const { return sorted[r]; }
};

// Gate/up: rows of x by token, the activation of each (gate, up) column pair in the epilogue.
// The weights are in the gate/up row order: the lane's rows `row` (< 8 within its tile) and
// row + 8 are the gate and up of intermediate column 8 * (row / 16) + row % 16.
template <typename T>
struct GateUpIO {
  static constexpr bool kWideVariant = false;
  // One block per SM at least: lets ptxas use more than 128 registers where it would
  // otherwise spill (sm_80, 64-token blocks, FP16 x E4M3).
  static constexpr int kMinBlocks = 1;
  static constexpr bool kSmallEpilogue = false;
  static constexpr bool kGroupScales = false;
  PairRows rows;
  const T* x;
  int64_t ldx;
  int topk;
  const float* bias_gate;
  const float* bias_up;
  T* a;
  int64_t lda;
  int inter;
  bool swiglu;
  float alpha, limit;

  __device__ __forceinline__ int batch(int tb) const { return rows.batch(tb); }
  __device__ __forceinline__ const T* x_row(int tok0, int j) const {
    const int p = rows.pair(tok0 + j);
    return p < 0 ? nullptr : x + int64_t(p / topk) * ldx;
  }
  __device__ __forceinline__ void store(int e, int tok0, int j, int row, float gate,
                                        float up) const {
    const int r = tok0 + j;
    if (rows.pair(r) < 0) return;
    const int col = 8 * (row / 16) + row % 16;
    if (bias_gate != nullptr) gate += bias_gate[int64_t(e) * inter + col];
    if (bias_up != nullptr) up += bias_up[int64_t(e) * inter + col];
    a[int64_t(r) * lda + col] = to_act<T>(gate_up_activation(gate, up, swiglu, alpha, limit));
  }
};

// Down: rows of the gate/up output by padded row; FP32 results times the pair's top-k weight,
// stored by pair for the combine.
template <typename T>
struct DownIO {
  static constexpr bool kWideVariant = false;
  static constexpr int kMinBlocks = 1;
  static constexpr bool kSmallEpilogue = false;
  static constexpr bool kGroupScales = false;
  PairRows rows;
  const T* a;
  int64_t lda;
  const float* bias;
  const float* topk_weights;
  float* o;
  int hidden;

  __device__ __forceinline__ int batch(int tb) const { return rows.batch(tb); }
  __device__ __forceinline__ const T* x_row(int tok0, int j) const {
    const int r = tok0 + j;
    return rows.pair(r) < 0 ? nullptr : a + int64_t(r) * lda;
  }
  __device__ __forceinline__ void store(int e, int tok0, int j, int row, float v0,
                                        float v1) const {
    const int p = rows.pair(tok0 + j);
    if (p < 0) return;
    if (bias != nullptr) {
      v0 += bias[int64_t(e) * hidden + row];
      v1 += bias[int64_t(e) * hidden + row + 8];
    }
    const float w = topk_weights[p];
    o[int64_t(p) * hidden + row] = w * v0;
    o[int64_t(p) * hidden + row + 8] = w * v1;
  }
};

template <typename T, bool kFp4, int NT, bool kFast, class IO>
void launch_grouped(const MoEGemmCommon& c, const IO& io, cudaStream_t stream) {
  const int64_t blocks = c.capacity / c.block;
  // Split rows with 64-token blocks once row blocks x token blocks fill the GPU (the dense
  // GEMM's rule, mx_gemm_dispatch.cuh; the token blocks counted are the dispatch's upper bound).
  constexpr int64_t kRows = 16 * gemm::kRowWarps * gemm::kRowTiles;
  const bool split_rows = NT == 8 && ((c.n + kRows - 1) / kRows) * blocks >= gemm::sm_count();
  const gemm::KernelLaunch l{c.w, c.w_scales, c.n, c.k, unsigned(blocks), split_rows, false};
  gemm::launch_kernel<T, kFp4, NT, kFast>(l, io, stream);
}

template <typename T, bool kFp4, class IO>
void dispatch_grouped(const MoEGemmCommon& c, const IO& io, bool rows_aligned, cudaStream_t stream) {
  auto path = [&](auto nt) {
    constexpr int NT = decltype(nt)::value;
    if (c.scale_in_weights)
      launch_grouped<T, kFp4, NT, true>(c, io, stream);
    else
      launch_grouped<T, kFp4, NT, false>(c, io, stream);
  };
  if constexpr (gemm::kWgmmaVariant) {  // the sm_90a instances (moe/sm90/wgmma_grouped.cu)
    if (c.block == gemm::kWgTokens) {  // checked: Hopper, scale in weights, aligned rows
      gemm::launch_wgmma<T, kFp4, 128>(c.w, c.w_scales, c.n, c.k, unsigned(c.capacity / c.block),
                                       io, stream);
      return;
    }
    if (c.block == 64 && c.scale_in_weights && rows_aligned && gemm::is_sm90()) {
      gemm::launch_wgmma<T, kFp4, 64>(c.w, c.w_scales, c.n, c.k, unsigned(c.capacity / c.block),
                                      io, stream);
      return;
    }
  }
  switch (c.block) {  // 8, 16 or 64 (checked)
    case 8: return path(std::integral_constant<int, 1>{});
    case 16: return path(std::integral_constant<int, 2>{});
    default: return path(std::integral_constant<int, 8>{});
  }
}

template <typename T, bool kFp4>
void gate_up(const MoEGateUpArgs& a, cudaStream_t stream) {
  const GateUpIO<T> io{{a.c.sorted_token_pairs, a.c.block_expert},
                       static_cast<const T*>(a.x), a.ldx, int(a.c.topk), a.bias_gate, a.bias_up,
                       static_cast<T*>(a.a), a.lda, int(a.c.n / 2),
                       a.activation == MoEGemmAct::kSwigluOAI, a.alpha, a.limit};
  dispatch_grouped<T, kFp4>(a.c, io, gemm::wgmma_aligned(a.x, a.ldx), stream);
}

template <typename T, bool kFp4>
void down(const MoEDownArgs& a, cudaStream_t stream) {
  const DownIO<T> io{{a.c.sorted_token_pairs, a.c.block_expert}, static_cast<const T*>(a.a),
                     a.lda, a.bias, a.topk_weights, a.o, int(a.c.n)};
  dispatch_grouped<T, kFp4>(a.c, io, gemm::wgmma_aligned(a.a, a.lda), stream);
}

// One per activation x weight type, defined in moe/instances/.
void gate_up_bf16_e2m1(const MoEGateUpArgs& a, cudaStream_t s);
void gate_up_bf16_e4m3(const MoEGateUpArgs& a, cudaStream_t s);
void gate_up_f16_e2m1(const MoEGateUpArgs& a, cudaStream_t s);
void gate_up_f16_e4m3(const MoEGateUpArgs& a, cudaStream_t s);
void down_bf16_e2m1(const MoEDownArgs& a, cudaStream_t s);
void down_bf16_e4m3(const MoEDownArgs& a, cudaStream_t s);
void down_f16_e2m1(const MoEDownArgs& a, cudaStream_t s);
void down_f16_e4m3(const MoEDownArgs& a, cudaStream_t s);

}  // namespace mxq::cuda::moe
