// The activation quantization of every ActKey (src/cpu/common/act_quant.h, the definition):
// hand-computed values, scales, zeros, saturation and non-finite inputs per key, split from
// reference_test.cc (same binary, mxq_cpu_reference_tests). Expected values are derived here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "cpu/common/act_quant.h"
#include "cpu/common/routing.h"
#include "cpu/backends.h"
#include "cpu/reference/reference_backend.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"
#include "ref_test_util.h"

namespace mxq {
namespace {

using cpu::TopK;
using reftest::e4m3_nearest;
using reftest::to_bf16;

std::vector<float> quantize_f32(ActKey key, const std::vector<float>& x, int64_t rows,
                                float input_scale = 1.0f) {
  std::vector<float> out;
  const DenseView v{x.data(), DType::kF32, rows, int64_t(x.size()) / rows};
  EXPECT_TRUE(cpu::act_quantize(key, v, input_scale, out).ok());
  return out;
}

// ---- activation quantization ------------------------------------------------------------------

TEST(ActQuant, Bf16AndFp16PassThroughExactly) {
  const std::vector<float> x = {1.0f, -2.5f, 0.1f, 3e-5f};
  const std::vector<uint16_t> xb = to_bf16(x);
  std::vector<float> out;
  ASSERT_TRUE(cpu::act_quantize(ActKey::kBF16, {xb.data(), DType::kBF16, 1, 4}, 1.0f, out).ok());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(out[i], num::bf16_to_f32(xb[i]));
  std::vector<uint16_t> xh;
  for (float f : x) xh.push_back(num::f32_to_f16(f));
  ASSERT_TRUE(cpu::act_quantize(ActKey::kFP16, {xh.data(), DType::kF16, 2, 2}, 1.0f, out).ok());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(out[i], num::f16_to_f32(xh[i]));
  EXPECT_NE(out[2], 0.1f);  // FP16 really rounded 0.1 (the test would be vacuous otherwise)
}

TEST(ActQuant, Fp8StaticHandValues) {
  // E4M3 around 400 has step 32: 384 (mantissa 100b) and 416 (101b); 400 is a tie -> 384.
  // 500 saturates to 448; Inf saturates; 17 -> 16 or 18 (step 2), a tie -> 16.
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> out = quantize_f32(ActKey::kFP8StaticTensor, {400, 500, -inf, 17, 0}, 1);
  EXPECT_EQ(out, (std::vector<float>{384, 448, -448, 16, 0}));
  // input_scale 2: 400 / 2 = 200, a tie between 192 and 208 -> 192 -> 384; 1000 -> 448 -> 896;
  // -2.3 / 2 = -1.15 -> -1.125 (step 1/8) -> -2.25.
  out = quantize_f32(ActKey::kFP8StaticTensor, {400, 1000, -2.3f}, 1, 2.0f);
  EXPECT_EQ(out, (std::vector<float>{384, 896, -2.25f}));
  // NaN stays NaN.
  out = quantize_f32(ActKey::kFP8StaticTensor, {std::nanf("")}, 1);
  EXPECT_TRUE(std::isnan(out[0]));
  // A bad scale is an error.
  const std::vector<float> x = {1.0f};
  EXPECT_FALSE(cpu::act_quantize(ActKey::kFP8StaticTensor, {x.data(), DType::kF32, 1, 1}, 0.0f,
                                 out).ok());
}

TEST(ActQuant, Fp8DynamicPerRowScale) {
  // Row 0: amax 4 -> s = 4/448; row 1: all zeros -> s = 1; row 2: a large amax.
  const std::vector<float> x = {1.0f, -2.0f, 0.3f, 4.0f,  0, 0, 0, 0,  1000, 3.7f, -55, 0.01f};
  const std::vector<float> out = quantize_f32(ActKey::kFP8DynamicToken, x, 3);
  for (int r = 0; r < 3; ++r) {
    float amax = 0;
    for (int c = 0; c < 4; ++c) amax = std::max(amax, std::fabs(x[size_t(r * 4 + c)]));
    const float s = amax == 0 ? 1.0f : amax / 448.0f;
    for (int c = 0; c < 4; ++c) {
      const size_t i = size_t(r * 4 + c);
      EXPECT_EQ(out[i], e4m3_nearest(x[i] / s) * s) << r << "," << c;
    }
  }
  EXPECT_EQ(out[4], 0.0f);
  // The amax element maps to 448 * s, within an FP32 rounding of itself.
  EXPECT_NEAR(out[8], 1000.0f, 1e-3f);
  // A row holding Inf becomes NaN.
  const std::vector<float> bad = quantize_f32(ActKey::kFP8DynamicToken,
                                              {1.0f, std::numeric_limits<float>::infinity()}, 1);
  EXPECT_TRUE(std::isnan(bad[0]) && std::isnan(bad[1]));
}

// fp8-dynamic-tensor: one scale s = amax / 448 over every row and column of the tensor.
TEST(ActQuant, Fp8DynamicTensorHandValues) {
  // amax 448 (row 1) -> s = 1 for both rows. Row 0: 1 exact; -3.3 -> -3.25 (step 1/4 in
  // [2, 4)); 17 -> 16 (step 2, a tie to the even mantissa); 400 -> 384 (step 32, a tie).
  // Row 1: 448 is the amax itself -> 448; 0; 0.3 -> 0.3125 (step 1/32 in [1/4, 1/2));
  // -0.01 -> -5 * 2^-9 (subnormal step 2^-9: 0.01 / 2^-9 = 5.12).
  const std::vector<float> x = {1.0f, -3.3f, 17.0f, 400.0f, 448.0f, 0.0f, 0.3f, -0.01f};
  const std::vector<float> out = quantize_f32(ActKey::kFP8DynamicTensor, x, 2);
  EXPECT_EQ(out, (std::vector<float>{1.0f, -3.25f, 16.0f, 384.0f, 448.0f, 0.0f, 0.3125f,
                                     -5.0f * std::ldexp(1.0f, -9)}));
  // The token key scales row 0 by its own amax 400: 400 stays 400 there (448 * 400/448, within
  // an FP32 rounding), so the two keys differ exactly where the row amax is not the tensor's.
  const std::vector<float> tok = quantize_f32(ActKey::kFP8DynamicToken, x, 2);
  EXPECT_NEAR(tok[3], 400.0f, 1e-3f);
  EXPECT_NE(tok[3], out[3]);
  EXPECT_EQ(std::vector<float>(tok.begin() + 4, tok.end()),
            std::vector<float>(out.begin() + 4, out.end()));  // row 1 holds the tensor amax
}

TEST(ActQuant, Fp8DynamicTensorScaleAndZeros) {
  // amax 1000 in row 2 sets s = 1000 / 448 (FP32) for every row, the all-zero row 1 included.
  const std::vector<float> x = {1.0f, -2.0f, 0.3f, 4.0f,  0, 0, 0, 0,  1000, 3.7f, -55, 0.01f};
  const std::vector<float> out = quantize_f32(ActKey::kFP8DynamicTensor, x, 3);
  const float s = 1000.0f / 448.0f;
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(out[i], e4m3_nearest(x[i] / s) * s) << i;
  EXPECT_EQ(out[8], 448.0f * s);  // the value at amax: code 448 times s
  EXPECT_NEAR(out[8], 1000.0f, 1e-3f);
  for (int c = 4; c < 8; ++c) EXPECT_EQ(out[size_t(c)], 0.0f);
  // 0.01 / s = 0.00448 -> 2 * 2^-9 (subnormal), not the token key's finer row-0-style scale.
  EXPECT_EQ(out[11], 2.0f * std::ldexp(1.0f, -9) * s);
  // An all-zero tensor: s = 1, every value 0 (not NaN from 0 / 0).
  const std::vector<float> z = quantize_f32(ActKey::kFP8DynamicTensor, std::vector<float>(8, 0.0f), 2);
  EXPECT_EQ(z, std::vector<float>(8, 0.0f));
  const std::vector<float> nz = quantize_f32(ActKey::kFP8DynamicTensor, {-0.0f, 0.0f}, 1);
  EXPECT_EQ(nz[0], 0.0f);
  EXPECT_FALSE(std::isnan(nz[0]) || std::isnan(nz[1]));
}

TEST(ActQuant, Fp8DynamicTensorSaturatesAtTheAmax) {
  // amax / (amax / 448) can round above 448 in FP32; the code saturates to 448 (never NaN,
  // never the next binade). Find such an amax among BF16-representable values and check it.
  int found = 0;
  for (int i = 0; i < 4096 && found < 3; ++i) {
    const float a = num::bf16_to_f32(uint16_t(0x3F80 + i));  // [1, 2^32) in BF16 steps
    const float s = a / 448.0f;
    if (!(a / s > 448.0f)) continue;
    ++found;
    const std::vector<float> out = quantize_f32(ActKey::kFP8DynamicTensor, {a, -a, a / 2}, 1);
    EXPECT_EQ(out[0], 448.0f * s) << a;
    EXPECT_EQ(out[1], -448.0f * s) << a;
    EXPECT_EQ(out[2], e4m3_nearest((a / 2) / s) * s) << a;
  }
  EXPECT_GT(found, 0) << "no amax with amax / (amax / 448) > 448 found: the test is vacuous";
}

TEST(ActQuant, Fp8DynamicTensorNonFiniteMakesTheWholeTensorNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  for (const float bad : {inf, -inf, std::nanf("")}) {
    const std::vector<float> out = quantize_f32(ActKey::kFP8DynamicTensor, {1.0f, 2.0f, 3.0f, bad}, 2);
    for (float v : out) EXPECT_TRUE(std::isnan(v)) << bad;
    // The token key keeps the finite row 0.
    const std::vector<float> tok = quantize_f32(ActKey::kFP8DynamicToken, {1.0f, 2.0f, 3.0f, bad}, 2);
    EXPECT_FALSE(std::isnan(tok[0]));
  }
}

TEST(ActQuant, Fp8DynamicTensorIsNotPerRow) {
  // act_quantize_row refuses the key (a row alone does not know the tensor's amax) ...
  std::vector<float> r = {1.0f, 2.0f};
  const Status s = cpu::act_quantize_row(ActKey::kFP8DynamicTensor, r.data(), 2, 1.0f, r.data());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("fp8-dynamic-tensor"), std::string::npos) << s.message();
  // ... act_quantize_rows takes a strided tensor, leaves the columns past k alone, and gives
  // act_quantize's values (BF16 input, random magnitudes per row).
  const int64_t rows = 5, k = 40, ld = 48;
  std::vector<float> xv = reftest::random_floats(size_t(rows * k), 77, 3.0f);
  for (int64_t c = 0; c < k; ++c) xv[size_t(3 * k + c)] *= 50.0f;  // row 3 holds the amax
  const std::vector<uint16_t> xb = to_bf16(xv);
  std::vector<float> want;
  ASSERT_TRUE(cpu::act_quantize(ActKey::kFP8DynamicTensor, {xb.data(), DType::kBF16, rows, k}, 1.0f, want).ok());
  std::vector<float> strided(size_t(rows * ld), -7.0f);
  float amax = 0.0f;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < k; ++c) {
      const float v = num::bf16_to_f32(xb[size_t(i * k + c)]);
      strided[size_t(i * ld + c)] = v;
      amax = std::max(amax, std::fabs(v));
    }
  ASSERT_TRUE(cpu::act_quantize_rows(ActKey::kFP8DynamicTensor, strided.data(), rows, k, ld, 1.0f).ok());
  const float sc = amax / 448.0f;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < k; ++c) {
      const float v = num::bf16_to_f32(xb[size_t(i * k + c)]);
      EXPECT_EQ(strided[size_t(i * ld + c)], want[size_t(i * k + c)]) << i << "," << c;
      EXPECT_EQ(want[size_t(i * k + c)], e4m3_nearest(v / sc) * sc) << i << "," << c;
    }
    for (int64_t c = k; c < ld; ++c) EXPECT_EQ(strided[size_t(i * ld + c)], -7.0f);
  }
  // The rows without the amax are quantized more coarsely than per token would.
  std::vector<float> tok;
  ASSERT_TRUE(cpu::act_quantize(ActKey::kFP8DynamicToken, {xb.data(), DType::kBF16, rows, k}, 1.0f, tok).ok());
  EXPECT_NE(std::vector<float>(tok.begin(), tok.begin() + k), std::vector<float>(want.begin(), want.begin() + k));
}

