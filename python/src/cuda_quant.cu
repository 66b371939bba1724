// Device MX quantize / dequantize for the Python package (CUDA arrays): one thread per 32-block,
// the numerics of numerics.h (the same functions as the CPU path), packing of packing.h.
#include <cuda_runtime.h>

#include <string>

#include "cuda_quant.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"

namespace mxq::py {
namespace {

__device__ uint32_t load_bits(const void* x, DType d, int64_t i) {
  if (d == DType::kF32) return static_cast<const uint32_t*>(x)[i];
  const uint16_t h = static_cast<const uint16_t*>(x)[i];
  return num::f32_bits(d == DType::kBF16 ? num::bf16_to_f32(h) : num::f16_to_f32(h));
}

__global__ void quantize_kernel(const void* x, DType dtype, int64_t rows, int64_t k, int64_t kq,
                                ElemType t, num::BlockRules rules, uint8_t* packed,
                                uint8_t* scales) {
  const int64_t blocks_per_row = kq / kBlockSize;
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= rows * blocks_per_row) return;
  const int64_t r = b / blocks_per_row, c0 = (b % blocks_per_row) * kBlockSize;
  uint32_t bits[kBlockSize];
  for (int i = 0; i < kBlockSize; ++i)
    bits[i] = c0 + i < k ? load_bits(x, dtype, r * k + c0 + i) : 0u;  // pad_k: zeros
  uint8_t codes[kBlockSize];
  scales[b] = num::quantize_block(t, rules, bits, kBlockSize, codes);
  const int64_t row_bytes = packed_bytes(t, kq);
  pack::pack_codes(t, codes, kBlockSize, packed + r * row_bytes + packed_bytes(t, c0));
}

__global__ void dequantize_kernel(const uint8_t* packed, const uint8_t* scales, ElemType t,
                                  int64_t rows, int64_t k, DType dtype, void* out) {
  const int64_t blocks_per_row = k / kBlockSize;
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= rows * blocks_per_row) return;
  const int64_t r = b / blocks_per_row, c0 = (b % blocks_per_row) * kBlockSize;
  uint8_t codes[kBlockSize];
  pack::unpack_codes(t, packed + r * packed_bytes(t, k) + packed_bytes(t, c0), kBlockSize, codes);
  const uint8_t s = scales[b];
  for (int i = 0; i < kBlockSize; ++i) {
    const float v = num::dequantize_elem(t, codes[i], s);
    const int64_t j = r * k + c0 + i;
    if (dtype == DType::kF32) static_cast<float*>(out)[j] = v;
    else if (dtype == DType::kBF16) static_cast<uint16_t*>(out)[j] = num::f32_to_bf16(v);
    else static_cast<uint16_t*>(out)[j] = num::f32_to_f16(v);
  }
}

Status launched(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::Ok();
  return Status(StatusCode::kInternal, std::string(what) + ": CUDA launch failed: " +
                                           cudaGetErrorString(e));
}

constexpr int kThreads = 128;

}  // namespace

Status cuda_quantize(const void* x, DType dtype, int64_t rows, int64_t k, int64_t kq,
                     const QuantOptions& o, uint8_t* packed, uint8_t* scales, void* stream) {
  const int64_t n = rows * (kq / kBlockSize);
  if (n == 0) return Status::Ok();
  const num::BlockRules rules{o.scale_rule, o.rounding, o.saturation, o.saturate_scale};
  quantize_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0,
                    static_cast<cudaStream_t>(stream)>>>(x, dtype, rows, k, kq, o.elem, rules,
                                                         packed, scales);
  return launched("quantize");
}

Status cuda_dequantize(const uint8_t* packed, const uint8_t* scales, ElemType elem, int64_t rows,
                       int64_t k, DType dtype, void* out, void* stream) {
  const int64_t n = rows * (k / kBlockSize);
  if (n == 0) return Status::Ok();
  dequantize_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0,
                      static_cast<cudaStream_t>(stream)>>>(packed, scales, elem, rows, k, dtype,
                                                           out);
  return launched("dequantize");
}

}  // namespace mxq::py
