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
// `rule`: the block scale rule (Problem::act_rule). Rules other than floor may pick the next
// scale up, which stays exact in BF16 (a result past its range is Inf in FP32 as well) but not
// in F16's top binade: F16 with another rule is refused.
Status mx_fake_quant(ElemType elem, const void* x, DType dtype, int64_t rows, int64_t k, void* out,
                     cudaStream_t stream, ScaleRule rule = ScaleRule::kFloor);

// The FP8 activation keys with the scale kept apart (act_quant.h allows it: the reference's
// decode(code) * s differs from keeping (code, s) by at most half an FP32 ulp per element):
//   s = input_scale (per_row false: fp8-static-tensor), or per row s_r = amax_r / 448 (FP32
//       division; 1 for an all-zero row) (per_row true: fp8-dynamic-token);
//   code = E4M3(x / s) (one FP32 division, num::encode_elem with c = 0, RNE, saturating at 448;
//       +-Inf quotients saturate, NaN stays NaN), the CPU reference's own code;
//   out = decode(code) in the 16-bit type (exact: E4M3 values are BF16 and F16 values).
// per_row: row_scale [rows] (device) gets s_r; a row holding a NaN or Inf becomes all NaN (with
// s_r = 1), as in the reference. One CTA per row. x, out: [rows, k] contiguous, BF16 or F16.
Status fp8_act_quant(const void* x, DType dtype, int64_t rows, int64_t k, bool per_row,
                     float input_scale, void* out, float* row_scale, cudaStream_t stream);

// fp8-dynamic-tensor: as fp8_act_quant per row, with ONE scale s = amax / 448 over all rows * k
// values of x (FP32 division; 1 for an all-zero tensor; a NaN or Inf anywhere makes every output
// NaN with s = 1), the reference's definition. Two launches, no host synchronisation, no
// allocation (graph-capturable): a grid of fp8_tensor_parts(rows, k) CTAs writes partial maxima
// of |x| (as FP32 bit patterns: an integer max, so deterministic whatever the split) to `parts`
// (device, that many uint32), then one CTA per row reduces them to s and quantizes its row.
// row_scale [rows] (device) gets s in every entry, for scale_rows.
inline constexpr int kFp8TensorMaxParts = 1024;
int fp8_tensor_parts(int64_t rows, int64_t k);  // in [1, kFp8TensorMaxParts]
Status fp8_tensor_act_quant(const void* x, DType dtype, int64_t rows, int64_t k, uint32_t* parts,
                            void* out, float* row_scale, cudaStream_t stream);

// fp8-dynamic-group128: as fp8_act_quant per row, with one scale per row and group of 128
// consecutive columns (the last group of a row is k % 128 columns when that is not 0):
// s = amax_group / 448 (FP32 division; 1 for an all-zero group) to group_scale[row * G + g]
// (G = fp8_act_groups(k), device, rows * G floats); out gets decode(code) in the 16-bit type
// (exact); a group holding a NaN or Inf becomes all NaN with s = 1, as in the reference.
// One warp per group, no synchronisation or allocation (graph-capturable); out may equal x.
int64_t fp8_act_groups(int64_t k);  // ceil(k / 128)
Status fp8_group_act_quant(const void* x, DType dtype, int64_t rows, int64_t k, void* out,
                           float* group_scale, cudaStream_t stream);

// The same quantization with the E4M3 codes themselves as the output, for the FP8 tensor
// cores (issue 17): codes [rows, ld] bytes (ld >= k; columns k..ld-1 are not written), a NaN
// quotient (or a NaN/Inf row under per_row) the NaN code 0x7F, row_scale as above. Bit for bit
// the codes fp8_act_quant decodes.
Status fp8_act_quant_codes(const void* x, DType dtype, int64_t rows, int64_t k, bool per_row,
                           float input_scale, uint8_t* codes, int64_t ld, float* row_scale,
                           cudaStream_t stream);
// fp8-dynamic-group128 likewise: fp8_group_act_quant's codes to codes [rows, ld] bytes (ld >= k),
// its scales to group_scale [rows, fp8_act_groups(k)]; a NaN / Inf group all NaN codes (0x7F).
Status fp8_group_act_quant_codes(const void* x, DType dtype, int64_t rows, int64_t k,
                                 uint8_t* codes, int64_t ld, float* group_scale,
                                 cudaStream_t stream);

// The epilogue of a GEMM over fp8_act_quant's operand: y[r, c] = out(s_r * acc[r, c] + bias[c])
// with acc [rows, n] FP32 (row stride n), s_r = row_scale[r] (or `scale` when row_scale is null),
// one FP32 multiply and one FP32 add (no contraction), then rounding to `out` (BF16 / F16 round
// to nearest even, F32 as is); bias [n] FP32 or null; y row stride ldy elements.
Status scale_rows(const float* acc, int64_t rows, int64_t n, const float* row_scale, float scale,
                  const float* bias, DType out, void* y, int64_t ldy, cudaStream_t stream);

}  // namespace mxq::cuda