// fp8-dynamic-group128: one scale amax / 448 per row and group of 128 columns, the last group
// of a row shorter when K % 128 != 0.
TEST(ActQuant, Fp8DynamicGroup128ScalesEachGroupByItsOwnAmax) {
  // One row of 300 = 128 + 128 + 44 columns: group 0 has amax 4 (column 7), group 1 amax 1000
  // (column 200), group 2 (the short one) amax 0.5 (column 299).
  const int64_t k = 300;
  std::vector<float> x(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) x[size_t(c)] = 0.25f * float((c * 37) % 11) / 11.0f - 0.1f;
  x[7] = 4.0f;
  x[200] = -1000.0f;
  x[299] = 0.5f;
  const std::vector<float> out = quantize_f32(ActKey::kFP8DynamicGroup128, x, 1);
  const float s[3] = {4.0f / 448.0f, 1000.0f / 448.0f, 0.5f / 448.0f};
  for (int64_t c = 0; c < k; ++c) {
    const float sc = s[c / 128];
    EXPECT_EQ(out[size_t(c)], e4m3_nearest(x[size_t(c)] / sc) * sc) << c;
  }
  EXPECT_EQ(out[200], -448.0f * s[1]);  // each group's amax maps to +-448 times its own scale
  EXPECT_EQ(out[299], 448.0f * s[2]);
  // The token key scales the whole row by 1000 / 448: groups 0 and 2 come out coarser.
  const std::vector<float> tok = quantize_f32(ActKey::kFP8DynamicToken, x, 1);
  EXPECT_NE(std::vector<float>(tok.begin(), tok.begin() + 128),
            std::vector<float>(out.begin(), out.begin() + 128));
  EXPECT_NE(tok[299], out[299]);
  EXPECT_EQ(std::vector<float>(tok.begin() + 128, tok.begin() + 256),  // group 1 holds the amax
            std::vector<float>(out.begin() + 128, out.begin() + 256));
  // K < 128: one short group, the token key's values.
  const std::vector<float> short_row = {1.0f, -3.3f, 17.0f, 0.01f};
  EXPECT_EQ(quantize_f32(ActKey::kFP8DynamicGroup128, short_row, 1),
            quantize_f32(ActKey::kFP8DynamicToken, short_row, 1));
}

