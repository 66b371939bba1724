// The cuda-hopper GEMM kernel's parameters and device helpers (gemm_kernel.cuh is the kernel):
// the A-fragment decodes (E2M1 words, FP8 chunks), output packing and the grouped (MoE)
// epilogue. Split from gemm_kernel.cuh to keep one concern per file; no behaviour of its own.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/gemm/mx_gemm.cuh"  // decode_e4m3_scaled, multiplier_of_code, store_out
#include "cuda/hopper/fp8_layout.h"   // the FP8 chunk's offsets
#include "cuda/hopper/fp8_operand.h"  // the E4M3 operand decode
#include "cuda/hopper/gemm_config.h"
#include "cuda/hopper/kernel_params.h"
#include "cuda/hopper/layout_word.h"  // e2m1_operand_bits: the hopper E2M1 bit positions
#include "cuda/hopper/sm90_ptx.cuh"
#include "cuda/moe/gate_up_act.cuh"

namespace mxq::cuda::hopper {



// Item -> (128-row block nb, token tile mt) of the persistent schedule, the same for the
// producer and the consumers. raster_group 0 (or >= n_blocks): token tiles outer, item =
// mt x n_blocks + nb, so the CTAs running together share the activation tile. Else the row
// blocks go in groups of raster_group, token tiles outer inside a group: the CTAs running
// together span a few token tiles x the group's blocks, whose weights (a group's worth, sized to
// stay in L2) are read by every token tile before the next group starts; the activations are
// read once per group.
struct ItemCoords {
  int nb, mt;
};
__device__ __forceinline__ ItemCoords item_coords(const KernelParams& p, int item) {
  const int gw = p.raster_group;
  if (gw <= 0 || gw >= p.n_blocks) return {item % p.n_blocks, item / p.n_blocks};
  const int per_group = gw * (p.items / p.n_blocks);
  const int group = item / per_group, first = group * gw;
  const int width = min(gw, p.n_blocks - first);
  const int local = item - group * per_group;
  return {first + local % width, local / width};
}

// The four A registers of one word of 8 E2M1 codes in the hopper bit positions
// (layout_word.h): 11 shift / mask / merge instructions for BF16 (14 for FP16) + 4 HMUL2 by
// the scale multipliers of rows g (m0: registers 0, 2) and g + 8 (m1: registers 1, 3).
template <typename T>
__device__ __forceinline__ void decode_e2m1_word(uint32_t q, uint32_t m0, uint32_t m1,
                                                 uint32_t (&a)[4]) {
  constexpr int kTarget = std::is_same_v<T, __half> ? 9 : 6;
  a[0] = ptx::mul2<T>(e2m1_operand_bits<kTarget, 0>(q), m0);
  a[1] = ptx::mul2<T>(e2m1_operand_bits<kTarget, 1>(q), m1);
  a[2] = ptx::mul2<T>(e2m1_operand_bits<kTarget, 2>(q), m0);
  a[3] = ptx::mul2<T>(e2m1_operand_bits<kTarget, 3>(q), m1);
}

// One FP8 chunk (64 rows x k128, fp8_layout.h) into the four k32 steps' A fragments: per k32
// step k the operand words of rows g (half 0) and g + 8 (half 1), two 16-byte LDS ([k][half]
// per lane), the 8 table indices (one 8-byte LDS, [half][k]: the 4 lanes of a group read the
// same address) and per (k, half) the row's shift table (8 bytes of the 120-byte table block:
// conflict-free). Registers of k32 step k (fp8_operand.h): a[k] = {lo(row g), lo(row g + 8),
// hi(row g), hi(row g + 8)}, lo = k bytes 4t..4t+3 of the step, hi = 16 + 4t..16 + 4t + 3.
__device__ __forceinline__ void decode_fp8_chunk(uint32_t chunk, uint32_t tables_addr, int warp,
                                                 int lane, uint32_t (&a)[4][4]) {
  const int g = lane >> 2;
  const uint4 w01 = sm90::lds_v4(chunk + uint32_t(fp8::word_offset(warp, lane, 0, 0)));
  const uint4 w23 = sm90::lds_v4(chunk + uint32_t(fp8::word_offset(warp, lane, 2, 0)));
  const uint2 idx = sm90::lds_v2(chunk + uint32_t(fp8::index_offset(warp, g, 0, 0)));
  const uint32_t words[4][2] = {{w01.x, w01.y}, {w01.z, w01.w}, {w23.x, w23.y}, {w23.z, w23.w}};
#pragma unroll
  for (int k = 0; k < 4; ++k)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t d = ((h == 0 ? idx.x : idx.y) >> (8 * k)) & 0xFFu;
      const uint2 tab = sm90::lds_v2(tables_addr + d * 8u);
      fp8::decode_word(words[k][h], fp8::ShiftTable{tab.x, tab.y}, a[k][h], a[k][2 + h]);
    }
}

