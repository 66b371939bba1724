// Fused SiLU-and-mul + MX quantize: gate_up [rows, 2 * inter] -> packed [rows, inter * bits / 8],
// scales [rows, inter / 32]. One thread per 16 outputs (half an MX block), as the quantize kernel;
// the activation never goes to memory.
#include "cuda/quant/block_io.cuh"
#include "cuda/quant/silu.h"

namespace mxq::cuda {
namespace qk {
namespace {

// The activation as the unfused pipeline would have stored it: FP32, rounded to nearest even to
// the input dtype and widened back (exact).
template <DType D>
__device__ __forceinline__ float round_to_dtype(float h) {
  if constexpr (D == DType::kBF16) {
    return __bfloat162float(__float2bfloat16_rn(h));
  } else if constexpr (D == DType::kF16) {
    return __half2float(__float2half_rn(h));
  } else {
    return h;
  }
}

template <ElemType T, Rounding R, DType D, bool kInterleaved>
__global__ void __launch_bounds__(kThreads)
    silu_quantize_kernel(const void* __restrict__ gate_up, uint32_t units, detail::FastDiv per_row,
                         uint32_t inter, detail::ScaleParams sp, uint8_t* __restrict__ packed,
                         uint8_t* __restrict__ scales) {
  const uint32_t u = blockIdx.x * kThreads + threadIdx.x;
  const bool live = u < units;
  float h[16];
  if (live) {
    const uint32_t row = per_row.div(u);
    const uint32_t col0 = (u - row * per_row.d) * 16;  // output column of h[0]
    const size_t base = size_t(row) * 2 * inter;
    float g[16], up[16];
    if constexpr (kInterleaved) {
      load16<D>(gate_up, base + 2 * size_t(col0), g);       // g0 u0 g1 u1 ... g7 u7
      load16<D>(gate_up, base + 2 * size_t(col0) + 16, up);  // g8 u8 ... g15 u15
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        h[i] = round_to_dtype<D>(act::silu_mul_f32(g[2 * i], g[2 * i + 1]));
        h[8 + i] = round_to_dtype<D>(act::silu_mul_f32(up[2 * i], up[2 * i + 1]));
      }
    } else {
      load16<D>(gate_up, base + col0, g);
      load16<D>(gate_up, base + inter + col0, up);
#pragma unroll
      for (int i = 0; i < 16; ++i) h[i] = round_to_dtype<D>(act::silu_mul_f32(g[i], up[i]));
    }
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) h[i] = 0.0f;
  }
  quantize_unit<T, R>(h, sp, live, u, packed, scales);
}

}  // namespace
}  // namespace qk

namespace detail {

cudaError_t launch_silu_quantize(const void* gate_up, DType dtype, uint32_t rows, uint32_t inter,
                                 bool interleaved, const QuantOptions& opts, uint8_t* packed,
                                 uint8_t* scales, cudaStream_t stream) {
  const ScaleParams sp = scale_params(opts);
  const uint32_t per_row = inter / 16;
  const uint32_t units = rows * per_row;
  const FastDiv div(per_row);
  qk::dispatch_elem(opts.elem, [&](auto t) {
    qk::dispatch_rounding(opts.rounding, [&](auto r) {
      qk::dispatch_dtype(dtype, [&](auto d) {
        constexpr ElemType kT = decltype(t)::value;
        constexpr Rounding kR = decltype(r)::value;
        constexpr DType kD = decltype(d)::value;
        if (interleaved) {
          qk::silu_quantize_kernel<kT, kR, kD, true><<<qk::grid_for(units), qk::kThreads, 0,
                                                       stream>>>(gate_up, units, div, inter, sp,
                                                                 packed, scales);
        } else {
          qk::silu_quantize_kernel<kT, kR, kD, false><<<qk::grid_for(units), qk::kThreads, 0,
                                                        stream>>>(gate_up, units, div, inter, sp,
                                                                  packed, scales);
        }
      });
    });
  });
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace mxq::cuda