TEST(ActQuant, Fp8DynamicGroup128ZerosAndNonFiniteStayInTheirGroup) {
  const float inf = std::numeric_limits<float>::infinity();
  // Two rows of 256: row 0 group 0 all zeros, group 1 holds a NaN; row 1 group 0 holds -Inf.
  const int64_t k = 256;
  std::vector<float> x(size_t(2 * k), 1.5f);
  for (int64_t c = 0; c < 128; ++c) x[size_t(c)] = (c & 1) ? -0.0f : 0.0f;
  x[size_t(130)] = std::nanf("");
  x[size_t(k + 5)] = -inf;
  const std::vector<float> out = quantize_f32(ActKey::kFP8DynamicGroup128, x, 2);
  for (int64_t c = 0; c < 128; ++c) EXPECT_EQ(out[size_t(c)], 0.0f) << c;  // s = 1, no 0 / 0
  for (int64_t c = 128; c < 256; ++c) EXPECT_TRUE(std::isnan(out[size_t(c)])) << c;
  for (int64_t c = 0; c < 128; ++c) EXPECT_TRUE(std::isnan(out[size_t(k + c)])) << c;
  // Row 1's group 1: 1.5 everywhere -> s = 1.5 / 448, every value 448 * s.
  for (int64_t c = 128; c < 256; ++c) EXPECT_EQ(out[size_t(k + c)], 448.0f * (1.5f / 448.0f)) << c;
  // The same rows row by row (act_quantize_row) give the same values: the key is per row.
  std::vector<float> r(x.begin() + k, x.end());
  ASSERT_TRUE(cpu::act_quantize_row(ActKey::kFP8DynamicGroup128, r.data(), k, 1.0f, r.data()).ok());
  for (int64_t c = 128; c < 256; ++c) EXPECT_EQ(r[size_t(c)], out[size_t(k + c)]) << c;
}

