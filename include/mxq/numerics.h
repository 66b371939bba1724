// The bit-exact MX numerics contract (docs/numerics.md), defined once for host and device.
//
// All functions are constexpr and branch-light integer code on FP32 bit patterns, so that
//  - results never depend on the FPU mode (no flush-to-zero, no fast-math);
//  - the same code runs in the CPU reference, the vectorised CPU path and CUDA kernels;
//  - the compiler can vectorise the per-element loops (no clz, no tables, no libm).
//
// Conventions: `xbits` is an FP32 bit pattern; a block scale is an E8M0 code s with value
// 2^(s-127); `c = s - 127` is its unbiased exponent.
#pragma once

#include <cstdint>

#include "mxq/formats.h"

namespace mxq::num {

// ---- FP32 / BF16 / FP16 bit conversions -------------------------------------------------

MXQ_HD_INLINE constexpr uint32_t f32_bits(float f) { return __builtin_bit_cast(uint32_t, f); }
MXQ_HD_INLINE constexpr float f32_from_bits(uint32_t u) { return __builtin_bit_cast(float, u); }

inline constexpr uint32_t kF32AbsMask = 0x7FFFFFFFu;
inline constexpr uint32_t kF32Inf = 0x7F800000u;
inline constexpr uint32_t kF32QuietNaN = 0x7FC00000u;

// 2^k for k in [-149, 127], exact (subnormal results included).
MXQ_HD_INLINE constexpr float pow2f(int k) {
  return k >= -126 ? f32_from_bits(uint32_t(k + 127) << 23) : f32_from_bits(1u << (k + 149));
}

MXQ_HD_INLINE constexpr float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }

// Round to nearest even; NaN stays NaN (quieted, sign and top payload kept).
MXQ_HD_INLINE constexpr uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & kF32AbsMask) > kF32Inf) return uint16_t((u >> 16) | 0x0040u);
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

MXQ_HD_INLINE constexpr float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu;
  const uint32_t m = h & 0x3FFu;
  if (e == 0x1F) return f32_from_bits(sign | kF32Inf | (m << 13));
  if (e == 0) {  // subnormal or zero: m * 2^-24, exact in FP32
    const float v = float(m) * pow2f(-24);
    return f32_from_bits(sign | f32_bits(v));
  }
  return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

// Round to nearest even, overflow to Inf, NaN stays NaN (quieted).
MXQ_HD_INLINE constexpr uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & kF32AbsMask;
  if (a > kF32Inf) return uint16_t(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00u);  // >= 65520 rounds to Inf
  if (a < 0x38800000u) {                                  // below 2^-14: FP16 subnormal
    const int e = int(a >> 23);
    if (e < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself is a tie -> 0)
    const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    const int sh = 126 - e;  // value = m * 2^(e-150); in units of 2^-24: m >> (126 - e)
    uint32_t n = m >> sh;
    const uint32_t r = m & ((1u << sh) - 1u), half = 1u << (sh - 1);
    n += (r > half || (r == half && (n & 1u))) ? 1u : 0u;
    return uint16_t(sign | n);
  }
  const uint32_t b = a - (112u << 23);  // rebias exponent 127 -> 15
  return uint16_t(sign | ((b + 0xFFFu + ((b >> 13) & 1u)) >> 13));
}

