// Activation quantization per ActKey; the semantics are spelled out in act_quant.h.
#include "cpu/common/act_quant.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace mxq::cpu {

namespace {

constexpr float kE4M3Max = 448.0f;

// E4M3 round trip of x / s, times s (the three FP8 keys).
float fp8_round_trip(float x, float s) {
  const float q = x / s;
  if (std::isnan(q)) return q;
  uint8_t code = 0;
  if (std::isinf(q)) {  // saturation: +-Inf (or a finite x over a tiny s) becomes +-448
    code = uint8_t(elem_info(ElemType::kE4M3).max_mag | (q < 0 ? 0x80u : 0u));
  } else {
    code = num::encode_elem(ElemType::kE4M3, num::f32_bits(q), 0, Rounding::kRne,
                            Saturation::kSaturate);
  }
  return num::decode_elem(ElemType::kE4M3, code) * s;
}

// The dynamic FP8 keys over x [rows, k] (row stride ld; out may alias x): fp8-dynamic-token
// calls it per row, fp8-dynamic-group128 per row and 128-group, fp8-dynamic-tensor once over
// the whole tensor. s = amax / 448 (one FP32
// division; 1 for all zeros); a NaN or Inf anywhere makes every value NaN.
void fp8_dynamic(const float* x, int64_t rows, int64_t k, int64_t ld, float* out) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i) {
      const float v = x[r * ld + i];
      finite = finite && std::isfinite(v);
      amax = std::fmax(amax, std::fabs(v));
    }
  const float s = amax == 0.0f ? 1.0f : amax / kE4M3Max;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i)
      out[r * ld + i] = finite ? fp8_round_trip(x[r * ld + i], s) : std::nanf("");
}

}  // namespace

void load_row(const DenseView& v, int64_t r, float* out) {
  for (int64_t c = 0; c < v.cols; ++c) out[c] = load_f32(v.data, v.dtype, r * v.cols + c);
}

Status act_quantize_row(ActKey key, const float* x, int64_t k, float input_scale, float* out,
                        ScaleRule rule) {
  switch (key) {
    case ActKey::kBF16:
    case ActKey::kFP16:
      for (int64_t i = 0; i < k; ++i) out[i] = x[i];
      return Status::Ok();

    case ActKey::kFP8StaticTensor:
      if (!(input_scale > 0.0f) || !std::isfinite(input_scale))
        return invalid_argument("fp8-static-tensor: input_scale must be positive and finite, got " +
                                std::to_string(input_scale));
      for (int64_t i = 0; i < k; ++i) out[i] = fp8_round_trip(x[i], input_scale);
      return Status::Ok();

    case ActKey::kFP8DynamicToken:
      fp8_dynamic(x, 1, k, k, out);
      return Status::Ok();

    case ActKey::kFP8DynamicGroup128:
      for (int64_t g = 0; g < k; g += kFp8ActGroup)
        fp8_dynamic(x + g, 1, std::min(kFp8ActGroup, k - g), k, out + g);
      return Status::Ok();

    case ActKey::kFP8DynamicTensor:
      return invalid_argument("fp8-dynamic-tensor: one scale spans the whole tensor; quantize "
                              "it with act_quantize_rows / act_quantize, not row by row");

    case ActKey::kMXFP8Dynamic:
    case ActKey::kMXFP4Dynamic:
    case ActKey::kMXFP6E2M3Dynamic:
    case ActKey::kMXFP6E3M2Dynamic: {
      if (k % kBlockSize != 0)
        return invalid_argument(std::string(act_key_name(key)) + ": the row length K = " +
                                std::to_string(k) + " is not a multiple of 32");
      ElemType t = ElemType::kE2M1;
      act_key_mx_elem(key, &t);
      num::BlockRules rules{};  // floor, RNE, saturate: mxq::quantize's defaults
      rules.scale_rule = rule;  // ... with the problem's scale rule
      uint32_t bits[kBlockSize];
      uint8_t codes[kBlockSize];
      for (int64_t b = 0; b < k; b += kBlockSize) {
        for (int i = 0; i < kBlockSize; ++i) bits[i] = num::f32_bits(x[b + i]);
        const uint8_t scale = num::quantize_block(t, rules, bits, kBlockSize, codes);
        for (int i = 0; i < kBlockSize; ++i) out[b + i] = num::dequantize_elem(t, codes[i], scale);
      }
      return Status::Ok();
    }
  }
  return invalid_argument("unknown activation key");
}

Status act_quantize_rows(ActKey key, float* x, int64_t rows, int64_t k, int64_t ld,
                         float input_scale, ScaleRule rule) {
  if (rows < 0 || k < 0 || ld < k || (x == nullptr && rows * k > 0))
    return invalid_argument("act_quantize_rows: bad tensor [" + std::to_string(rows) + ", " +
                            std::to_string(k) + "], ld " + std::to_string(ld));
  if (act_key_is_per_tensor_dynamic(key)) {
    fp8_dynamic(x, rows, k, ld, x);
    return Status::Ok();
  }
  for (int64_t r = 0; r < rows; ++r)
    MXQ_RETURN_IF_ERROR(act_quantize_row(key, x + r * ld, k, input_scale, x + r * ld, rule));
  return Status::Ok();
}

Status act_quantize(ActKey key, const DenseView& x, float input_scale, std::vector<float>& out,
                    ScaleRule rule) {
  if (x.rows < 0 || x.cols < 0 || (x.data == nullptr && x.rows * x.cols > 0))
    return invalid_argument("act_quantize: bad input view");
  out.resize(size_t(x.rows * x.cols));
  for (int64_t r = 0; r < x.rows; ++r) load_row(x, r, out.data() + r * x.cols);
  return act_quantize_rows(key, out.data(), x.rows, x.cols, x.cols, input_scale, rule);
}

}  // namespace mxq::cpu