TEST(ActQuant, Mxfp4KnownBlocks) {
  // Block 0: amax 6 -> floor scale 2^(2-2) = 1; E2M1 grid 0 .5 1 1.5 2 3 4 6, ties to even:
  // .25 -> 0, .75 -> 1, 1.25 -> 1, 2.5 -> 2, 3.5 -> 4, 5 -> 4, 6 -> 6, -6 -> -6.
  // Block 1: the same values times 2^-3 (amax .75 -> scale 2^-3): the same codes, scaled.
  std::vector<float> x(64, 0.0f), want(64, 0.0f);
  const float in[8] = {0.25f, 0.75f, 1.25f, 2.5f, 3.5f, 5.0f, 6.0f, -6.0f};
  const float q[8] = {0.0f, 1.0f, 1.0f, 2.0f, 4.0f, 4.0f, 6.0f, -6.0f};
  for (int i = 0; i < 8; ++i) {
    x[size_t(i)] = in[i];
    want[size_t(i)] = q[i];
    x[size_t(32 + i)] = in[i] / 8;
    want[size_t(32 + i)] = q[i] / 8;
  }
  EXPECT_EQ(quantize_f32(ActKey::kMXFP4Dynamic, x, 1), want);
}

TEST(ActQuant, Mxfp8FloorRuleSaturates) {
  // amax 1000: floor(log2 1000) = 9, scale 2^(9-8) = 2; 1000 / 2 = 500 > 448 saturates -> 896.
  // 3: 3 / 2 = 1.5 is an E4M3 value -> 3; 100 / 2 = 50 -> 48 or 52 (step 4), a tie -> 48 -> 96.
  std::vector<float> x(32, 0.0f);
  x[0] = 1000;
  x[1] = 3;
  x[2] = -100;
  const std::vector<float> out = quantize_f32(ActKey::kMXFP8Dynamic, x, 1);
  EXPECT_EQ(out[0], 896.0f);
  EXPECT_EQ(out[1], 3.0f);
  EXPECT_EQ(out[2], -96.0f);
}

