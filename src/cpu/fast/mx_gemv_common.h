// Internal to src/cpu/fast: per-format constants shared by the scalar and AVX2 kernels of
// mx_gemv.h (decode factor d, the block-scale table S, the exact-path trigger).
#pragma once

#include <cstdint>

#include "cpu/fast/mx_gemv.h"
#include "mxq/numerics.h"

namespace mxq::cpu::fast::detail {

// log2 of d per element type: E2M1 and E5M2 decode exactly (d = 1); E2M3, E3M2 and E4M3 go
// through FP16 patterns whose exponent field holds the element's own biased exponent
// (d = 2^(bias - 15)); INT8 converts the integer q itself (d = 64).
constexpr int decode_log2_factor(ElemType t) {
  switch (t) {
    case ElemType::kE2M1: return 0;
    case ElemType::kE2M3: return -14;
    case ElemType::kE3M2: return -12;
    case ElemType::kE4M3: return -8;
    case ElemType::kE5M2: return 0;
    case ElemType::kInt8: return 6;
  }
  return 0;
}

// Per element type: decoded values (d * elem for every code), the block-scale multipliers S[c],
// and which scale codes need care.
//
// S[c] = 2^(c - 127) / d where that lies in [FLT_MIN, 2^64]. Above (huge weights), the block
// sets kFlagExact: the row is recomputed by the float64 loop. Where it would be subnormal (c = 0
// with d = 1, c <= 6 for INT8), S[c] is 0 and the block sets kFlagZeroCheck: the kernel then looks
// at the block's element codes, and any nonzero value sends the row to the float64 loop. All-zero
// blocks (the quantizer gives them scale code 0) stay on the fast path, where their
// contribution is exactly 0 (or NaN when x holds NaN/Inf, as 0 * x would be).
// E2M1 multiplies its element table by S (mx_gemv.h), which must stay exact and normal for every
// nonzero element (|elem| >= 0.5): c = 1 sets kFlagZeroCheck too, and c = 255 (NaN) kFlagExact
// (the SIMD kernels scale the table by adding scale_bits[c] to the exponent fields).
// Why not keep subnormal multipliers: an FMA with a subnormal operand takes a microcode assist
// (measured ~100x slower here; mxq never sets DAZ/FTZ).
inline constexpr uint8_t kFlagExact = 1;      // a block with this code: float64 loop
inline constexpr uint8_t kFlagZeroCheck = 2;  // ... unless all of the block's elements are zero
struct FormatTables {
  float decoded[256];        // indexed by the (unpacked) element code
  float scale[256];          // S[c] as above; NaN for c = 255 (every product becomes NaN)
  int32_t scale_bits[256];   // log2(S[c]) << 23: S[c] * v for a normal v, as an integer add
  uint8_t flags[256];        // kFlag* per scale code
  // The first run of codes with flags 0 (E2M1: 2..191, and every other code has a flag): a
  // row whose scale codes all lie in it needs no per-block checks.
  uint8_t plain_lo, plain_hi;
};

const FormatTables& format_tables(ElemType t);

// Lanes of a row accumulator (mx_gemv.h): each block adds two elements' products to each lane.
inline constexpr int kLanes = 16;

// The SIMD kernels see a block as four 8-element vectors; lane l of the j-th holds element
// lane_elem(t, j, l). Vectors 0 and 2 feed accumulator lanes 0..7, vectors 1 and 3 lanes 8..15:
// accumulator lane L = 8h + l takes the elements block_elem(t, L, 0) = lane_elem(t, h, l) and
// block_elem(t, L, 1) = lane_elem(t, 2 + h, l). Natural order for every format (8j + l, so lane
// L takes elements L and 16 + L) but E2M1, whose byte L holds elements 2L (low nibble) and
// 2L + 1 (high nibble): lane L takes those two (its decoder yields the even elements of each
// 16-element half, then the odd ones).
MXQ_HD_INLINE constexpr int lane_elem(ElemType t, int j, int l) {
  return t == ElemType::kE2M1 ? 16 * (j % 2) + 2 * l + j / 2 : 8 * j + l;
}
MXQ_HD_INLINE constexpr int block_elem(ElemType t, int lane, int term) {
  return lane_elem(t, 2 * term + lane / 8, lane % 8);
}

// The 8 FP32 lanes of a row accumulator summed in the documented fixed order.
MXQ_HD_INLINE float hsum8(const float* a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}
// The 16 lanes: a[l] + a[l + 8] first (the two halves of the AVX2 accumulator, the two 256-bit
// halves of the AVX-512 one), then hsum8.
MXQ_HD_INLINE float hsum16(const float* a) {
  const float t[8] = {a[0] + a[8],  a[1] + a[9],  a[2] + a[10], a[3] + a[11],
                      a[4] + a[12], a[5] + a[13], a[6] + a[14], a[7] + a[15]};
  return hsum8(t);
}

// Activation rows per super-tile of the SIMD kernels (their x layout, below).
inline constexpr int64_t kSuperTile = 16;

// x [m, k] (row stride ldx) -> xi in the SIMD kernels' order: for each super-tile of
// kSuperTile rows starting at row m0, at xi + m0 * k, the rows' blocks interleaved: element
// (r, 32 b + lane_elem(t, j, l)) at (b * mc + r) * 32 + 8 j + l (mc = the super-tile's rows).
// For m = 1 and natural lanes this is x itself, and no copy is needed.
void interleave_x(ElemType t, const float* x, int64_t m, int64_t ldx, int64_t k, float* xi);

// Kernels per ISA (mx_gemv.cc; mx_gemv_kernels.h, compiled by mx_gemv_avx2.cc and
// mx_gemv_avx512.cc): weight rows [n0, n1), all m activation rows. The SIMD kernels read the interleaved xi; x/ldx serve the float64 loop.
void gemm_rows_scalar(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, float* y,
                      int64_t ldy, int64_t n0, int64_t n1);
void gemm_rows_avx2(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, const float* xi,
                    float* y, int64_t ldy, int64_t n0, int64_t n1);
void gemm_rows_avx512(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx,
                      const float* xi, float* y, int64_t ldy, int64_t n0, int64_t n1);
bool avx2_compiled();    // false where the SIMD kernels are not built (non-x86 hosts)
bool avx512_compiled();

}  // namespace mxq::cpu::fast::detail
