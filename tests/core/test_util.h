// Helpers shared by the core tests: build blocks from floats, quantize them through the
// scalar block path, and read results back as values.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <random>
#include <vector>

#include "mxq/numerics.h"

namespace mxq::testing {

struct QBlock {
  uint8_t scale = 0;
  uint8_t codes[kBlockSize] = {};
  ElemType elem = ElemType::kE2M1;
  float value(int i) const { return num::dequantize_elem(elem, codes[i], scale); }
};

// 32-bit random numbers without -Wconversion noise (mt19937 returns uint_fast32_t).
struct Rng {
  explicit Rng(uint32_t seed) : g(seed) {}
  uint32_t operator()() { return uint32_t(g()); }
  std::mt19937 g;
};

// Quantizes a block whose first lanes are `vals` (FP32) and whose remaining lanes are +0.
inline QBlock quantize_values(ElemType t, std::initializer_list<float> vals,
                              ScaleRule rule = ScaleRule::kFloor, Rounding rnd = Rounding::kRne,
                              Saturation sat = Saturation::kSaturate) {
  uint32_t x[kBlockSize] = {};
  int i = 0;
  for (float v : vals) x[i++] = num::f32_bits(v);
  QBlock q;
  q.elem = t;
  num::BlockRules rules;
  rules.scale_rule = rule;
  rules.rounding = rnd;
  rules.saturation = sat;
  q.scale = num::quantize_block(t, rules, x, kBlockSize, q.codes);
  return q;
}

// The element code of x at block scale code s (unpacked, one per byte).
inline uint8_t encode_at(ElemType t, float x, int scale_code, Rounding rnd = Rounding::kRne,
                         Saturation sat = Saturation::kSaturate) {
  return num::encode_elem(t, num::f32_bits(x), scale_code - 127, rnd, sat);
}

}  // namespace mxq::testing