TEST(ActQuant, MxKeysMatchTheTensorQuantizer) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const int64_t rows = 5, k = 96;
  std::vector<float> x(size_t(rows * k));
  for (float& v : x) v = nd(rng) * std::exp2(float(uint32_t(rng()) % 9) - 4.0f);
  const std::vector<uint16_t> xb = to_bf16(x);
  for (ActKey key : {ActKey::kMXFP8Dynamic, ActKey::kMXFP4Dynamic, ActKey::kMXFP6E2M3Dynamic,
                     ActKey::kMXFP6E3M2Dynamic})
    for (ScaleRule rule : {ScaleRule::kFloor, ScaleRule::kEven, ScaleRule::kEvenFp4Mantissa,
                           ScaleRule::kRceil, ScaleRule::kRoundUp}) {
      QuantOptions o;
      ASSERT_TRUE(act_key_mx_elem(key, &o.elem));
      o.scale_rule = rule;
      std::vector<uint8_t> packed(size_t(rows * packed_bytes(o.elem, k))), scales(size_t(rows * k / 32));
      ASSERT_TRUE(quantize(xb.data(), DType::kBF16, rows, k, o, packed.data(), scales.data()).ok());
      std::vector<float> want(x.size()), got;
      ASSERT_TRUE(dequantize(packed.data(), scales.data(), o.elem, rows, k, DType::kF32,
                             want.data(), 1).ok());
      ASSERT_TRUE(cpu::act_quantize(key, {xb.data(), DType::kBF16, rows, k}, 1.0f, got, rule).ok());
      EXPECT_EQ(got, want) << act_key_name(key) << " " << scale_rule_name(rule);
    }
}

