// Device-side MX element encode/decode for the quantize kernels: the same bits as numerics.h's
// num::encode_elem / num::decode_elem, in fewer instructions (docs/cuda.md, "Quantize kernels").
//
// Encode. numerics.h rounds x / 2^c with integer shifts (about 40 instructions per element,
// which would make the kernels compute-bound at HBM3 rates). Here the element is instead
// rounded by one FP32 addition of a "magic" power of two:
//   a = |x| * 2^-c                       exact: a power-of-two product, unless it is an FP32
//                                        subnormal, and then it is below half the element's
//                                        smallest subnormal and rounds to 0 whatever bits it lost
//   E = max(binade of a, emin)           the element binade a falls in (subnormals: emin)
//   M = 2^(E - mbits + 23)               its ulp is exactly the element quantum 2^(E - mbits)
//   t = M + a  (one FP32 add)            rounds a to a multiple of the quantum, in hardware
//   n = bits(t) - bits(M)                the rounded significand (a carry into the next binade
//                                        is just n = 2^(mbits+1))
//   code = ((E - emin) << mbits) + n     numerics.h's code formula
// The rounding of the add is the element rounding: rne is __fadd_rn; half_away is
// round-toward-zero of (a + quantum/2); toward_zero_ties is round-up of max(a - quantum/2, 0)
// (both exact steps: quantum/2 is a multiple of a's ulp). MXINT8 uses the same with a fixed
// quantum (a * 64 + 2^23). tests/cuda/quant_test.cu compares these encoders with
// num::encode_elem exhaustively over every FP32 pattern in the binades that matter, for every
// element type, rounding and saturation.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mxq/formats.h"
#include "mxq/numerics.h"

namespace mxq::cuda::qk {

__device__ __forceinline__ float as_f(uint32_t u) { return __uint_as_float(u); }
__device__ __forceinline__ uint32_t as_u(float f) { return __float_as_uint(f); }

// max(acc, |x|) that propagates NaN (PTX max.NaN, sm_80+): the block amax, in FP32 order, which
// for non-negative values is the order of the bit patterns. Any NaN lane gives a NaN amax, whose
// pattern (0x7FFFFFFF) is >= 0x7F800000 like numerics.h's integer amax of a NaN lane.
__device__ __forceinline__ float amax_nan(float acc, float x) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(acc), "f"(fabsf(x)));
  return r;
}
__device__ __forceinline__ float max_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

// 2^(127 - s): the multiplier that takes x to the element scale of E8M0 code s (0..254).
__device__ __forceinline__ float inv_scale(uint32_t s) {
  return as_f(s <= 253u ? (254u - s) << 23 : 0x00400000u);
}

// The magnitude code of a = |x| * 2^-c (finite, >= 0), before saturation (may exceed max_mag).
template <ElemType T, Rounding R>
__device__ __forceinline__ uint32_t encode_mag(float a) {
  constexpr ElemInfo ei = elem_info(T);
  if constexpr (ei.is_int) {
    constexpr uint32_t kM = 0x4B000000u;  // 2^23: ulp 1
    const float a64 = __fmul_rn(a, 64.0f);
    float t;
    if constexpr (R == Rounding::kRne) {
      t = __fadd_rn(a64, as_f(kM));
    } else if constexpr (R == Rounding::kHalfAway) {
      t = __fadd_rz(__fadd_rz(a64, 0.5f), as_f(kM));
    } else {
      t = __fadd_ru(fmaxf(__fadd_ru(a64, -0.5f), 0.0f), as_f(kM));
    }
    return as_u(t) - kM;
  } else {
    constexpr uint32_t kMinEb = uint32_t(127 + ei.emin) << 23;
    constexpr uint32_t kMOff = uint32_t(23 - ei.mbits) << 23;
    constexpr uint32_t kPos = uint32_t(127 + ei.emin) << ei.mbits;
    const uint32_t ab = as_u(a);
    const uint32_t eb = max(ab & 0x7F800000u, kMinEb);
    const uint32_t mb = eb + kMOff;
    const float m = as_f(mb);
    float t;
    if constexpr (R == Rounding::kRne) {
      t = __fadd_rn(a, m);
    } else {
      const float h = as_f(mb - (24u << 23));  // half the quantum: M * 2^-24
      if constexpr (R == Rounding::kHalfAway) {
        t = __fadd_rz(__fadd_rz(a, h), m);
      } else {
        t = __fadd_ru(fmaxf(__fadd_ru(a, -h), 0.0f), m);
      }
    }
    return as_u(t) - mb + (eb >> (23 - ei.mbits)) - kPos;
  }
}

// The element code of the finite x at the block scale whose multiplier is `mul` (inv_scale).
// `over` is the magnitude code of an overflow: max_mag (saturate) or overflow_mag (nan_inf).
template <ElemType T, Rounding R>
__device__ __forceinline__ uint32_t encode(float x, float mul, uint32_t over) {
  constexpr ElemInfo ei = elem_info(T);
  uint32_t mag = encode_mag<T, R>(__fmul_rn(fabsf(x), mul));
  mag = mag > ei.max_mag ? over : mag;
  if constexpr (ei.is_int) {
    return (as_u(x) >> 31 ? 0u - mag : mag) & 0xFFu;
  } else {
    return mag | ((as_u(x) >> 31) << (ei.bits - 1));
  }
}

// Element code -> FP32 bits of code * scale, as numerics.h's decode_elem(code) * e8m0_to_f32(s)
// on the host (one correctly rounded multiply), with the host's NaN bits: a NaN element code
// gives sign | 0x7FC00000 (x86 returns the NaN operand of a multiply unchanged). `sc` is
// e8m0_to_f32(s) of a non-NaN scale s.
template <ElemType T>
__device__ __forceinline__ uint32_t decode_scaled(uint32_t code, float sc) {
  constexpr ElemInfo ei = elem_info(T);
  if constexpr (ei.is_int) {
    const float v = __fmul_rn(float(int(int8_t(uint8_t(code)))), 1.0f / 64.0f);
    return as_u(__fmul_rn(v, sc));
  } else {
    const uint32_t mag = code & (ei.sign_mask - 1u);
    const uint32_t sign = (code & ei.sign_mask) ? 0x80000000u : 0u;
    // The code's bits placed in an FP32 exponent/mantissa field, then moved to the element's
    // bias: exact for normal and subnormal elements alike (FP32 subnormals are not flushed).
    const float v = __fmul_rn(as_f(mag << (23 - ei.mbits)), as_f(uint32_t(254 - ei.bias) << 23));
    uint32_t r = as_u(__fmul_rn(v, sc));
    if constexpr (T == ElemType::kE4M3) {
      if (mag == 0x7Fu) r = num::kF32QuietNaN;
    } else if constexpr (T == ElemType::kE5M2) {
      if (mag >= 0x7Cu) r = mag == 0x7Cu ? num::kF32Inf : num::kF32QuietNaN;
    }
    return r | sign;
  }
}

}  // namespace mxq::cuda::qk
