// The worked examples of docs/numerics.md ("Where the rules differ"), one test each, per rule.
// Expected values are the contract's, written out by hand.
#include <gtest/gtest.h>

#include "test_util.h"

namespace mxq {
namespace {

using testing::quantize_values;

void expect_block(const testing::QBlock& q, uint8_t scale, std::initializer_list<float> want,
                  const char* rule) {
  EXPECT_EQ(q.scale, scale) << rule;
  int i = 0;
  for (float w : want) {
    EXPECT_EQ(q.value(i), w) << rule << " lane " << i;
    ++i;
  }
}

TEST(WorkedExamples, Fp4Amax7) {
  const auto vals = {7.0f, 3.5f, 0.25f, 0.3f};
  expect_block(quantize_values(ElemType::kE2M1, vals, ScaleRule::kFloor), 127, {6, 4, 0, 0.5f},
               "floor");
  for (ScaleRule r : {ScaleRule::kRceil, ScaleRule::kEven, ScaleRule::kRoundUp,
                      ScaleRule::kEvenFp4Mantissa})
    expect_block(quantize_values(ElemType::kE2M1, vals, r), 128, {8, 4, 0, 0}, scale_rule_name(r));
}

TEST(WorkedExamples, Fp4Amax6p5) {
  const auto vals = {6.5f, 0.3f, -0.75f};
  expect_block(quantize_values(ElemType::kE2M1, vals, ScaleRule::kFloor), 127, {6, 0.5f, -1},
               "floor");
  expect_block(quantize_values(ElemType::kE2M1, vals, ScaleRule::kRceil), 128, {6, 0, -1},
               "rceil");
  // 6.5 = 1.625 * 2^2 rounds to 1.5 * 2^2 at one mantissa bit: no carry, so `even` is floor.
  expect_block(quantize_values(ElemType::kE2M1, vals, ScaleRule::kEven), 127, {6, 0.5f, -1},
               "even");
}

TEST(WorkedExamples, Fp4AmaxJustBelow16UsesExponentBits) {
  const float x = num::f32_from_bits(0x417FFFFFu);  // 15.999999
  const auto q = quantize_values(ElemType::kE2M1, {x, 1.0f}, ScaleRule::kFloor);
  // Exact floor: E = 3 -> code 128 -> [12, 1]. float log2(x) rounds to 4.0 -> 129 (wrong).
  expect_block(q, 128, {12, 1}, "floor");
}

TEST(WorkedExamples, E4M3Amax480) {
  const auto vals = {480.0f, 1.0f, 0x1p-10f};
  expect_block(quantize_values(ElemType::kE4M3, vals, ScaleRule::kFloor), 127, {448, 1, 0},
               "floor");
  expect_block(quantize_values(ElemType::kE4M3, vals, ScaleRule::kRceil), 128, {480, 1, 0},
               "rceil");
}

TEST(WorkedExamples, E4M3AmaxExactly448) {
  for (ScaleRule r : {ScaleRule::kFloor, ScaleRule::kRceil, ScaleRule::kEven})
    EXPECT_EQ(quantize_values(ElemType::kE4M3, {448.0f}, r).scale, 127) << scale_rule_name(r);
  // 448 = 1.75 * 2^8 rounds to 2^9 at one mantissa bit (a tie, to even).
  EXPECT_EQ(quantize_values(ElemType::kE4M3, {448.0f}, ScaleRule::kEvenFp4Mantissa).scale, 128);
}

TEST(WorkedExamples, E4M3Element400RneVsHalfAway) {
  EXPECT_EQ(num::decode_elem(ElemType::kE4M3, testing::encode_at(ElemType::kE4M3, 400, 127)),
            384.0f);
  EXPECT_EQ(num::decode_elem(ElemType::kE4M3,
                             testing::encode_at(ElemType::kE4M3, 400, 127, Rounding::kHalfAway)),
            416.0f);
  EXPECT_EQ(num::decode_elem(ElemType::kE4M3, testing::encode_at(ElemType::kE4M3, 400, 127,
                                                                  Rounding::kTowardZeroTies)),
            384.0f);
}

}  // namespace
}  // namespace mxq
