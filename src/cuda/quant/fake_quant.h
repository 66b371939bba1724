// MX activation fake-quant on the GPU: a 16-bit activation tensor quantized per 32-block along
// K exactly as the CPU reference quantizes an MX activation key (src/cpu/common/act_quant.h:
// mxq::quantize with default QuantOptions, i.e. floor scale rule, round to nearest even,
// saturation) and dequantized back into the same 16-bit type.
//
// Exactness: for BF16 (F16) input every dequantized value is itself a BF16 (F16) value
// (docs/numerics.md, "MX activation keys on the GPU"), so out holds exactly the FP32 values
// the reference multiplies with, and a 16-bit GEMM over out computes the reference's layer.
// A block holding a NaN or Inf gets the NaN scale: all 32 outputs are the quiet NaN
// (BF16 0x7FC0, F16 0x7E00, the 16-bit roundings of the host's 0x7FC00000).
//
// Deterministic (no atomics, no reductions across threads beyond a block's two lanes), no
// allocation, no synchronisation: graph-capturable. C++17-clean (no mxq/problem.h here).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::cuda {

// x [rows, k] row-major contiguous (BF16 or F16, device memory) -> out [rows, k] in the same
// dtype; out may equal x (in place). k must be a multiple of 32; `elem` is E2M1, E2M3, E3M2 or
// E4M3 (the element types of the MX activation keys). 16-byte aligned x and out take the
// vectorised path; any other alignment runs the same kernel with scalar accesses.
Status mx_fake_quant(ElemType elem, const void* x, DType dtype, int64_t rows, int64_t k, void* out,
                     cudaStream_t stream);

}  // namespace mxq::cuda
