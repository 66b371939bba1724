// Internal launchers of the quantize kernels (src/cuda/quant/*.cu); quantize.cu validates the
// arguments and calls these. Each launcher enqueues on `stream` and returns cudaGetLastError().
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mxq/formats.h"
#include "mxq/quantize.h"

namespace mxq::cuda::detail {

// Scale choice and overflow code shared by every quantize kernel.
struct ScaleParams {
  ScaleRule rule;
  bool saturate_scale;
  uint32_t over_mag;  // magnitude code of an element overflow: max_mag or overflow_mag
};

inline ScaleParams scale_params(const QuantOptions& o) {
  const ElemInfo ei = elem_info(o.elem);
  return {o.scale_rule, o.saturate_scale,
          o.saturation == Saturation::kNanInf ? uint32_t(ei.overflow_mag) : uint32_t(ei.max_mag)};
}

// n = a / d for a < 2^31 through a multiply-high (d >= 1): the row split of the fused kernel.
struct FastDiv {
  uint32_t d = 1, mul = 1, shift = 0;
  FastDiv() = default;
  explicit FastDiv(uint32_t divisor) : d(divisor) {
    shift = 0;
    while ((uint64_t(1) << shift) < divisor) ++shift;
    mul = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - divisor)) / divisor + 1);
  }
#if defined(__CUDACC__)
  __device__ __forceinline__ uint32_t div(uint32_t a) const {
    return (__umulhi(a, mul) + a) >> shift;
  }
#endif
};

// Flat fast path: `units` = 16-element halves of blocks (2 per block); k % 32 == 0, aligned.
cudaError_t launch_quantize_fast(const void* in, DType dtype, uint32_t units,
                                 const QuantOptions& opts, uint8_t* packed, uint8_t* scales,
                                 cudaStream_t stream);
// One thread per 32-element block, any k (zero-padded to kq = kb * 32), byte accesses.
cudaError_t launch_quantize_generic(const void* in, DType dtype, int64_t rows, int64_t k,
                                    int64_t kb, const QuantOptions& opts, uint8_t* packed,
                                    uint8_t* scales, cudaStream_t stream);
// Fused SiLU-and-mul + quantize over `rows` rows (rows * inter / 16 < 2^31).
cudaError_t launch_silu_quantize(const void* gate_up, DType dtype, uint32_t rows, uint32_t inter,
                                 bool interleaved, const QuantOptions& opts, uint8_t* packed,
                                 uint8_t* scales, cudaStream_t stream);
// Flat fast dequantize over `units` 16-element halves of blocks.
cudaError_t launch_dequantize_fast(const uint8_t* packed, const uint8_t* scales, ElemType elem,
                                   uint32_t units, DType out_dtype, void* out,
                                   cudaStream_t stream);
// One thread per block, byte accesses (unaligned pointers).
cudaError_t launch_dequantize_generic(const uint8_t* packed, const uint8_t* scales,
                                      ElemType elem, int64_t blocks, DType out_dtype, void* out,
                                      cudaStream_t stream);

}  // namespace mxq::cuda::detail
