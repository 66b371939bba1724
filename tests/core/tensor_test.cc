// The whole-tensor CPU path (threads + vectorised clones) against the scalar block
// reference of numerics.h, for every type x rule x rounding x saturation x input dtype, and
// the API's error paths.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "mxq/packing.h"
#include "mxq/quantize.h"
#include "test_util.h"

namespace mxq {
namespace {

// Random FP32 patterns with per-block dynamic range, plus zero / NaN / Inf / subnormal blocks.
std::vector<uint32_t> random_bits(int64_t rows, int64_t k, uint32_t seed) {
  testing::Rng rng(seed);
  std::vector<uint32_t> x(size_t(rows * k));
  for (size_t b = 0; b * 32 < x.size(); ++b) {
    const uint32_t top = uint32_t(rng() % 250 + 2);
    const uint32_t span = rng() % 30;
    for (size_t i = b * 32; i < std::min(x.size(), b * 32 + 32); ++i) {
      const uint32_t e = top > span ? top - uint32_t(rng() % (span + 1)) : top;
      x[i] = (rng() & 0x807FFFFFu) | (e << 23);
      if (b % 53 == 3) x[i] &= 0x807FFFFFu;  // FP32 subnormals
      if (b % 41 == 5) x[i] = (rng() & 1) << 31;  // signed zeros
    }
    if (b % 37 == 7) x[b * 32 % x.size()] = 0x7FC00001u;
    if (b % 43 == 8) x[b * 32 % x.size()] = 0xFF800000u;
  }
  return x;
}

// Reference: scalar quantize_block per row, zero-padded, packed per block.
void reference(const std::vector<uint32_t>& x, int64_t rows, int64_t k, int64_t kq,
               ElemType t, const num::BlockRules& rules, std::vector<uint8_t>& packed,
               std::vector<uint8_t>& scales) {
  const int64_t kb = kq / 32, bb = 32 * elem_info(t).bits / 8;
  packed.assign(size_t(rows * kb * bb), 0);
  scales.assign(size_t(rows * kb), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < kb; ++j) {
      uint32_t blk[32] = {};
      for (int64_t i = 0; i < 32 && j * 32 + i < k; ++i) blk[i] = x[size_t(r * k + j * 32 + i)];
      uint8_t codes[32];
      scales[size_t(r * kb + j)] = num::quantize_block(t, rules, blk, 32, codes);
      pack::pack_codes(t, codes, 32, &packed[size_t((r * kb + j) * bb)]);
    }
}

TEST(TensorQuantize, MatchesScalarReferenceForEveryOption) {
  const int64_t rows = 7, k = 96 + 17;  // padded to 128
  const std::vector<uint32_t> x = random_bits(rows, k, 1);
  for (ElemType t : kAllElemTypes)
    for (ScaleRule r : kAllScaleRules)
      for (Rounding rnd : kAllRoundings)
        for (Saturation sat : {Saturation::kSaturate, Saturation::kNanInf}) {
          if (sat == Saturation::kNanInf && !elem_info(t).has_nan_inf) continue;
          QuantOptions o;
          o.elem = t;
          o.scale_rule = r;
          o.rounding = rnd;
          o.saturation = sat;
          o.pad_k = true;
          std::vector<uint8_t> want_p, want_s;
          reference(x, rows, k, 128, t, {r, rnd, sat, false}, want_p, want_s);
          std::vector<uint8_t> got_p(want_p.size()), got_s(want_s.size());
          ASSERT_TRUE(quantize(x.data(), DType::kF32, rows, k, o, got_p.data(), got_s.data()).ok());
          EXPECT_EQ(got_s, want_s) << describe(o);
          EXPECT_EQ(got_p, want_p) << describe(o);
        }
}

TEST(TensorQuantize, Bf16AndF16InputsEqualTheirExactFp32Widening) {
  const int64_t rows = 5, k = 256;
  const std::vector<uint32_t> x = random_bits(rows, k, 2);
  std::vector<uint16_t> bf(x.size()), hf(x.size());
  std::vector<uint32_t> bf_w(x.size()), hf_w(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    bf[i] = uint16_t(x[i] >> 16);
    bf_w[i] = uint32_t(bf[i]) << 16;
    hf[i] = num::f32_to_f16(num::f32_from_bits(x[i] >> 8));  // bring into FP16's range
    hf_w[i] = num::f32_bits(num::f16_to_f32(hf[i]));
  }
  for (ElemType t : kAllElemTypes) {
    QuantOptions o;
    o.elem = t;
    const size_t pb = size_t(rows * packed_bytes(t, k)), sb = size_t(rows * k / 32);
    std::vector<uint8_t> p1(pb), s1(sb), p2(pb), s2(sb);
    ASSERT_TRUE(quantize(bf.data(), DType::kBF16, rows, k, o, p1.data(), s1.data()).ok());
    ASSERT_TRUE(quantize(bf_w.data(), DType::kF32, rows, k, o, p2.data(), s2.data()).ok());
    EXPECT_EQ(p1, p2) << "bf16 " << elem_type_name(t);
    EXPECT_EQ(s1, s2) << "bf16 " << elem_type_name(t);
    ASSERT_TRUE(quantize(hf.data(), DType::kF16, rows, k, o, p1.data(), s1.data()).ok());
    ASSERT_TRUE(quantize(hf_w.data(), DType::kF32, rows, k, o, p2.data(), s2.data()).ok());
    EXPECT_EQ(p1, p2) << "f16 " << elem_type_name(t);
    EXPECT_EQ(s1, s2) << "f16 " << elem_type_name(t);
  }
}

TEST(TensorQuantize, ResultDoesNotDependOnThreadCount) {
  const int64_t rows = 300, k = 4096;  // big enough to be split across threads
  const std::vector<uint32_t> x = random_bits(rows, k, 3);
  QuantOptions o;
  o.elem = ElemType::kE2M1;
  std::vector<uint8_t> p1(size_t(rows * k / 2)), s1(size_t(rows * k / 32));
  o.threads = 1;
  ASSERT_TRUE(quantize(x.data(), DType::kF32, rows, k, o, p1.data(), s1.data()).ok());
  for (int th : {2, 3, 7}) {
    std::vector<uint8_t> p(p1.size()), s(s1.size());
    o.threads = th;
    ASSERT_TRUE(quantize(x.data(), DType::kF32, rows, k, o, p.data(), s.data()).ok());
    EXPECT_EQ(p, p1) << th;
    EXPECT_EQ(s, s1) << th;
  }
}

TEST(TensorDequantize, MatchesScalarDecodeInEveryOutputDtype) {
  const int64_t rows = 9, k = 160;
  testing::Rng rng(4);
  for (ElemType t : kAllElemTypes) {
    std::vector<uint8_t> packed(size_t(rows * packed_bytes(t, k))), scales(size_t(rows * k / 32));
    for (auto& b : packed) b = uint8_t(rng());
    for (auto& s : scales) s = uint8_t(rng() % 40 + 100);
    scales[3] = 0;
    scales[4] = 0xFF;
    scales[5] = 254;
    std::vector<uint8_t> codes(size_t(rows * k));
    ASSERT_TRUE(unpack_codes(t, packed.data(), rows * k, codes.data()).ok());
    std::vector<float> f(codes.size());
    std::vector<uint16_t> bf(codes.size()), hf(codes.size());
    ASSERT_TRUE(dequantize(packed.data(), scales.data(), t, rows, k, DType::kF32, f.data()).ok());
    ASSERT_TRUE(dequantize(packed.data(), scales.data(), t, rows, k, DType::kBF16, bf.data()).ok());
    ASSERT_TRUE(dequantize(packed.data(), scales.data(), t, rows, k, DType::kF16, hf.data()).ok());
    for (size_t i = 0; i < codes.size(); ++i) {
      const float want = num::dequantize_elem(t, codes[i], scales[i / 32]);
      EXPECT_EQ(num::f32_bits(f[i]), num::f32_bits(want)) << elem_type_name(t) << " " << i;
      EXPECT_EQ(bf[i], num::f32_to_bf16(want)) << elem_type_name(t) << " " << i;
      EXPECT_EQ(hf[i], num::f32_to_f16(want)) << elem_type_name(t) << " " << i;
    }
  }
}

TEST(TensorQuantize, OwningFormRoundTrips) {
  std::vector<float> w(4 * 64);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 13) * 0.25f - 1.5f;  // exact in E2M1*2^k
  QuantOptions o;
  const MXMatrix m = quantize(w, 4, 64, o).value();
  EXPECT_EQ(m.packed.size(), 4u * 32);
  EXPECT_EQ(m.scales.size(), 4u * 2);
  const std::vector<float> back = dequantize(m).value();
  ASSERT_EQ(back.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    // amax 1.5 -> scale 2^-2; values are multiples of 0.25 in [-1.5, 1.5]: E2M1 * 2^-2 holds
    // 0, .125, .25, .375, .5, .75, 1, 1.5 -> 1.25 is a tie (1 vs 1.5, rne -> 1).
    const float want = std::fabs(w[i]) == 1.25f ? std::copysign(1.0f, w[i]) : w[i];
    EXPECT_EQ(back[i], want) << i;
  }
}

TEST(TensorErrors, ClearMessagesForBadInput) {
  std::vector<float> x(64, 1.0f);
  std::vector<uint8_t> p(64), s(4);
  QuantOptions o;
  auto msg = [&](const QuantOptions& opt, int64_t rows, int64_t k, const void* in = nullptr) {
    const Status st =
        quantize(in ? in : x.data(), DType::kF32, rows, k, opt, p.data(), s.data());
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    return st.message();
  };
  EXPECT_NE(msg(o, 1, 33).find("K = 33 is not a multiple of the MX block size 32"),
            std::string::npos);
  EXPECT_NE(msg(o, 1, 0).find("K = 0"), std::string::npos);
  EXPECT_NE(msg(o, -1, 32).find("rows = -1"), std::string::npos);
  QuantOptions bad = o;
  bad.saturation = Saturation::kNanInf;  // MXFP4 has no NaN/Inf codes
  EXPECT_NE(msg(bad, 1, 32).find("nan_inf"), std::string::npos);
  bad = o;
  bad.threads = -2;
  EXPECT_NE(msg(bad, 1, 32).find("threads"), std::string::npos);
  bad = o;
  bad.elem = ElemType(42);
  EXPECT_NE(msg(bad, 1, 32).find("element type"), std::string::npos);
  EXPECT_FALSE(quantize(nullptr, DType::kF32, 1, 32, o, p.data(), s.data()).ok());
  EXPECT_FALSE(dequantize(p.data(), s.data(), ElemType::kE2M1, 1, 48, DType::kF32, x.data()).ok());
  const auto wrong_size = quantize(std::vector<float>(10), 1, 32, o);
  ASSERT_FALSE(wrong_size.ok());
  EXPECT_NE(wrong_size.status().message().find("10 values"), std::string::npos);
}

TEST(OptionParsing, NamesRoundTripAndUnknownNamesListChoices) {
  for (ElemType t : kAllElemTypes) {
    EXPECT_EQ(parse_elem_type(elem_type_name(t)).value(), t);
    EXPECT_EQ(parse_elem_type(mx_format_name(t)).value(), t);
  }
  for (ScaleRule r : kAllScaleRules) EXPECT_EQ(parse_scale_rule(scale_rule_name(r)).value(), r);
  for (Rounding r : kAllRoundings) EXPECT_EQ(parse_rounding(rounding_name(r)).value(), r);
  EXPECT_EQ(parse_saturation("nan_inf").value(), Saturation::kNanInf);
  EXPECT_EQ(parse_dtype("bfloat16").value(), DType::kBF16);
  const auto bad = parse_scale_rule("ceil");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown scale rule 'ceil'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("even_fp4_mantissa"), std::string::npos);
  EXPECT_FALSE(parse_elem_type("fp4").ok());
  EXPECT_FALSE(parse_rounding("nearest").ok());
  EXPECT_THROW(parse_dtype("f64").value(), Error);
}

}  // namespace
}  // namespace mxq
