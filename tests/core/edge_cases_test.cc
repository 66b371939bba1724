// Every edge case listed in docs/numerics.md, each a named test. Expected values are derived
// by hand from the contract (comments show the arithmetic), never read back from mxq.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "mxq/quantize.h"
#include "test_util.h"

namespace mxq {
namespace {

using testing::encode_at;
using testing::quantize_values;
constexpr float kNaN = __builtin_nanf("");

TEST(EdgeCases, AllZeroBlockWithMixedSignsKeepsSigns) {
  for (ElemType t : kAllElemTypes)
    for (ScaleRule r : kAllScaleRules) {
      const auto q = quantize_values(t, {0.0f, -0.0f, 0.0f, -0.0f}, r);
      EXPECT_EQ(q.scale, 0x00) << elem_type_name(t) << " " << scale_rule_name(r);
      for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(q.value(i), 0.0f);
        // INT8 has no negative zero; every float type keeps the sign bit.
        if (t != ElemType::kInt8) {
          EXPECT_EQ(std::signbit(q.value(i)), i % 2 == 1) << i;
        }
      }
    }
}

TEST(EdgeCases, SingleMaxNormalTimesPowerOfTwo) {
  // x = max_normal * 2^k: floor gives code 127 + k and the element is exactly max_normal.
  for (ElemType t : kAllElemTypes) {
    const ElemInfo ei = elem_info(t);
    for (int k = -100; k <= 100; k += 7) {
      const float x = std::ldexp(ei.max_normal, k);
      const auto q = quantize_values(t, {x});
      EXPECT_EQ(q.scale, 127 + k) << elem_type_name(t) << " k=" << k;
      EXPECT_EQ(q.codes[0], ei.max_mag) << elem_type_name(t) << " k=" << k;
      EXPECT_EQ(q.value(0), x) << elem_type_name(t) << " k=" << k;
    }
  }
}

TEST(EdgeCases, AmaxExactPowersOfTwo) {
  // floor: code = E(amax) - emax + 127, clamped to [0, 254].
  for (ElemType t : kAllElemTypes) {
    const int emax = elem_info(t).emax;
    EXPECT_EQ(quantize_values(t, {1.0f}).scale, 127 - emax) << elem_type_name(t);
    EXPECT_EQ(quantize_values(t, {0x1p-126f}).scale, std::max(0, 1 - emax)) << elem_type_name(t);
    EXPECT_EQ(quantize_values(t, {0x1p127f}).scale, 254 - emax) << elem_type_name(t);
    // 1.0 itself survives exactly in every format.
    EXPECT_EQ(quantize_values(t, {1.0f}).value(0), 1.0f) << elem_type_name(t);
  }
  // rceil on an exact power of two quotient does not round up: amax 8 / 4 ... E4M3: 448*2 = 896.
  EXPECT_EQ(quantize_values(ElemType::kE4M3, {896.0f}, ScaleRule::kRceil).scale, 128);
  EXPECT_EQ(quantize_values(ElemType::kE2M1, {12.0f}, ScaleRule::kRceil).scale, 128);
}

TEST(EdgeCases, LargestFloatBelowOne) {
  const float x = num::f32_from_bits(0x3F7FFFFFu);  // 1 - 2^-24, E = -1
  const auto fp4 = quantize_values(ElemType::kE2M1, {x});
  EXPECT_EQ(fp4.scale, 127 - 1 - 2);  // 124: q = x * 8 = 7.99999 -> saturates to 6
  EXPECT_EQ(fp4.value(0), 0.75f);
  // rceil: x / 6 = 0.16667 -> 2^-2 -> code 125, q = 3.99999 -> 4
  EXPECT_EQ(quantize_values(ElemType::kE2M1, {x}, ScaleRule::kRceil).value(0), 1.0f);
}

TEST(EdgeCases, E2M1AmaxMantissaBetween1p5And1p75) {
  // amax = 1.625 * 2^2 = 6.5 and 1.7 * 2^2 = 6.8: floor keeps E = 2 (code 127) and saturates;
  // `even` rounds 1.625 -> 1.5 (tie to even at 1 bit: 1.1|01 is below the tie) -> no carry.
  for (float a : {6.5f, 6.8f}) {
    EXPECT_EQ(quantize_values(ElemType::kE2M1, {a}).scale, 127);
    EXPECT_EQ(quantize_values(ElemType::kE2M1, {a}).value(0), 6.0f);
    EXPECT_EQ(quantize_values(ElemType::kE2M1, {a}, ScaleRule::kEven).scale, 127);
    EXPECT_EQ(quantize_values(ElemType::kE2M1, {a}, ScaleRule::kRceil).scale, 128);
  }
}

TEST(EdgeCases, E2M1AmaxMantissaFrom1p75To2) {
  // 1.75 * 4 = 7 (the tie) and 1.9 * 4 = 7.6 carry into the exponent under `even`.
  for (float a : {7.0f, 7.6f}) {
    EXPECT_EQ(quantize_values(ElemType::kE2M1, {a}).scale, 127);
    EXPECT_EQ(quantize_values(ElemType::kE2M1, {a}).value(0), 6.0f);  // floor saturates
    EXPECT_EQ(quantize_values(ElemType::kE2M1, {a}, ScaleRule::kEven).scale, 128);
    EXPECT_EQ(quantize_values(ElemType::kE2M1, {a}, ScaleRule::kEven).value(0), 8.0f);
  }
}

TEST(EdgeCases, E4M3AmaxAroundMaxNormal) {
  // All have E(amax) = 8 -> floor code 127 (scale 1). 464 is the tie between 448 (even
  // mantissa 110) and 480 (not representable: it would be the NaN code's neighbour).
  struct Case {
    float x;
    float saturated;
    bool overflows;  // rounds beyond 448 -> NaN under nan_inf
  };
  for (const Case& c : {Case{449, 448, false}, Case{464, 448, false}, Case{464.0001f, 448, true},
                        Case{480, 448, true}, Case{511.9f, 448, true}}) {
    const auto q = quantize_values(ElemType::kE4M3, {c.x});
    EXPECT_EQ(q.scale, 127) << c.x;
    EXPECT_EQ(q.value(0), c.saturated) << c.x;
    const auto n = quantize_values(ElemType::kE4M3, {c.x}, ScaleRule::kFloor, Rounding::kRne,
                                   Saturation::kNanInf);
    if (c.overflows) {
      EXPECT_EQ(n.codes[0], 0x7F) << c.x;
      EXPECT_TRUE(std::isnan(n.value(0))) << c.x;
    } else {
      EXPECT_EQ(n.value(0), 448.0f) << c.x;
    }
  }
  // E5M2 nan_inf overflows to Inf, with the sign.
  EXPECT_EQ(encode_at(ElemType::kE5M2, -61440.0f, 127, Rounding::kRne, Saturation::kNanInf), 0xFC);
  EXPECT_EQ(encode_at(ElemType::kE5M2, -61440.0f, 127), 0xFB);  // saturate: -57344
}

TEST(EdgeCases, RoundingTiesPerElementType) {
  // For each type, the midpoint between the two smallest positive normals m0 < m1
  // (m1 has an odd mantissa): rne -> m0 (even), half_away -> m1, toward_zero_ties -> m0.
  // And the midpoint between the next pair (m1 odd, m2 even): rne -> m2.
  for (ElemType t : kAllElemTypes) {
    const ElemInfo ei = elem_info(t);
    const int base = ei.is_int ? 64 : (1 << ei.mbits);  // code of 1.0 (int8) / min normal
    const float m0 = num::decode_elem(t, uint8_t(base));
    const float m1 = num::decode_elem(t, uint8_t(base + 1));
    const float m2 = num::decode_elem(t, uint8_t(base + 2));
    const float t01 = (m0 + m1) / 2, t12 = (m1 + m2) / 2;
    EXPECT_EQ(encode_at(t, t01, 127), base) << elem_type_name(t);
    EXPECT_EQ(encode_at(t, t01, 127, Rounding::kHalfAway), base + 1) << elem_type_name(t);
    EXPECT_EQ(encode_at(t, t01, 127, Rounding::kTowardZeroTies), base) << elem_type_name(t);
    EXPECT_EQ(encode_at(t, t12, 127), base + 2) << elem_type_name(t);
    EXPECT_EQ(encode_at(t, t12, 127, Rounding::kHalfAway), base + 2) << elem_type_name(t);
    EXPECT_EQ(encode_at(t, t12, 127, Rounding::kTowardZeroTies), base + 1) << elem_type_name(t);
    // Negative ties mirror the positive ones.
    EXPECT_EQ(num::decode_elem(t, encode_at(t, -t01, 127, Rounding::kHalfAway)), -m1);
  }
  // Subnormal tie of E2M1: 0.25 is between 0 and 0.5 -> rne 0, half_away 0.5.
  EXPECT_EQ(encode_at(ElemType::kE2M1, 0.25f, 127), 0);
  EXPECT_EQ(encode_at(ElemType::kE2M1, 0.25f, 127, Rounding::kHalfAway), 1);
  EXPECT_EQ(encode_at(ElemType::kE2M1, 0.75f, 127), 2);  // 0.5 (odd) vs 1.0 (even)
}

TEST(EdgeCases, ElementUnderflowToSignedZero) {
  for (ElemType t : kAllElemTypes) {
    // 2^-40 is below half the smallest subnormal step of every type at amax 1
    // (E5M2: scale 2^-15, min subnormal 2^-16 * 2^-15 = 2^-31).
    const auto q = quantize_values(t, {1.0f, 0x1p-40f, -0x1p-40f});
    EXPECT_EQ(q.value(1), 0.0f) << elem_type_name(t);
    EXPECT_EQ(q.value(2), 0.0f) << elem_type_name(t);
    if (t != ElemType::kInt8) {
      EXPECT_FALSE(std::signbit(q.value(1))) << elem_type_name(t);
      EXPECT_TRUE(std::signbit(q.value(2))) << elem_type_name(t);
    }
  }
}

TEST(EdgeCases, Fp32SubnormalInputsInNormalBlockAreNotFlushedEarly) {
  // Block amax 2^-120 (E4M3 floor code 127-120-8 = -1 -> clamp? no: -128+127 ... = 0-ish).
  // Choose amax so the element grid reaches into FP32 subnormals: amax = 2^-118 -> E4M3
  // code = -118 - 8 + 127 = 1 (scale 2^-126); min element subnormal 2^-9 * 2^-126 = 2^-135.
  const float sub = 0x1p-135f;  // FP32 subnormal, exactly one E4M3 subnormal step
  const auto q = quantize_values(ElemType::kE4M3, {0x1p-118f, sub, -3 * sub});
  EXPECT_EQ(q.scale, 1);
  EXPECT_EQ(q.value(1), sub);
  EXPECT_EQ(q.value(2), -3 * sub);
}

TEST(EdgeCases, AllSubnormalBlock) {
  // amax subnormal -> floor code 0 (scale 2^-127) for every type; q = x * 2^127 exactly.
  for (ElemType t : kAllElemTypes) {
    const auto q = quantize_values(t, {0x1p-127f, -0x1p-128f, 0x1p-149f});
    EXPECT_EQ(q.scale, 0) << elem_type_name(t);
    EXPECT_EQ(q.value(0), 0x1p-127f) << elem_type_name(t);  // q = 1.0
    EXPECT_EQ(q.value(1), -0x1p-128f) << elem_type_name(t);  // q = -0.5
  }
  // 2^-149 * 2^127 = 2^-22: below every element's half-step, rounds to zero.
  EXPECT_EQ(quantize_values(ElemType::kE4M3, {0x1p-127f, 0x1p-149f}).value(1), 0.0f);
  // E5M2 reaches 2^-16 * 2^-127 = 2^-143: 2^-143 survives in an all-subnormal block.
  EXPECT_EQ(quantize_values(ElemType::kE5M2, {0x1p-127f, 0x1p-143f}).value(1), 0x1p-143f);
}

TEST(EdgeCases, Fp32MinNormalAmax) {
  // E(2^-126) = -126: code = -126 - emax + 127, clamped at 0.
  EXPECT_EQ(quantize_values(ElemType::kInt8, {FLT_MIN}).scale, 1);
  EXPECT_EQ(quantize_values(ElemType::kE2M1, {FLT_MIN}).scale, 0);
  EXPECT_EQ(quantize_values(ElemType::kE2M1, {FLT_MIN}).value(0), FLT_MIN);  // q = 2 exactly
  EXPECT_EQ(quantize_values(ElemType::kE4M3, {FLT_MIN}).value(0), FLT_MIN);
}

TEST(EdgeCases, FltMaxAndBf16Max) {
  const float bf16_max = num::bf16_to_f32(0x7F7F);  // 1.9921875 * 2^127
  for (float m : {FLT_MAX, bf16_max}) {
    // E = 127: E2M1 code 252, q = m / 2^125 in [4, 8): 7.99.. saturates to 6 -> 6 * 2^125.
    const auto q = quantize_values(ElemType::kE2M1, {m, -m});
    EXPECT_EQ(q.scale, 252);
    EXPECT_EQ(q.value(0), 0x1.8p127f);
    EXPECT_EQ(q.value(1), -0x1.8p127f);
    // E4M3: code 246, q in [256, 512) -> saturates at 448.
    EXPECT_EQ(quantize_values(ElemType::kE4M3, {m}).value(0), 0x1.cp127f);
    // rceil: log2(m / 448) = 127.99.. - 8.807 = 119.19 -> ceil 120 (code 247). q = m / 2^120
    // rounds up to 256, so the block decodes to 2^128 = Inf in FP32: the honest result of a
    // rule that rounds the scale up from an amax that is already the largest float.
    const auto rc = quantize_values(ElemType::kE4M3, {m}, ScaleRule::kRceil);
    EXPECT_EQ(rc.scale, 247);
    EXPECT_EQ(rc.codes[0], 0x78);  // 256 = 1.000 * 2^8
    EXPECT_EQ(rc.value(0), INFINITY);
  }
  // MXINT8 under rceil: FLT_MAX / 1.984375 > 2^127 -> no finite E8M0 code: 0xFF, or 0xFE
  // with the saturating flag.
  EXPECT_EQ(quantize_values(ElemType::kInt8, {FLT_MAX}, ScaleRule::kRceil).scale, 0xFF);
  EXPECT_EQ(num::scale_code(ElemType::kInt8, ScaleRule::kRceil, num::f32_bits(FLT_MAX), true), 0xFE);
  EXPECT_EQ(num::scale_code(ElemType::kInt8, ScaleRule::kRoundUp, num::f32_bits(FLT_MAX)), 0xFF);
}

TEST(EdgeCases, NaNInOneLaneAllLanesAndNegativeNaN) {
  for (ElemType t : kAllElemTypes) {
    for (const std::vector<float>& vals :
         {std::vector<float>{1.0f, kNaN, 2.0f}, std::vector<float>(32, kNaN),
          std::vector<float>{-kNaN, 0.5f}}) {
      uint32_t x[kBlockSize] = {};
      for (size_t i = 0; i < vals.size(); ++i) x[i] = num::f32_bits(vals[i]);
      if (vals.size() == 2) x[0] |= 0x80000000u;  // -NaN
      uint8_t codes[kBlockSize];
      const uint8_t s = num::quantize_block(t, {}, x, kBlockSize, codes);
      EXPECT_EQ(s, 0xFF) << elem_type_name(t);
      const uint8_t fill = elem_info(t).bits == 8 && !elem_info(t).is_int ? 0x7F : 0x00;
      for (int i = 0; i < kBlockSize; ++i) {
        EXPECT_EQ(codes[i], fill) << elem_type_name(t) << " lane " << i;
        EXPECT_TRUE(std::isnan(num::dequantize_elem(t, codes[i], s)));
      }
    }
  }
}

TEST(EdgeCases, InfInOneLane) {
  for (ElemType t : kAllElemTypes)
    for (float inf : {INFINITY, -INFINITY})
      for (ScaleRule r : kAllScaleRules) {
        const auto q = quantize_values(t, {1.0f, inf}, r);
        EXPECT_EQ(q.scale, 0xFF) << elem_type_name(t) << " " << scale_rule_name(r);
        EXPECT_TRUE(std::isnan(q.value(0)));
      }
}

TEST(EdgeCases, HugeAndTinyInOneBlock) {
  const auto q = quantize_values(ElemType::kE4M3, {0x1p100f, 0x1p-100f, -0x1.8p100f});
  EXPECT_EQ(q.scale, 127 + 100 - 8);
  EXPECT_EQ(q.value(0), 0x1p100f);
  EXPECT_EQ(q.value(1), 0.0f);
  EXPECT_EQ(q.value(2), -0x1.8p100f);
}

TEST(EdgeCases, Bf16InputsAreWidenedExactlyBeforeAmax) {
  // BF16 0x417F = 15.9375 has E = 3: floor code 128 for MXFP4. Rounding it (e.g. to FP16 or
  // to fewer bits) before taking amax would give 16 -> code 129. Through the tensor API:
  const uint16_t in[32] = {0x417F, 0x3F80 /* 1.0 */};
  uint8_t packed[16], scales[1];
  ASSERT_TRUE(quantize(in, DType::kBF16, 1, 32, {}, packed, scales).ok());
  EXPECT_EQ(scales[0], 128);
  EXPECT_EQ(num::decode_elem(ElemType::kE2M1, packed[0] & 0xF), 6.0f);  // 7.97 saturates
  EXPECT_EQ(num::decode_elem(ElemType::kE2M1, packed[0] >> 4), 0.5f);   // 1.0 / 2
}

TEST(EdgeCases, KNotMultipleOf32RejectedOrPaddedOnRequest) {
  std::vector<float> x(2 * 40, 1.0f);
  std::vector<uint8_t> packed(2 * 32), scales(4);
  const Status s = quantize(x.data(), DType::kF32, 2, 40, {}, packed.data(), scales.data());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("K = 40"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("multiple of"), std::string::npos) << s.message();
  QuantOptions o;
  o.pad_k = true;
  ASSERT_TRUE(quantize(x.data(), DType::kF32, 2, 40, o, packed.data(), scales.data()).ok());
  // Row 0: block 0 all ones, block 1 = 8 ones then 24 zero pads. Rows are 64 elements wide.
  std::vector<float> back(2 * 64);
  ASSERT_TRUE(dequantize(packed.data(), scales.data(), ElemType::kE2M1, 2, 64, DType::kF32,
                         back.data()).ok());
  for (int r = 0; r < 2; ++r)
    for (int i = 0; i < 64; ++i) EXPECT_EQ(back[size_t(r * 64 + i)], i < 40 ? 1.0f : 0.0f) << i;
}

TEST(EdgeCases, Int8MinusTwoDecodesButIsNeverProduced) {
  EXPECT_EQ(num::decode_elem(ElemType::kInt8, 0x80), -2.0f);
  for (ScaleRule r : kAllScaleRules)
    for (float a : {-1.0f, -1.99f, -1.999f, -2.0f, -3.9f, -3.999f, -0x1.fffffep0f}) {
      const auto q = quantize_values(ElemType::kInt8, {a, 0.25f}, r);
      EXPECT_NE(q.codes[0], 0x80) << scale_rule_name(r) << " " << a;
    }
  // floor: amax in [127/64, 2) * 2^k has q = amax / 2^k in [1.984, 2): round(q * 64) = 127 or
  // 128, and 128 clamps to 127. -amax would be -128 = 0x80 without the clamp.
  for (float a : {-1.999f, -0x1.fffffep0f, -3.999f})
    EXPECT_EQ(int8_t(quantize_values(ElemType::kInt8, {a}).codes[0]), -127) << a;
}

TEST(EdgeCases, RoundUpDiffersFromRceilOnTinyQuotients) {
  // amax = 2^-125: amax / 6 = 2^-127.58 is an FP32 subnormal <= 2^-127.
  EXPECT_EQ(quantize_values(ElemType::kE2M1, {0x1p-125f}, ScaleRule::kRceil).scale, 0);
  EXPECT_EQ(quantize_values(ElemType::kE2M1, {0x1p-125f}, ScaleRule::kRoundUp).scale, 1);
  // Above 2^-127 both give 2^-126 (code 1); exact powers of two are not rounded up.
  EXPECT_EQ(quantize_values(ElemType::kE2M1, {0x1p-123f}, ScaleRule::kRceil).scale, 2);
  EXPECT_EQ(quantize_values(ElemType::kE2M1, {0x1p-123f}, ScaleRule::kRoundUp).scale, 2);
}

TEST(EdgeCases, RequantizingADequantizedBlockReproducesIt) {
  const float vals[] = {3.3f, -0.07f, 1e-3f, 250.0f, -17.5f, 0.0f, 6.02e-5f, 99.9f};
  for (ElemType t : kAllElemTypes)
    for (ScaleRule r : {ScaleRule::kFloor, ScaleRule::kRceil, ScaleRule::kRoundUp}) {
      uint32_t x[kBlockSize] = {}, y[kBlockSize] = {};
      for (int i = 0; i < 8; ++i) x[i] = num::f32_bits(vals[i]);
      num::BlockRules rules;
      rules.scale_rule = r;
      uint8_t c1[kBlockSize], c2[kBlockSize];
      const uint8_t s1 = num::quantize_block(t, rules, x, kBlockSize, c1);
      for (int i = 0; i < kBlockSize; ++i) y[i] = num::f32_bits(num::dequantize_elem(t, c1[i], s1));
      const uint8_t s2 = num::quantize_block(t, rules, y, kBlockSize, c2);
      EXPECT_EQ(s2, s1) << elem_type_name(t) << " " << scale_rule_name(r);
      EXPECT_EQ(std::memcmp(c1, c2, sizeof c1), 0) << elem_type_name(t) << " " << scale_rule_name(r);
    }
}

}  // namespace
}  // namespace mxq
