// Quantize kernels: the flat fast path (one thread per 16-element half block) and the
// one-thread-per-block fallback for padded K and unaligned pointers.
#include "cuda/quant/block_io.cuh"
#include "mxq/packing.h"

namespace mxq::cuda {
namespace qk {
namespace {

template <ElemType T, Rounding R, DType D>
__global__ void __launch_bounds__(kThreads)
    quantize_kernel(const void* __restrict__ in, uint32_t units, detail::ScaleParams sp,
                    uint8_t* __restrict__ packed, uint8_t* __restrict__ scales) {
  const uint32_t u = blockIdx.x * kThreads + threadIdx.x;
  const bool live = u < units;  // units is even: both lanes of a block agree
  float x[16];
  if (live) {
    load16<D>(in, size_t(u) * 16, x);
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = 0.0f;
  }
  quantize_unit<T, R>(x, sp, live, u, packed, scales);
}

// One thread per (row, block) of the padded [rows, kb * 32] grid; columns >= k read as zero.
template <ElemType T, Rounding R>
__global__ void __launch_bounds__(kThreads)
    quantize_generic_kernel(const void* __restrict__ in, DType dtype, int64_t rows, int64_t k,
                            int64_t kb, detail::ScaleParams sp, uint8_t* __restrict__ packed,
                            uint8_t* __restrict__ scales) {
  constexpr ElemInfo ei = elem_info(T);
  constexpr int kBlockBytes = kBlockSize * ei.bits / 8;
  const int64_t b = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (b >= rows * kb) return;
  const int64_t row = b / kb, col0 = (b % kb) * kBlockSize;
  float x[kBlockSize];
  float am = 0.0f;
#pragma unroll
  for (int i = 0; i < kBlockSize; ++i) {
    x[i] = col0 + i < k ? num::load_dense(in, dtype, row * k + col0 + i) : 0.0f;
    am = amax_nan(am, x[i]);
  }
  const uint8_t s = num::scale_code(T, sp.rule, as_u(am), sp.saturate_scale);
  uint8_t codes[kBlockSize];
  const float mul = inv_scale(s);
#pragma unroll
  for (int i = 0; i < kBlockSize; ++i)
    codes[i] = s == num::kScaleNaN ? ei.nan_fill : uint8_t(encode<T, R>(x[i], mul, sp.over_mag));
  uint8_t out[kBlockBytes];
  pack::pack_codes(T, codes, kBlockSize, out);
  uint8_t* dst = packed + b * kBlockBytes;  // rows of kb blocks are contiguous
#pragma unroll
  for (int i = 0; i < kBlockBytes; ++i) dst[i] = out[i];
  scales[b] = s;
}

}  // namespace
}  // namespace qk

namespace detail {

cudaError_t launch_quantize_fast(const void* in, DType dtype, uint32_t units,
                                 const QuantOptions& opts, uint8_t* packed, uint8_t* scales,
                                 cudaStream_t stream) {
  const ScaleParams sp = scale_params(opts);
  qk::dispatch_elem(opts.elem, [&](auto t) {
    qk::dispatch_rounding(opts.rounding, [&](auto r) {
      qk::dispatch_dtype(dtype, [&](auto d) {
        qk::quantize_kernel<decltype(t)::value, decltype(r)::value, decltype(d)::value>
            <<<qk::grid_for(units), qk::kThreads, 0, stream>>>(in, units, sp, packed, scales);
      });
    });
  });
  return cudaGetLastError();
}

cudaError_t launch_quantize_generic(const void* in, DType dtype, int64_t rows, int64_t k,
                                    int64_t kb, const QuantOptions& opts, uint8_t* packed,
                                    uint8_t* scales, cudaStream_t stream) {
  const ScaleParams sp = scale_params(opts);
  qk::dispatch_elem(opts.elem, [&](auto t) {
    qk::dispatch_rounding(opts.rounding, [&](auto r) {
      qk::quantize_generic_kernel<decltype(t)::value, decltype(r)::value>
          <<<qk::grid_for(uint64_t(rows * kb)), qk::kThreads, 0, stream>>>(
              in, dtype, rows, k, kb, sp, packed, scales);
    });
  });
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace mxq::cuda
