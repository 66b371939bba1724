// Exhaustive decode of every code of every type, against values derived independently here
// (double-precision formulas and literal tables), not against mxq's own decoder.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mxq/numerics.h"

namespace mxq {
namespace {

// Generic minifloat value in double: 1 sign bit, `eb` exponent bits, `mb` mantissa bits.
double minifloat(unsigned code, int eb, int mb, int bias) {
  const unsigned sign = (code >> (eb + mb)) & 1u;
  const unsigned e = (code >> mb) & ((1u << eb) - 1u);
  const unsigned m = code & ((1u << mb) - 1u);
  const double v = e == 0 ? std::ldexp(double(m), 1 - bias - mb)
                          : std::ldexp(double(m + (1u << mb)), int(e) - bias - mb);
  return sign ? -v : v;
}

void expect_same(float got, double want, const char* type, unsigned code) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << type << " code " << code;
    return;
  }
  EXPECT_EQ(double(got), want) << type << " code " << code;
  EXPECT_EQ(std::signbit(got), std::signbit(want)) << type << " code " << code;
}

TEST(Decode, E2M1LiteralTable) {
  const float mags[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (unsigned c = 0; c < 16; ++c) {
    const double want = (c & 8) ? -double(mags[c & 7]) : double(mags[c & 7]);
    expect_same(num::decode_elem(ElemType::kE2M1, uint8_t(c)), want, "e2m1", c);
  }
  EXPECT_TRUE(std::signbit(num::decode_elem(ElemType::kE2M1, 0x8)));  // 0x8 is -0
}

TEST(Decode, E2M3AllCodes) {
  for (unsigned c = 0; c < 64; ++c)
    expect_same(num::decode_elem(ElemType::kE2M3, uint8_t(c)), minifloat(c, 2, 3, 1), "e2m3", c);
  EXPECT_EQ(num::decode_elem(ElemType::kE2M3, 0x1F), 7.5f);
  EXPECT_EQ(num::decode_elem(ElemType::kE2M3, 0x01), 0.125f);
}

TEST(Decode, E3M2AllCodes) {
  for (unsigned c = 0; c < 64; ++c)
    expect_same(num::decode_elem(ElemType::kE3M2, uint8_t(c)), minifloat(c, 3, 2, 3), "e3m2", c);
  EXPECT_EQ(num::decode_elem(ElemType::kE3M2, 0x1F), 28.0f);
  EXPECT_EQ(num::decode_elem(ElemType::kE3M2, 0x01), 0.0625f);
}

TEST(Decode, E4M3AllCodes) {
  for (unsigned c = 0; c < 256; ++c) {
    const bool nan = (c & 0x7F) == 0x7F;  // S.1111.111 only
    const double want = nan ? std::nan("") : minifloat(c, 4, 3, 7);
    expect_same(num::decode_elem(ElemType::kE4M3, uint8_t(c)), want, "e4m3", c);
  }
  EXPECT_EQ(num::decode_elem(ElemType::kE4M3, 0x7E), 448.0f);
  EXPECT_EQ(num::decode_elem(ElemType::kE4M3, 0x01), 0x1p-9f);
}

TEST(Decode, E5M2AllCodes) {
  for (unsigned c = 0; c < 256; ++c) {
    const unsigned mag = c & 0x7F;
    double want = minifloat(c, 5, 2, 15);
    if (mag == 0x7C) want = (c & 0x80) ? -INFINITY : INFINITY;
    if (mag > 0x7C) want = std::nan("");
    expect_same(num::decode_elem(ElemType::kE5M2, uint8_t(c)), want, "e5m2", c);
  }
  EXPECT_EQ(num::decode_elem(ElemType::kE5M2, 0x7B), 57344.0f);
  EXPECT_EQ(num::decode_elem(ElemType::kE5M2, 0x01), 0x1p-16f);
}

TEST(Decode, Int8AllCodes) {
  for (unsigned c = 0; c < 256; ++c) {
    const int q = c < 128 ? int(c) : int(c) - 256;
    expect_same(num::decode_elem(ElemType::kInt8, uint8_t(c)), q / 64.0, "int8", c);
  }
  EXPECT_EQ(num::decode_elem(ElemType::kInt8, 0x80), -2.0f);  // decodes, never produced
}

TEST(Decode, E8M0AllCodes) {
  for (unsigned c = 0; c < 255; ++c)
    EXPECT_EQ(double(num::e8m0_to_f32(uint8_t(c))), std::ldexp(1.0, int(c) - 127)) << c;
  EXPECT_TRUE(std::isnan(num::e8m0_to_f32(0xFF)));
  // Code 0 is 2^-127, an FP32 subnormal: `code << 23` would wrongly give 0.
  EXPECT_EQ(num::f32_bits(num::e8m0_to_f32(0)), 0x00400000u);
  EXPECT_EQ(num::e8m0_to_f32(254), 0x1p127f);
}

TEST(Decode, NaNScaleMakesEveryElementNaN) {
  for (ElemType t : kAllElemTypes)
    for (unsigned c = 0; c < (1u << elem_info(t).bits); ++c)
      EXPECT_TRUE(std::isnan(num::dequantize_elem(t, uint8_t(c), 0xFF)))
          << elem_type_name(t) << " code " << c;
}

TEST(Decode, DequantizeIsExactProductAtScaleExtremes) {
  for (ElemType t : kAllElemTypes)
    for (unsigned c = 0; c < (1u << elem_info(t).bits); ++c)
      for (unsigned s : {0u, 1u, 100u, 127u, 200u, 254u}) {
        const double e = double(num::decode_elem(t, uint8_t(c)));
        if (std::isnan(e)) continue;
        const double want = e * std::ldexp(1.0, int(s) - 127);
        const double want_f = std::fabs(want) > double(std::numeric_limits<float>::max())
                                  ? std::copysign(INFINITY, want)
                                  : want;  // products are exact in FP32 unless they overflow
        EXPECT_EQ(double(num::dequantize_elem(t, uint8_t(c), uint8_t(s))), want_f)
            << elem_type_name(t) << " code " << c << " scale " << s;
      }
}

}  // namespace
}  // namespace mxq
