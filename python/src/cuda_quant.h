// Whole-tensor MX quantize / dequantize of device arrays for the Python package, on a caller's
// CUDA stream (no allocation, no synchronisation). Built only with the CUDA part
// (MXQ_PY_WITH_CUDA); numerics are numerics.h's, so results equal mxq::quantize's bit for bit.
#pragma once

#include <cstdint>

#include "mxq/numerics.h"
#include "mxq/quantize.h"

namespace mxq::py {

// x [rows, k] (dense, device) -> packed [rows, packed_bytes(elem, kq)], scales [rows, kq / 32];
// columns k..kq-1 (pad_k) quantize as zeros. Returns the launch error as a Status.
Status cuda_quantize(const void* x, DType dtype, int64_t rows, int64_t k, int64_t kq,
                     const QuantOptions& o, uint8_t* packed, uint8_t* scales, void* stream);

// packed/scales [rows, k] -> out [rows, k] in `dtype`, as mxq::dequantize.
Status cuda_dequantize(const uint8_t* packed, const uint8_t* scales, ElemType elem, int64_t rows,
                       int64_t k, DType dtype, void* out, void* stream);

}  // namespace mxq::py
