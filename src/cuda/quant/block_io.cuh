// Shared device pieces of the quantize kernels: 16-element vector loads, the per-half-block
// quantize step (amax across the two threads of a 32-element block, scale, encode, packed store).
//
// Work split: a "unit" is one half of an MX block, 16 consecutive elements, owned by one thread;
// the two units of a block are adjacent lanes (u, u ^ 1) and exchange their amax with one
// shuffle. Loads are 16-byte vectors (2 per unit for BF16/F16, 4 for F32), stores 16 bytes
// (MXFP8/MXINT8), 8 (MXFP4) or 3 x 4 (MXFP6) per unit, so a warp's accesses are contiguous.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/quant/encode.cuh"
#include "cuda/quant/kernels.h"
#include "mxq/numerics.h"

namespace mxq::cuda::qk {

constexpr int kThreads = 256;  // threads per CTA of the flat kernels

// x[0..15] = 16 elements of type D starting at element e0 of `base` (16-byte aligned),
// widened exactly to FP32.
template <DType D>
__device__ __forceinline__ void load16(const void* base, size_t e0, float (&x)[16]) {
  if constexpr (D == DType::kF32) {
    const uint4* p = reinterpret_cast<const uint4*>(static_cast<const float*>(base) + e0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = __ldg(p + i);
      x[4 * i + 0] = as_f(v.x);
      x[4 * i + 1] = as_f(v.y);
      x[4 * i + 2] = as_f(v.z);
      x[4 * i + 3] = as_f(v.w);
    }
  } else {
    const uint4* p = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(base) + e0);
    const uint4 v0 = __ldg(p), v1 = __ldg(p + 1);
    const uint32_t w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if constexpr (D == DType::kBF16) {
        x[2 * i] = as_f(w[i] << 16);
        x[2 * i + 1] = as_f(w[i] & 0xFFFF0000u);
      } else {  // F16 -> F32 conversion is exact (subnormals included)
        x[2 * i] = __half2float(__ushort_as_half(uint16_t(w[i] & 0xFFFFu)));
        x[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(w[i] >> 16)));
      }
    }
  }
}

// Stores unit `u`'s 16 element codes in the packed layout (packing.h).
template <ElemType T>
__device__ __forceinline__ void store16(const uint32_t (&c)[16], uint8_t* packed, size_t u) {
  constexpr int bits = elem_info(T).bits;
  if constexpr (bits == 8) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      w[i] = c[4 * i] | (c[4 * i + 1] << 8) | (c[4 * i + 2] << 16) | (c[4 * i + 3] << 24);
    reinterpret_cast<uint4*>(packed)[u] = make_uint4(w[0], w[1], w[2], w[3]);
  } else if constexpr (bits == 4) {
    uint32_t w[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      uint32_t v = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) v |= c[8 * i + j] << (4 * j);
      w[i] = v;
    }
    reinterpret_cast<uint2*>(packed)[u] = make_uint2(w[0], w[1]);
  } else {  // 6 bits: four 24-bit groups, little-endian, in 12 bytes
    uint32_t g[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      g[i] = c[4 * i] | (c[4 * i + 1] << 6) | (c[4 * i + 2] << 12) | (c[4 * i + 3] << 18);
    uint32_t* p = reinterpret_cast<uint32_t*>(packed) + u * 3;
    p[0] = g[0] | (g[1] << 24);
    p[1] = (g[1] >> 8) | (g[2] << 16);
    p[2] = (g[2] >> 16) | (g[3] << 8);
  }
}

// Quantizes the half block x held by this thread together with its partner lane (lane ^ 1,
// holding the other half): every lane of the warp must call this (it shuffles). `live` lanes
// store unit `u`'s packed codes, and the even one of the pair the block's scale.
template <ElemType T, Rounding R>
__device__ __forceinline__ void quantize_unit(const float (&x)[16], const detail::ScaleParams& sp,
                                              bool live, size_t u, uint8_t* packed,
                                              uint8_t* scales) {
  constexpr ElemInfo ei = elem_info(T);
  float am = 0.0f;
#pragma unroll
  for (int i = 0; i < 16; ++i) am = amax_nan(am, x[i]);
  am = max_nan(am, __shfl_xor_sync(0xFFFFFFFFu, am, 1));
  const uint8_t s = num::scale_code(T, sp.rule, as_u(am), sp.saturate_scale);
  uint32_t c[16];
  if (s == num::kScaleNaN) {
#pragma unroll
    for (int i = 0; i < 16; ++i) c[i] = ei.nan_fill;
  } else {
    const float mul = inv_scale(s);
#pragma unroll
    for (int i = 0; i < 16; ++i) c[i] = encode<T, R>(x[i], mul, sp.over_mag);
  }
  if (!live) return;
  store16<T>(c, packed, u);
  if ((u & 1) == 0) scales[u >> 1] = s;
}

// Calls f(std::integral_constant<ElemType, T>) for the runtime element type.
template <typename F>
__host__ void dispatch_elem(ElemType t, F&& f) {
  switch (t) {
    case ElemType::kE2M1: return f(std::integral_constant<ElemType, ElemType::kE2M1>{});
    case ElemType::kE2M3: return f(std::integral_constant<ElemType, ElemType::kE2M3>{});
    case ElemType::kE3M2: return f(std::integral_constant<ElemType, ElemType::kE3M2>{});
    case ElemType::kE4M3: return f(std::integral_constant<ElemType, ElemType::kE4M3>{});
    case ElemType::kE5M2: return f(std::integral_constant<ElemType, ElemType::kE5M2>{});
    case ElemType::kInt8: return f(std::integral_constant<ElemType, ElemType::kInt8>{});
  }
}
template <typename F>
__host__ void dispatch_rounding(Rounding r, F&& f) {
  switch (r) {
    case Rounding::kRne: return f(std::integral_constant<Rounding, Rounding::kRne>{});
    case Rounding::kHalfAway: return f(std::integral_constant<Rounding, Rounding::kHalfAway>{});
    case Rounding::kTowardZeroTies:
      return f(std::integral_constant<Rounding, Rounding::kTowardZeroTies>{});
  }
}
template <typename F>
__host__ void dispatch_dtype(DType d, F&& f) {
  switch (d) {
    case DType::kF32: return f(std::integral_constant<DType, DType::kF32>{});
    case DType::kBF16: return f(std::integral_constant<DType, DType::kBF16>{});
    case DType::kF16: return f(std::integral_constant<DType, DType::kF16>{});
  }
}

inline unsigned grid_for(uint64_t threads) { return unsigned((threads + kThreads - 1) / kThreads); }

}  // namespace mxq::cuda::qk
