// Activation quantization and dense-dtype helpers shared by every CPU backend.
//
// This file is the definition of how an activation row enters a matmul under each ActKey
// (problem.h). Inputs arrive in act_input_dtype(key) (BF16, or FP16 for kFP16) and are widened
// exactly to FP32; the functions return the FP32 values the matmul then multiplies with:
//
//   bf16, fp16          unchanged.
//   fp8-static-tensor   q = float(x) / input_scale            (one FP32 division, RN)
//                       code = E4M3(q), round to nearest even, saturating at +-448
//                              (num::encode_elem with c = 0)
//                       value = decode(code) * input_scale     (one FP32 product, RN)
//   fp8-dynamic-token   as fp8-static-tensor with a per-row s = amax_row / 448 (FP32 division;
//                       s = 1 when the row is all zeros).
//   fp8-dynamic-tensor  as fp8-dynamic-token with ONE s = amax / 448 over every row and column
//                       of the call's tensor (x [M, K] of a linear layer; in an MoE layer x
//                       [M, H] for the gate/up GEMMs and the whole intermediate [pairs, I] of
//                       the call, all local (token, expert) pairs together, for the down
//                       GEMMs); s = 1 when the tensor is all zeros. Only the amax domain
//                       differs from the token key (the same function computes both).
//   fp8-dynamic-group128 as fp8-dynamic-token with one s per row and group of 128 consecutive
//                       columns (columns [128 g, 128 g + 128); the last group of a row is
//                       shorter when K % 128 != 0): s = amax_group / 448, 1 for an all-zero
//                       group. compressed-tensors' MXFP4XFP8 preset, vLLM's / DeepSeek's
//                       per-token-group FP8 (docs/numerics.md, "FP8 activation keys").
//   mxfp8-dynamic       the row is quantized as MXFP8 E4M3 / MXFP4 E2M1 / MXFP6 E2M3 / MXFP6
//   mxfp4-dynamic       E3M2 per 32-block with the floor scale rule, RNE, saturation (exactly
//   mxfp6-e2m3-dynamic  mxq::quantize with default QuantOptions), then dequantized (exact in
//   mxfp6-e3m2-dynamic  FP32). K % 32 == 0 required. For BF16 (F16) input the dequantized
//                       values are exactly representable in BF16 (F16) as well: elements have
//                       <= 4 significant bits, the scale is a power of two, grid points finer
//                       than the input's ulp leave x unchanged, and the floor rule keeps every
//                       result below 1.875 * 2^E(amax) (docs/numerics.md, "MX activation keys").
//                       Problem::act_rule replaces the floor rule where the checkpoint names
//                       another (Quark: "even"); those rules choose the floor scale or the next
//                       one, which keeps BF16 exact (a result past BF16's range is Inf in FP32
//                       too) but can leave F16's range in its top binade.
//
// Non-finite inputs: fp8-static maps NaN to NaN and +-Inf to +-448 * input_scale (saturation);
// fp8-dynamic-token makes the whole row NaN when the row holds a NaN or Inf (s would be Inf or
// NaN, the analogue of the MX formats' NaN scale), fp8-dynamic-tensor likewise the whole tensor, fp8-dynamic-group128 the group (as an MX block); the MX keys follow numerics.h (a block holding a
// NaN or Inf gets the NaN scale, so every value in that block is NaN).
//
// The final product decode(code) * s is rounded to FP32. It is exact when s is a power of two
// (always for the MX keys) and otherwise off by at most half an FP32 ulp — far below any
// comparison tolerance; backends that keep (code, s) separately match it to that precision.
#pragma once

#include <cstdint>
#include <vector>

#include "mxq/backend.h"
#include "mxq/numerics.h"
#include "mxq/problem.h"
#include "mxq/status.h"

namespace mxq::cpu {

// ---- dense dtype helpers ----------------------------------------------------------------------

// Element i of a contiguous buffer of `dt`, widened exactly to FP32.
inline float load_f32(const void* data, DType dt, int64_t i) {
  switch (dt) {
    case DType::kF32: return static_cast<const float*>(data)[i];
    case DType::kBF16: return num::bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16: return num::f16_to_f32(static_cast<const uint16_t*>(data)[i]);
  }
  return 0.0f;
}

// Writes v to element i of a `dt` buffer: F32 stores it; BF16/F16 round it to nearest even.
inline void store_f32(void* data, DType dt, int64_t i, float v) {
  switch (dt) {
    case DType::kF32: static_cast<float*>(data)[i] = v; break;
    case DType::kBF16: static_cast<uint16_t*>(data)[i] = num::f32_to_bf16(v); break;
    case DType::kF16: static_cast<uint16_t*>(data)[i] = num::f32_to_f16(v); break;
  }
}

// v rounded to `dt` (nearest even) and widened back: the value a `dt` tensor would hold.
inline float round_to_dtype(float v, DType dt) {
  switch (dt) {
    case DType::kF32: return v;
    case DType::kBF16: return num::bf16_to_f32(num::f32_to_bf16(v));
    case DType::kF16: return num::f16_to_f32(num::f32_to_f16(v));
  }
  return v;
}

// Row r of a dense view, widened to FP32 into out[0, cols).
void load_row(const DenseView& v, int64_t r, float* out);

// ---- activation quantization --------------------------------------------------------------------

// True for the keys that quantize per 32-block along K (the row length must be a multiple of 32).
constexpr bool act_key_is_mx(ActKey a) { return act_key_mx_elem(a); }

// True for the key whose scale spans the whole tensor of the call (fp8-dynamic-tensor): its
// rows cannot be quantized one at a time (act_quantize_row refuses it; use act_quantize_rows).
constexpr bool act_key_is_per_tensor_dynamic(ActKey a) { return a == ActKey::kFP8DynamicTensor; }

// Quantizes one row of k FP32 values (already widened from the input dtype) under `key` and
// writes the dequantized values to out[0, k) (out may alias x). `input_scale` is used by
// kFP8StaticTensor only and must be positive and finite there.
// `rule`: the MX keys' block scale rule (Problem::act_rule; floor by default).
// kFP8DynamicTensor is an invalid-argument error here (its scale needs the whole tensor).
Status act_quantize_row(ActKey key, const float* x, int64_t k, float input_scale, float* out,
                        ScaleRule rule = ScaleRule::kFloor);

// In place on a whole FP32 tensor [rows, k] with row stride ld >= k (columns k..ld-1 are
// neither read nor written): every key; the per-row keys row by row (act_quantize_row), the
// per-tensor key with one scale over all rows * k values.
Status act_quantize_rows(ActKey key, float* x, int64_t rows, int64_t k, int64_t ld,
                         float input_scale, ScaleRule rule = ScaleRule::kFloor);

// The whole view: x [rows, cols] in any DType (normally act_input_dtype(key)) -> out
// [rows * cols] row-major FP32.
Status act_quantize(ActKey key, const DenseView& x, float input_scale, std::vector<float>& out,
                    ScaleRule rule = ScaleRule::kFloor);

}  // namespace mxq::cpu
