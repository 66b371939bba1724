// The SiLU-and-mul definition of mxq's fused activation kernels, bit for bit, on host and device.
//
//   h = silu(g) * u = (g / (1 + exp(-g))) * u          every step in FP32, round to nearest even
//
// exp is mxq's own (exp_f32 below), built from correctly rounded FP32 operations only (fma, +,
// *, /), so the host compiler and nvcc produce the same bits: libm's expf and CUDA's expf differ
// in the last place, and a fused kernel that must equal its CPU reference bit for bit cannot use
// either. Accuracy: within 2 ulp of exp on the whole FP32 range (tests/cuda/quant_test.cu checks
// silu_mul_f32 against a float64 reference).
//
// On the device every operation is an explicit _rn intrinsic, so nvcc cannot contract a multiply
// and an add into an FMA that the host code does not have (and vice versa on the host: only the
// explicit std::fma calls are fused).
#pragma once

#include <cmath>
#include <cstdint>

#include "mxq/formats.h"
#include "mxq/numerics.h"

namespace mxq::cuda::act {

MXQ_HD_INLINE float f_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
MXQ_HD_INLINE float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
MXQ_HD_INLINE float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
MXQ_HD_INLINE float f_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

MXQ_HD_INLINE float f_min(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fminf(a, b);
#else
  return std::fmin(a, b);
#endif
}
MXQ_HD_INLINE float f_max(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fmaxf(a, b);
#else
  return std::fmax(a, b);
#endif
}

// e^x in FP32 for x clamped to [-104, 89] (so +Inf -> Inf, -Inf -> 0; a NaN x is replaced by
// -104 by the IEEE minNum/maxNum clamp: silu_mul_f32 gets its NaN from g itself).
// k = rint(x / ln 2) through the 1.5 * 2^23 shifter (k read from the sum's low bits, no
// float->int conversion), r = x - k ln 2 in two fma steps (Cody-Waite), e^r by its degree-7
// Taylor polynomial (|r| <= 0.35: truncation error below 2^-27), then 2^k applied as two exact
// power-of-two multiplies (k >> 1 and the rest, both normal) so that overflow gives Inf and
// results in the subnormal range are rounded once.
MXQ_HD_INLINE float exp_f32(float x) {
  x = f_min(f_max(x, -104.0f), 89.0f);
  const float shifter = 12582912.0f;  // 1.5 * 2^23
  const float t = f_fma(x, 1.44269502162933349609375f, shifter);
  const int k = int(num::f32_bits(t)) - int(num::f32_bits(shifter));  // t = shifter + k exactly
  const float j = f_add(t, -shifter);
  float r = f_fma(j, -0.693145751953125f, x);         // ln 2, high 16 bits (exact times k)
  r = f_fma(j, -1.428606765330187045e-06f, r);        // ln 2 - high part
  float p = 1.0f / 5040.0f;
  p = f_fma(p, r, 1.0f / 720.0f);
  p = f_fma(p, r, 1.0f / 120.0f);
  p = f_fma(p, r, 1.0f / 24.0f);
  p = f_fma(p, r, 1.0f / 6.0f);
  p = f_fma(p, r, 0.5f);
  p = f_fma(p, r, 1.0f);
  p = f_fma(p, r, 1.0f);
  const int k1 = k >> 1, k2 = k - k1;  // k in [-151, 129]: both halves are normal powers of two
  return f_mul(f_mul(p, num::f32_from_bits(uint32_t(k1 + 127) << 23)),
               num::f32_from_bits(uint32_t(k2 + 127) << 23));
}

// silu(g) * u, in FP32: e = exp(-g); d = 1 + e; s = g / d; h = s * u (each step rounded to
// nearest even). Large negative g gives -0 * u; NaN in either input gives NaN (from g / d or
// from s * u).
MXQ_HD_INLINE float silu_mul_f32(float g, float u) {
  const float e = exp_f32(-g);
  const float s = f_div(g, f_add(1.0f, e));
  return f_mul(s, u);
}

}  // namespace mxq::cuda::act