// Element i of a dense F32 / BF16 / F16 buffer, widened exactly to FP32.
MXQ_HD_INLINE float load_dense(const void* data, DType d, int64_t i) {
  if (d == DType::kF32) return static_cast<const float*>(data)[i];
  const uint16_t h = static_cast<const uint16_t*>(data)[i];
  return d == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// ---- E8M0 scales --------------------------------------------------------------------------

inline constexpr uint8_t kScaleNaN = 0xFF;

// 2^(code-127); code 0 is 2^-127 (FP32 subnormal 0x00400000), code 0xFF is NaN.
MXQ_HD_INLINE constexpr float e8m0_to_f32(uint8_t code) {
  if (code == kScaleNaN) return f32_from_bits(kF32QuietNaN);
  if (code == 0) return f32_from_bits(0x00400000u);
  return f32_from_bits(uint32_t(code) << 23);
}

// floor(log2(m)) for 0 < m < 2^24 through an exact int->float conversion (vectorises, unlike
// clz on x86 AVX2). m == 0 gives -127.
MXQ_HD_INLINE constexpr int ilog2_u24(uint32_t m) { return int(f32_bits(float(int32_t(m))) >> 23) - 127; }

MXQ_HD_INLINE constexpr int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// ceil(log2(q)) for a positive finite FP32 pattern q (subnormals included).
MXQ_HD constexpr int ceil_log2_f32(uint32_t qbits) {
  const uint32_t e = qbits >> 23, m = qbits & 0x7FFFFFu;
  if (e != 0) return int(e) - 127 + (m != 0 ? 1 : 0);
  const int lm = ilog2_u24(m);  // subnormal: q = m * 2^-149
  return lm - 149 + ((m & (m - 1)) != 0 ? 1 : 0);
}

// The E8M0 scale code of a block from the FP32 pattern of its amax (max |x|, sign cleared).
// Non-finite blocks get 0xFF and all-zero blocks 0x00 under every rule. `saturate_scale` makes
// rceil/round_up return 0xFE instead of 0xFF when amax / max_normal exceeds 2^127.
MXQ_HD_INLINE constexpr uint8_t scale_code(ElemType t, ScaleRule rule, uint32_t amax_bits,
                                    bool saturate_scale = false) {
  if (amax_bits >= kF32Inf) return kScaleNaN;
  if (amax_bits == 0) return 0;
  const ElemInfo ei = elem_info(t);
  const uint8_t too_big = saturate_scale ? 0xFE : kScaleNaN;
  switch (rule) {
    case ScaleRule::kFloor: {
      if (amax_bits < 0x800000u) return 0;  // FP32-subnormal amax
      const int e = int(amax_bits >> 23) - 127;
      return uint8_t(clamp_int(e - ei.emax, -127, 127) + 127);
    }
    case ScaleRule::kRceil: {
      // NVIDIA: 2^ceil(log2(amax / max_normal)) on the RN FP32 quotient.
      const uint32_t q = f32_bits(f32_from_bits(amax_bits) / ei.max_normal);
      if (q == 0) return 0;
      const int code = ceil_log2_f32(q) + 127;
      return code > 254 ? too_big : uint8_t(code < 0 ? 0 : code);
    }
    case ScaleRule::kRoundUp: {
      // OpenAI triton_kernels: round the quotient's exponent up by adding an all-ones mantissa.
      // Differs from rceil for subnormal quotients <= 2^-127 (code 1 here, 0 there).
      const uint32_t q = f32_bits(f32_from_bits(amax_bits) / ei.max_normal);
      const uint32_t code = ((q + 0x7FFFFFu) & kF32Inf) >> 23;
      return code == 255 ? too_big : uint8_t(code);
    }
    case ScaleRule::kEven:
    case ScaleRule::kEvenFp4Mantissa: {
      // Round amax to `mb` mantissa bits (half up; identical to RNE for the only thing kept,
      // the carry into the exponent), then take the floor exponent.
      const int mb = rule == ScaleRule::kEven ? ei.even_mbits : 1;
      const uint32_t r = (amax_bits + (1u << (22 - mb))) & kF32Inf;
      if (r == 0) return 0;  // still subnormal: log2 is below every code
      const int e = int(r >> 23) - 127;
      if (rule == ScaleRule::kEven) return uint8_t(clamp_int(e - ei.emax, -127, 127) + 127);
      return uint8_t(clamp_int(e - ei.emax + 127, 0, 255));
    }
  }
  return kScaleNaN;
}

// ---- elements ------------------------------------------------------------------------------

// Encode the finite FP32 value x (bits `xbits`) divided by 2^c as element type t, exactly:
// no intermediate FP32 product is formed, so subnormal inputs and extreme scales lose nothing.
// The value is written m * 2^ex with an integer m < 2^24, the element's quantum 2^qx (in x's
// units) follows from x's binade and the element's subnormal threshold, and m is rounded to a
// multiple of it with integer shifts.
MXQ_HD_INLINE constexpr uint8_t encode_elem(ElemType t, uint32_t xbits, int c, Rounding rnd,
                                     Saturation sat) {
  const ElemInfo ei = elem_info(t);
  const uint32_t sign = xbits >> 31;
  const uint32_t a = xbits & kF32AbsMask;
  const int ef = int(a >> 23);
  const uint32_t m = (a & 0x7FFFFFu) | (ef != 0 ? 0x800000u : 0u);
  const int ex = (ef != 0 ? ef : 1) - 150;  // x = m * 2^ex
  int qx = 0;                               // log2 of the element quantum, in x's units
  if (ei.is_int) {
    qx = ei.emin + c;  // fixed point: quantum 2^-6 before scaling
  } else {
    const int ex_true = ilog2_u24(m) + ex;  // binade of x (very negative for zero)
    const int lo = ei.emin + c;             // binade of the element's smallest normal
    qx = (ex_true > lo ? ex_true : lo) - ei.mbits;
  }
  // Shift m (pre-multiplied by 8 so that exact subnormal cases shift right by >= 0).
  const int sh_raw = qx - ex + 3;
  const bool huge = sh_raw < 0;  // only MXINT8 can get here: |q| >= 2^21 saturates
  const int sh = clamp_int(sh_raw, 0, 31);
  const uint32_t m8 = m << 3;
  uint32_t n = m8 >> sh;
  const uint32_t r = m8 - (n << sh);
  const uint32_t half = (1u << sh) >> 1;
  bool up = false;
  switch (rnd) {
    case Rounding::kRne: up = r > half || (r == half && r != 0 && (n & 1u)); break;
    case Rounding::kHalfAway: up = r != 0 && r >= half; break;
    case Rounding::kTowardZeroTies: up = r > half; break;
  }
  n += up ? 1u : 0u;
  uint32_t mag = 0;
  if (ei.is_int) {
    mag = n;
  } else {
    // Code = (element binade above the subnormal range) << mbits + rounded significand; a
    // rounding carry propagates into the exponent field by plain addition.
    mag = (uint32_t(qx + ei.mbits - ei.emin - c) << ei.mbits) + n;
  }
  if (huge || mag > ei.max_mag) mag = sat == Saturation::kNanInf ? ei.overflow_mag : ei.max_mag;
  if (ei.is_int) return uint8_t(sign != 0 ? uint8_t(-int(mag)) : uint8_t(mag));
  return uint8_t(mag | (sign != 0 ? ei.sign_mask : 0u));
}

// Element code -> FP32 value (exact). FP8 NaN codes give NaN, E5M2 Inf codes give Inf.
MXQ_HD_INLINE constexpr float decode_elem(ElemType t, uint8_t code) {
  const ElemInfo ei = elem_info(t);
  if (ei.is_int) return float(int8_t(code)) * (1.0f / 64.0f);
  const bool neg = (code & ei.sign_mask) != 0;
  const uint32_t mag = code & (ei.sign_mask - 1u);
  const uint32_t sign = neg ? 0x80000000u : 0u;
  if (t == ElemType::kE4M3 && mag == 0x7F) return f32_from_bits(sign | kF32QuietNaN);
  if (t == ElemType::kE5M2 && mag >= 0x7C)
    return f32_from_bits(sign | (mag == 0x7C ? kF32Inf : kF32QuietNaN));
  const int e = int(mag >> ei.mbits);
  const uint32_t frac = mag & ((1u << ei.mbits) - 1u);
  const float v = e == 0 ? float(frac) * pow2f(ei.emin - ei.mbits)
                         : float(frac + (1u << ei.mbits)) * pow2f(e - ei.bias - ei.mbits);
  return f32_from_bits(sign | f32_bits(v));
}

// Element value times block scale, exact in FP32 (both factors are short significands),
// except that values beyond FLT_MAX become Inf. A 0xFF scale gives the canonical quiet NaN
// 0x7FC00000 for every element (decided here, not by the FPU's NaN-operand order).
MXQ_HD_INLINE constexpr float dequantize_elem(ElemType t, uint8_t code, uint8_t scale) {
  if (scale == kScaleNaN) return f32_from_bits(kF32QuietNaN);
  return decode_elem(t, code) * e8m0_to_f32(scale);
}

// ---- blocks --------------------------------------------------------------------------------

// Max |x| as an FP32 pattern: for finite values the order of |x| bit patterns is the order of
// magnitudes; any pattern >= 0x7F800000 marks a NaN or Inf lane.
MXQ_HD_INLINE constexpr uint32_t block_amax_bits(const uint32_t* xbits, int n) {
  uint32_t amax = 0;
  for (int i = 0; i < n; ++i) {
    const uint32_t a = xbits[i] & kF32AbsMask;
    amax = a > amax ? a : amax;
  }
  return amax;
}

struct BlockRules {
  ScaleRule scale_rule = ScaleRule::kFloor;
  Rounding rounding = Rounding::kRne;
  Saturation saturation = Saturation::kSaturate;
  bool saturate_scale = false;
};

// Quantizes one block of `n` (<= 32) FP32 patterns into unpacked element codes; returns the
// E8M0 scale code. A non-finite block gets scale 0xFF and the canonical fill in every lane.
MXQ_HD constexpr uint8_t quantize_block(ElemType t, const BlockRules& rules,
                                        const uint32_t* xbits, int n, uint8_t* codes) {
  const uint8_t s = scale_code(t, rules.scale_rule, block_amax_bits(xbits, n),
                               rules.saturate_scale);
  if (s == kScaleNaN) {
    for (int i = 0; i < n; ++i) codes[i] = elem_info(t).nan_fill;
    return s;
  }
  for (int i = 0; i < n; ++i)
    codes[i] = encode_elem(t, xbits[i], int(s) - 127, rules.rounding, rules.saturation);
  return s;
}

}  // namespace mxq::num