// The rule matters: amax 7 under mxfp4 is 1.75 * 2^2, which the even rule rounds to 2 * 2^2
// (scale 2^1) where floor keeps 2^0: 7 -> 6 (saturated) under floor, 8 under even.
TEST(ActQuant, ScaleRuleOfTheKeyIsApplied) {
  std::vector<float> x(32, 0.0f), f, e;
  x[0] = 7.0f;
  x[1] = 1.0f;
  ASSERT_TRUE(cpu::act_quantize(ActKey::kMXFP4Dynamic, {x.data(), DType::kF32, 1, 32}, 1.0f, f).ok());
  ASSERT_TRUE(cpu::act_quantize(ActKey::kMXFP4Dynamic, {x.data(), DType::kF32, 1, 32}, 1.0f, e,
                                ScaleRule::kEven).ok());
  EXPECT_EQ(f[0], 6.0f);
  EXPECT_EQ(e[0], 8.0f);
  EXPECT_EQ(f[1], 1.0f);
  EXPECT_EQ(e[1], 1.0f);
}

TEST(ActQuant, Mxfp6KeysWorkedExamples) {
  // E2M3 (max 7.5; steps 0.125 below 2, 0.25 in [2, 4), 0.5 in [4, 8)): amax 7 -> E 2,
  // emax 2, scale 2^0; 3.3 -> 3.25, -5.3 -> -5.5, 0.06 -> 0 (below half of 0.125).
  // E3M2 (max 28; step 2^(e-2) in binade e, normals from 0.25): amax 20 -> E 4, emax 4,
  // scale 2^0; 20 stays, 13 is the tie of 12 and 14 -> the even code, 12; 0.3 -> 0.3125.
  std::vector<float> x(32, 0.0f);
  x[0] = 7.0f;
  x[1] = 3.3f;
  x[2] = -5.3f;
  x[3] = 0.06f;
  std::vector<float> out = quantize_f32(ActKey::kMXFP6E2M3Dynamic, x, 1);
  EXPECT_EQ(out[0], 7.0f);
  EXPECT_EQ(out[1], 3.25f);
  EXPECT_EQ(out[2], -5.5f);
  EXPECT_EQ(out[3], 0.0f);
  std::vector<float> y(32, 0.0f);
  y[0] = 20.0f;
  y[1] = 13.0f;
  y[2] = 0.3f;
  out = quantize_f32(ActKey::kMXFP6E3M2Dynamic, y, 1);
  EXPECT_EQ(out[0], 20.0f);
  EXPECT_EQ(out[1], 12.0f);
  EXPECT_EQ(out[2], 0.3125f);
}

