// The E8M0 fold for the FP8 tensor cores (src/contract/fp8_fold.h): per-code shift ranges and
// per-row bases, checked against brute force that shares no code with the implementation (E4M3
// exactness by search over E4M3's finite values, bases by trying every one).
#include "contract/fp8_fold.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "mxq/numerics.h"
#include "mxq/packing.h"

namespace mxq::contract {
namespace {

// Every finite E4M3 value, from decoding all 256 codes.
const std::set<double>& e4m3_values() {
  static const std::set<double> v = [] {
    std::set<double> s;
    for (int c = 0; c < 256; ++c) {
      const float f = num::decode_elem(ElemType::kE4M3, uint8_t(c));
      if (std::isfinite(f)) s.insert(double(f));
    }
    return s;
  }();
  return v;
}
bool is_e4m3(double u) { return e4m3_values().count(u) != 0; }

TEST(Fp8Fold, E4M3HasItsFiniteValues) {
  EXPECT_EQ(e4m3_values().size(), 253u);  // 254 finite codes, +0 and -0 one value
  EXPECT_TRUE(is_e4m3(448.0));
  EXPECT_TRUE(is_e4m3(std::ldexp(1.0, -9)));
  EXPECT_FALSE(is_e4m3(480.0));
  EXPECT_FALSE(is_e4m3(std::ldexp(1.0, -10)));
}

TEST(Fp8Fold, ShiftRangeOfEveryCodeIsExactlyTheExactShifts) {
  for (ElemType t : kAllElemTypes) {
    const int codes = 1 << elem_info(t).bits;
    int empty = 0;
    for (int c = 0; c < codes; ++c) {
      const float v = num::decode_elem(t, uint8_t(c));
      const ShiftRange r = e4m3_shift_range(t, uint8_t(c));
      if (v == 0.0f) {
        EXPECT_EQ(r.lo, kAnyLo);
        EXPECT_EQ(r.hi, kAnyHi);
        continue;
      }
      empty += r.empty() ? 1 : 0;
      for (int d = -60; d <= 60; ++d) {
        const bool exact = std::isfinite(v) && is_e4m3(std::ldexp(double(v), d));
        const bool inside = !r.empty() && d >= r.lo && d <= r.hi;
        ASSERT_EQ(exact, inside) << "type " << int(t) << " code " << c << " (" << v << ") d " << d
                                 << " range [" << r.lo << ", " << r.hi << "]";
      }
    }
    if (t == ElemType::kE2M1 || t == ElemType::kE2M3 || t == ElemType::kE3M2) {
      EXPECT_EQ(empty, 0) << "every FP4/FP6 value has an exact E4M3 shift";
    }
    if (t == ElemType::kE4M3) {
      EXPECT_EQ(empty, 2) << "only the two NaN codes";
    }
  }
  // Hand values: 6 = 1.5 * 2^2 reaches 384 at d = 6 (768 at 7 overflows) and its lowest bit 2^1
  // the smallest subnormal 2^-9 at d = -10; 0.5 goes [-8, 9]; E4M3 448 [-15, 0].
  EXPECT_EQ(e4m3_shift_range(ElemType::kE2M1, 7).lo, -10);
  EXPECT_EQ(e4m3_shift_range(ElemType::kE2M1, 7).hi, 6);
  EXPECT_EQ(e4m3_shift_range(ElemType::kE2M1, 1).lo, -8);
  EXPECT_EQ(e4m3_shift_range(ElemType::kE2M1, 1).hi, 9);
  EXPECT_EQ(e4m3_shift_range(ElemType::kE4M3, 0x7E).lo, -15);
  EXPECT_EQ(e4m3_shift_range(ElemType::kE4M3, 0x7E).hi, 0);
  EXPECT_TRUE(e4m3_shift_range(ElemType::kE4M3, 0x7F).empty());
  EXPECT_TRUE(e4m3_shift_range(ElemType::kE2M1, 16).empty()) << "not an E2M1 code";
}

// A row of k elements: codes + scales, packed canonically.
struct Row {
  ElemType t;
  std::vector<uint8_t> codes, packed, scales;
  Row(ElemType type, std::vector<uint8_t> c, std::vector<uint8_t> s)
      : t(type), codes(std::move(c)), scales(std::move(s)) {
    packed.resize(size_t(int64_t(codes.size()) * elem_info(t).bits / 8));
    pack::pack_codes(t, codes.data(), int64_t(codes.size()), packed.data());
  }
  Fp8FoldRow fold() const {
    return fp8_fold_row(t, packed.data(), scales.data(), int64_t(codes.size()));
  }
  // Brute force: base works when every q = e 2^(s - base) is an E4M3 value, 2^(base - 127) is a
  // finite FP32 and q 2^(base - 127) is the dequantized weight.
  bool base_works(int base) const {
    if (base - 127 < -149 || base - 127 > 127) return false;
    for (size_t i = 0; i < codes.size(); ++i) {
      const uint8_t s = scales[i / 32];
      const float w = num::dequantize_elem(t, codes[i], s);
      if (!std::isfinite(w)) return false;
      const float e = num::decode_elem(t, codes[i]);
      const double q = std::ldexp(double(e), int(s) - base);
      if (!is_e4m3(q)) return false;
      if (std::ldexp(q, base - 127) != double(w)) return false;
    }
    return true;
  }
};

void expect_matches_brute_force(const Row& row, const std::string& what) {
  const Fp8FoldRow f = row.fold();
  std::vector<int> works;
  for (int base = -40; base <= 300; ++base)
    if (row.base_works(base)) works.push_back(base);
  ASSERT_EQ(f.folds, !works.empty()) << what;
  if (!f.folds) return;
  const bool all_zero = std::all_of(row.codes.begin(), row.codes.end(), [&](uint8_t c) {
    return num::decode_elem(row.t, c) == 0.0f;
  });
  if (!all_zero) {  // a zero row folds with any base; it reports 127
    EXPECT_EQ(f.base_lo, works.front()) << what;
    EXPECT_EQ(f.base_hi, works.back()) << what;
    EXPECT_EQ(int(works.size()), f.base_hi - f.base_lo + 1) << what << ": not one interval";
  }
  EXPECT_TRUE(row.base_works(f.base)) << what << ": chosen base " << f.base;
}

TEST(Fp8Fold, Mxfp4ScaleSpanOf14FoldsAnd15DoesNot) {
  // Block 0 holds 6.0 (code 7), block 1 holds 0.5 (code 1): d in [-10, 6] and [-8, 9], so the
  // scales may differ by at most 6 - (-8) = 14 with 0.5 in the lower-scaled block... the brute
  // force decides; the hand expectation is the span rule of the header.
  for (int span = 10; span <= 18; ++span) {
    std::vector<uint8_t> codes(64, 0);
    codes[3] = 7;   // 6.0 in block 0 (scale 120)
    codes[40] = 1;  // 0.5 in block 1 (scale 120 - span)
    const Row row(ElemType::kE2M1, codes, {120, uint8_t(120 - span)});
    expect_matches_brute_force(row, "span " + std::to_string(span));
    EXPECT_EQ(row.fold().folds, span <= 14) << "span " << span;
    if (span > 14) {
      EXPECT_EQ(row.fold().first_conflict_block, 1);
    }
  }
}

TEST(Fp8Fold, ZerosNaNScalesAndTheBaseLimits) {
  const Row zeros(ElemType::kE2M1, std::vector<uint8_t>(64, 0), {5, 250});
  EXPECT_TRUE(zeros.fold().folds);
  EXPECT_EQ(zeros.fold().base, 127);
  // A NaN scale makes its block NaN even with zero codes: never folds.
  const Row nan_block(ElemType::kE2M1, std::vector<uint8_t>(64, 0), {120, 0xFF});
  EXPECT_FALSE(nan_block.fold().folds);
  EXPECT_EQ(nan_block.fold().first_conflict_block, 1);
  expect_matches_brute_force(nan_block, "NaN scale");
  // An E4M3 NaN code never folds.
  std::vector<uint8_t> c8(32, 0x38);
  c8[5] = 0x7F;
  EXPECT_FALSE(Row(ElemType::kE4M3, c8, {127}).fold().folds);
  // Scales at the ends of E8M0: the base must keep 2^(base - 127) a finite FP32, and a weight
  // that overflows FP32 (6 x 2^126 at scale 253: Inf in the reference) must not fold.
  for (uint8_t s : {uint8_t(0), uint8_t(1), uint8_t(253), uint8_t(254)}) {
    std::vector<uint8_t> c(32, 0);
    c[0] = 7;
    c[1] = 1;
    expect_matches_brute_force(Row(ElemType::kE2M1, c, {s}), "scale " + std::to_string(s));
    EXPECT_EQ(Row(ElemType::kE2M1, c, {s}).fold().folds, s < 253) << "scale " << int(s);
  }
  // MXFP8: one scale per row folds (d = 0); with 2^-9 in the block of scale 120 (d >= 0) and 448
  // in the block of scale 121 (d <= 0) no base fits. (Swapped, base 120 or 121 would fit.)
  std::vector<uint8_t> big(64, 0x38);
  big[1] = 0x01;   // 2^-9, block 0
  big[33] = 0x7E;  // 448, block 1
  expect_matches_brute_force(Row(ElemType::kE4M3, big, {120, 120}), "mxfp8 one scale");
  EXPECT_TRUE(Row(ElemType::kE4M3, big, {120, 120}).fold().folds);
  expect_matches_brute_force(Row(ElemType::kE4M3, big, {120, 121}), "mxfp8 two scales");
  EXPECT_FALSE(Row(ElemType::kE4M3, big, {120, 121}).fold().folds);
}

TEST(Fp8Fold, RandomRowsOfEveryTypeMatchBruteForce) {
  std::mt19937 rng(17);
  for (ElemType t : kAllElemTypes) {
    const int codes = 1 << elem_info(t).bits;
    for (int trial = 0; trial < 90; ++trial) {
      const int blocks = 1 + int(rng() % 4);
      std::vector<uint8_t> c(static_cast<size_t>(32 * blocks));
      std::vector<uint8_t> s(static_cast<size_t>(blocks));
      const int spread = int(rng() % 20);  // binades between the block scales
      for (auto& v : c) v = uint8_t(rng() % 4 == 0 ? 0 : rng() % uint32_t(codes));
      // Scales near both ends of E8M0 (base limits, FP32 overflow) and in the middle.
      const int first = trial % 3 == 0 ? int(rng() % 8) : trial % 3 == 1 ? 100 : 230;
      for (auto& v : s) v = uint8_t(std::min(254, first + int(rng() % uint32_t(spread + 1))));
      expect_matches_brute_force(Row(t, c, s), "type " + std::to_string(int(t)) + " trial " +
                                                   std::to_string(trial));
    }
  }
}

TEST(Fp8Fold, StatsCountTheRowsAndRefuseBadShapes) {
  // 3 rows x 64: row 0 folds, row 1 does not (span 16 with 6 and 0.5), row 2 is zeros.
  std::vector<uint8_t> codes(3 * 64, 0), scales = {120, 118, 120, 104, 7, 200};
  codes[0] = 7;
  codes[40] = 1;
  codes[64 + 0] = 7;
  codes[64 + 40] = 1;
  std::vector<uint8_t> packed(codes.size() / 2);
  pack::pack_codes(ElemType::kE2M1, codes.data(), int64_t(codes.size()), packed.data());
  MXWeightView w{ElemType::kE2M1, 1, 3, 64, packed.data(), scales.data()};
  int32_t bases[3] = {0, 0, 0};
  auto st = fp8_fold_stats(w, bases);
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_EQ(st.value().rows, 3);
  EXPECT_EQ(st.value().folded, 2);
  EXPECT_NE(bases[0], kRowDoesNotFold);
  EXPECT_EQ(bases[1], kRowDoesNotFold);
  EXPECT_EQ(bases[2], 127);
  EXPECT_EQ(st.value().summary(), "2 of 3 rows fold (66.7%); 1 take per-block promotion");
  // The same rows as a batch of 3 x 1 row.
  MXWeightView wb{ElemType::kE2M1, 3, 1, 64, packed.data(), scales.data()};
  ASSERT_TRUE(fp8_fold_stats(wb).ok());
  EXPECT_EQ(fp8_fold_stats(wb).value().folded, 2);
  MXWeightView bad = w;
  bad.k = 48;
  const auto e = fp8_fold_stats(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("[1, 3, 48]"), std::string::npos) << e.status().message();
  EXPECT_NE(e.status().message().find("multiple of 32"), std::string::npos);
  bad = w;
  bad.scales = nullptr;
  EXPECT_FALSE(fp8_fold_stats(bad).ok());
}

}  // namespace
}  // namespace mxq::contract
