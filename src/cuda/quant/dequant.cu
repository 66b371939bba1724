// Dequantize kernels: packed [rows, k * bits / 8] + scales [rows, k / 32] -> F32 / BF16 / F16.
// Fast path: one thread per 16 elements with vector loads and 16-byte stores; fallback: one
// thread per block with byte accesses (unaligned pointers).
#include "cuda/quant/block_io.cuh"
#include "mxq/packing.h"

namespace mxq::cuda {
namespace qk {
namespace {

// The 16 element codes of unit u.
template <ElemType T>
__device__ __forceinline__ void load_codes16(const uint8_t* packed, size_t u, uint32_t (&c)[16]) {
  constexpr int bits = elem_info(T).bits;
  if constexpr (bits == 8) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(packed) + u);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 16; ++i) c[i] = (w[i / 4] >> (8 * (i % 4))) & 0xFFu;
  } else if constexpr (bits == 4) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(packed) + u);
    const uint32_t w[2] = {v.x, v.y};
#pragma unroll
    for (int i = 0; i < 16; ++i) c[i] = (w[i / 8] >> (4 * (i % 8))) & 0xFu;
  } else {
    const uint32_t* p = reinterpret_cast<const uint32_t*>(packed) + u * 3;
    const uint32_t w0 = __ldg(p), w1 = __ldg(p + 1), w2 = __ldg(p + 2);
    const uint32_t g[4] = {w0 & 0xFFFFFFu, (w0 >> 24) | ((w1 & 0xFFFFu) << 8),
                           (w1 >> 16) | ((w2 & 0xFFu) << 16), w2 >> 8};
#pragma unroll
    for (int i = 0; i < 16; ++i) c[i] = (g[i / 4] >> (6 * (i % 4))) & 0x3Fu;
  }
}

// FP32 bits -> the output dtype's bits, as numerics.h's f32_to_bf16 / f32_to_f16 (RNE).
template <DType O>
__device__ __forceinline__ uint32_t narrow(uint32_t v) {
  if constexpr (O == DType::kBF16) {
    return num::f32_to_bf16(as_f(v));
  } else {
    // Hardware RNE conversion for numbers; NaN takes numerics.h's payload rule.
    if ((v & num::kF32AbsMask) > num::kF32Inf) return num::f32_to_f16(as_f(v));
    return __half_as_ushort(__float2half_rn(as_f(v)));
  }
}

template <ElemType T, DType O>
__global__ void __launch_bounds__(kThreads)
    dequantize_kernel(const uint8_t* __restrict__ packed, const uint8_t* __restrict__ scales,
                      uint32_t units, void* __restrict__ out) {
  const uint32_t u = blockIdx.x * kThreads + threadIdx.x;
  if (u >= units) return;
  uint32_t c[16];
  load_codes16<T>(packed, u, c);
  const uint8_t s = __ldg(scales + (u >> 1));
  uint32_t v[16];
  if (s == num::kScaleNaN) {
#pragma unroll
    for (int i = 0; i < 16; ++i) v[i] = num::kF32QuietNaN;
  } else {
    const float sc = num::e8m0_to_f32(s);
#pragma unroll
    for (int i = 0; i < 16; ++i) v[i] = decode_scaled<T>(c[i], sc);
  }
  if constexpr (O == DType::kF32) {
    uint4* dst = reinterpret_cast<uint4*>(out) + size_t(u) * 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      dst[i] = make_uint4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
  } else {
    uint32_t w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = narrow<O>(v[2 * i]) | (narrow<O>(v[2 * i + 1]) << 16);
    uint4* dst = reinterpret_cast<uint4*>(out) + size_t(u) * 2;
    dst[0] = make_uint4(w[0], w[1], w[2], w[3]);
    dst[1] = make_uint4(w[4], w[5], w[6], w[7]);
  }
}

template <ElemType T>
__global__ void __launch_bounds__(kThreads)
    dequantize_generic_kernel(const uint8_t* __restrict__ packed,
                              const uint8_t* __restrict__ scales, int64_t blocks, DType out_dtype,
                              void* __restrict__ out) {
  constexpr int kBlockBytes = kBlockSize * elem_info(T).bits / 8;
  const int64_t b = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (b >= blocks) return;
  uint8_t bytes[kBlockBytes], codes[kBlockSize];
#pragma unroll
  for (int i = 0; i < kBlockBytes; ++i) bytes[i] = packed[b * kBlockBytes + i];
  pack::unpack_codes(T, bytes, kBlockSize, codes);
  const uint8_t s = scales[b];
  const float sc = num::e8m0_to_f32(s);
  for (int i = 0; i < kBlockSize; ++i) {
    const uint32_t v = s == num::kScaleNaN ? num::kF32QuietNaN : decode_scaled<T>(codes[i], sc);
    const int64_t o = b * kBlockSize + i;
    switch (out_dtype) {
      case DType::kF32: static_cast<uint32_t*>(out)[o] = v; break;
      case DType::kBF16: static_cast<uint16_t*>(out)[o] = uint16_t(narrow<DType::kBF16>(v)); break;
      case DType::kF16: static_cast<uint16_t*>(out)[o] = uint16_t(narrow<DType::kF16>(v)); break;
    }
  }
}

}  // namespace
}  // namespace qk

namespace detail {

cudaError_t launch_dequantize_fast(const uint8_t* packed, const uint8_t* scales, ElemType elem,
                                   uint32_t units, DType out_dtype, void* out,
                                   cudaStream_t stream) {
  qk::dispatch_elem(elem, [&](auto t) {
    qk::dispatch_dtype(out_dtype, [&](auto d) {
      qk::dequantize_kernel<decltype(t)::value, decltype(d)::value>
          <<<qk::grid_for(units), qk::kThreads, 0, stream>>>(packed, scales, units, out);
    });
  });
  return cudaGetLastError();
}

cudaError_t launch_dequantize_generic(const uint8_t* packed, const uint8_t* scales,
                                      ElemType elem, int64_t blocks, DType out_dtype, void* out,
                                      cudaStream_t stream) {
  qk::dispatch_elem(elem, [&](auto t) {
    qk::dequantize_generic_kernel<decltype(t)::value>
        <<<qk::grid_for(uint64_t(blocks)), qk::kThreads, 0, stream>>>(packed, scales, blocks,
                                                                      out_dtype, out);
  });
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace mxq::cuda