// The GPU backends run MX activation keys by quantizing the 16-bit activations and writing the
// dequantized values back in the same 16-bit type (docs/numerics.md, "MX activation keys"):
// exact only because every dequantized value of a BF16 (F16) row is itself a BF16 (F16) value.
// Checked here over rows that reach both ends of each type's range (subnormals, the largest
// binade, saturation) for every MX key.
TEST(ActQuant, MxKeysAreExactIn16BitTypes) {
  std::mt19937 rng(11);
  struct TypeRule {
    DType dt;
    ScaleRule rule;
  };
  // BF16 under every rule; F16 under floor (another rule can leave F16's range: below).
  for (auto [dt, rule] : {TypeRule{DType::kBF16, ScaleRule::kFloor}, TypeRule{DType::kBF16, ScaleRule::kEven},
                          TypeRule{DType::kBF16, ScaleRule::kEvenFp4Mantissa},
                          TypeRule{DType::kBF16, ScaleRule::kRceil}, TypeRule{DType::kBF16, ScaleRule::kRoundUp},
                          TypeRule{DType::kF16, ScaleRule::kFloor}}) {
    const int lo = dt == DType::kBF16 ? -133 : -24, hi = dt == DType::kBF16 ? 127 : 15;
    for (ActKey key : kAllActKeys) {
      if (!act_key_mx_elem(key)) continue;
      int64_t checked = 0;
      for (int e = lo; e <= hi; ++e) {
        std::vector<uint16_t> raw(64);
        for (size_t i = 0; i < raw.size(); ++i) {
          // Magnitudes in [2^(e-12), 2^(e+1)): the block's amax sits in binade e or e-1.
          const float mag = std::ldexp(1.0f + float(rng() % 128) / 128.0f, e - int(rng() % 13));
          const float v = (rng() & 1) ? -mag : mag;
          raw[i] = dt == DType::kBF16 ? num::f32_to_bf16(v) : num::f32_to_f16(v);
        }
        std::vector<float> out;
        ASSERT_TRUE(cpu::act_quantize(key, {raw.data(), dt, 1, 64}, 1.0f, out, rule).ok());
        for (size_t i = 0; i < out.size(); ++i) {
          // Floor never leaves FP32's range; the others may reach 2^128 (Inf in FP32 too).
          if (rule == ScaleRule::kFloor) {
            ASSERT_TRUE(std::isfinite(out[i])) << act_key_name(key) << " 2^" << e;
          }
          ASSERT_FALSE(std::isnan(out[i])) << act_key_name(key) << " 2^" << e;
          ASSERT_EQ(cpu::round_to_dtype(out[i], dt), out[i])
              << act_key_name(key) << " " << dtype_name(dt) << ": " << out[i]
              << " is not a " << dtype_name(dt) << " value (block binade 2^" << e << ", rule "
              << scale_rule_name(rule) << ")";
          ++checked;
        }
      }
      EXPECT_GT(checked, 0);
    }
  }
}

// Why F16 is exact under floor only: F16's largest value under the even rule becomes 2^16,
// finite in FP32 but not an F16 value (the GPU fake-quant refuses F16 with another rule).
TEST(ActQuant, F16TopBinadeLeavesF16UnderTheEvenRule) {
  std::vector<uint16_t> x(32, 0);
  x[0] = num::f32_to_f16(65504.0f);
  std::vector<float> f, e;
  ASSERT_TRUE(cpu::act_quantize(ActKey::kMXFP4Dynamic, {x.data(), DType::kF16, 1, 32}, 1.0f, f).ok());
  ASSERT_TRUE(cpu::act_quantize(ActKey::kMXFP4Dynamic, {x.data(), DType::kF16, 1, 32}, 1.0f, e,
                                ScaleRule::kEven).ok());
  EXPECT_EQ(f[0], 49152.0f);  // floor: 6 * 2^13, an F16 value
  EXPECT_EQ(cpu::round_to_dtype(f[0], DType::kF16), f[0]);
  EXPECT_EQ(e[0], 65536.0f);  // even: 4 * 2^14
  EXPECT_NE(cpu::round_to_dtype(e[0], DType::kF16), e[0]);
}

TEST(ActQuant, MxKeysNeedWholeBlocks) {
  const std::vector<float> x(48, 1.0f);
  std::vector<float> out;
  const Status s = cpu::act_quantize(ActKey::kMXFP4Dynamic, {x.data(), DType::kF32, 1, 48}, 1.0f,
                                     out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("48"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace mxq
