// Test helpers for tests that write small checkpoints (tests/io formats, tests/select MoE
// assembly): MX data quantized by mxq::quantize, raw byte tensors, error-message assertions and
// the producers' quantization configs (AMD Quark) as they write them.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mxq/quantize.h"
#include "mxq/status.h"

namespace mxq::test {

// Random data with per-row magnitudes spread over several binades, quantized with `rule`.
inline MXMatrix make_mx(ElemType elem, int64_t rows, int64_t k, uint32_t seed,
                        ScaleRule rule = ScaleRule::kFloor) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(size_t(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    const float mag = std::ldexp(1.0f, int(r % 9) - 4);
    for (int64_t c = 0; c < k; ++c) x[size_t(r * k + c)] = nd(g) * mag;
  }
  QuantOptions o;
  o.elem = elem;
  o.scale_rule = rule;
  return quantize(x, rows, k, o).value();
}

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> b(n);
  for (auto& v : b) v = uint8_t(g() >> 24);
  return b;
}

inline std::vector<uint8_t> f32_scalar(float v) {
  std::vector<uint8_t> b(4);
  std::memcpy(b.data(), &v, 4);
  return b;
}

// `s` is an error of `code` whose message contains every one of `parts`.
inline ::testing::AssertionResult has_all(const Status& s, StatusCode code,
                                          std::initializer_list<std::string> parts) {
  if (s.ok()) return ::testing::AssertionFailure() << "expected an error, got OK";
  if (s.code() != code)
    return ::testing::AssertionFailure()
           << "code " << status_code_name(s.code()) << ", expected " << status_code_name(code)
           << ": " << s.message();
  for (const std::string& p : parts)
    if (s.message().find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks \"" << p << "\": " << s.message();
  return ::testing::AssertionSuccess();
}

// ---- AMD Quark configs, key for key as Quark writes them ---------------------------------------
using json = nlohmann::json;

// An MX per-group spec of element dtype `dtype` ("fp4", "fp6_e2m3", ...).
inline json quark_spec(const std::string& dtype) {
  return {{"dtype", dtype},         {"qscheme", "per_group"},     {"group_size", 32},
          {"ch_axis", -1},          {"is_dynamic", false},         {"scale_format", "e8m0"},
          {"scale_type", "float"},  {"scale_calculation_mode", "even"},
          {"round_method", "half_even"}, {"symmetric", nullptr},
          {"observer_cls", "PerBlockMXObserver"}, {"mx_element_dtype", nullptr}};
}
// Static per-tensor FP8 activations (w_mxfp4_a_fp8).
inline json quark_fp8_static() {
  return {{"dtype", "fp8_e4m3"}, {"qscheme", "per_tensor"}, {"is_dynamic", false},
          {"ch_axis", nullptr},  {"group_size", nullptr},   {"symmetric", true},
          {"round_method", "half_even"}, {"scale_type", "float"},
          {"observer_cls", "PerTensorMinMaxObserver"}};
}
// config.json's "quantization_config" object of a Quark export.
inline json quark_quantization_config(json weight, json input, json layer, json exclude,
                                      const std::string& version) {
  return {{"quant_method", "quark"},
          {"quant_mode", "eager_mode"},
          {"version", version},
          {"export", {{"kv_cache_group", json::array()}, {"pack_method", "reorder"}}},
          {"global_quant_config",
           {{"weight", std::move(weight)},
            {"input_tensors", std::move(input)},
            {"output_tensors", nullptr},
            {"bias", nullptr},
            {"target_device", nullptr}}},
          {"layer_quant_config", std::move(layer)},
          {"layer_type_quant_config", json::object()},
          {"exclude", std::move(exclude)},
          {"algo_config", nullptr}};
}

}  // namespace mxq::test