// Two outputs as one 32-bit register of T (lo in the low half), rounded to nearest even as
// gemm::store_out rounds them.
template <typename T>
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// The grouped (MoE) epilogue of one m64 tile: lane (g, t) of warp `warp` holds rows row0 and
// row0 + 8 of expert e, tokens (padded dispatch rows) mt * NT + 8i + 2t + h. Every one of them
// is below p.m: the grouped GEMM's m is the padded capacity, a multiple of the block (= NT),
// checked on the host. Per value: the activation or the weighting, one store; the addresses
// are a base per thread plus a constant per value, and the dispatch lookups (down) are
// read-only loads (ld.global.nc), so that they are not ordered behind the stores.
template <typename T, int NT>
__device__ __forceinline__ void moe_epilogue(const KernelParams& p, int e, int mt, int row0, int t,
                                             const float (&acc)[NT / 2]) {
  if (row0 >= p.n) return;  // N % 16 == 0: row0 + 8 < N too
  const int r0 = mt * NT + 2 * t;  // dispatch row of acc[4i + h]: r0 + 8i + h
  if (p.gate_up) {
    // Gate/up row order (frag_layout.h): row0 (g < 8 in its 16-row tile) is the gate and
    // row0 + 8 the up row of intermediate column 8 * (row0 / 16) + g. Padding rows are
    // written too (whatever moe_gather_rows left there: the down GEMM reads them as token
    // columns of their own and stores none of their results).
    const int inter = p.n / 2, col = 8 * (row0 / 16) + row0 % 16;
    const bool has_bg = p.bias != nullptr, has_bu = p.bias_up != nullptr;
    const float bg = has_bg ? __ldg(p.bias + int64_t(e) * inter + col) : 0.0f;
    const float bu = has_bu ? __ldg(p.bias_up + int64_t(e) * inter + col) : 0.0f;
    T* y = static_cast<T*>(p.y) + int64_t(r0) * p.ldy + col;
#pragma unroll
    for (int i = 0; i < NT / 8; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float gate = acc[4 * i + h], up = acc[4 * i + 2 + h];
        if (has_bg) gate += bg;  // added only when present, as cuda-mma does
        if (has_bu) up += bu;
        const float v = moe::gate_up_activation(gate, up, p.swiglu, p.alpha, p.limit);
        if constexpr (std::is_same_v<T, __half>)
          y[int64_t(8 * i + h) * p.ldy] = __float2half_rn(v);
        else
          y[int64_t(8 * i + h) * p.ldy] = __float2bfloat16_rn(v);
      }
    return;
  }
  const bool has_b = p.bias != nullptr;
  const float b0 = has_b ? __ldg(p.bias + int64_t(e) * p.n + row0) : 0.0f;
  const float b1 = has_b ? __ldg(p.bias + int64_t(e) * p.n + row0 + 8) : 0.0f;
  float* o = static_cast<float*>(p.y) + row0;
  const int32_t* pairs = p.pairs + r0;
#pragma unroll
  for (int i = 0; i < NT / 8; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int pair = __ldg(pairs + 8 * i + h);
      if (pair < 0) continue;
      float v0 = acc[4 * i + h], v1 = acc[4 * i + 2 + h];
      if (has_b) {
        v0 += b0;
        v1 += b1;
      }
      const float w = __ldg(p.topk_weights + pair);
      float* dst = o + int64_t(pair) * p.ldy;
      dst[0] = w * v0;
      dst[8] = w * v1;
    }
}

}  // namespace mxq::cuda::hopper
