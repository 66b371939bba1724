// num::encode_elem against an independent brute-force oracle.
//
// The oracle never calls into mxq's numerics: it lists every finite value of the element type
// from the bit-field definition (double math, its own format table), scales the input exactly
// in double (q = x * 2^-c with std::ldexp: an FP32 value times a power of two in [-127, 127]
// always fits a double exactly), and picks the nearest representable value by comparing
// 2|q| with the sum of the two neighbouring values (both exact in double). Ties follow the
// rounding's rule:
//   rne              -> the even code (mantissa LSB 0; for INT8 the even integer)
//   half_away        -> the larger magnitude
//   toward_zero_ties -> the smaller magnitude
// Overflow: the grid is extended by one virtual value above max normal (max + the quantum of
// the top binade, with the next magnitude code, so that its parity is the tie-breaking parity
// the unbounded format would have). Rounding to it or beyond is overflow: `saturate` gives
// +-max normal, `nan_inf` gives E4M3 0x7F / E5M2 0x7C with the sign. The sign of zero is kept
// (negative-zero code) except for INT8, whose only zero is 0.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mxq/formats.h"
#include "mxq/numerics.h"

namespace mxq {
namespace {

// ---- the oracle's own description of each type (from the OCP MX spec / NUMERICS.md) -----

struct Spec {
  const char* name;
  bool is_int;
  int ebits, mbits, bias;  // minifloat fields (unused for INT8)
  int max_mag;             // largest finite magnitude code
  unsigned sign_mask;      // sign bit (unused for INT8)
  int overflow_mag;        // nan_inf overflow magnitude (-1: nan_inf not valid)
  std::vector<double> v;   // v[k]: value of magnitude code k, k = 0..max_mag+1 (last virtual)
};

float f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

Spec make_spec(ElemType t) {
  Spec s{};
  switch (t) {
    case ElemType::kE2M1:
      s = {"e2m1", false, 2, 1, 1, 0x07, 0x08, -1, {}};
      break;
    case ElemType::kE2M3:
      s = {"e2m3", false, 2, 3, 1, 0x1F, 0x20, -1, {}};
      break;
    case ElemType::kE3M2:
      s = {"e3m2", false, 3, 2, 3, 0x1F, 0x20, -1, {}};
      break;
    case ElemType::kE4M3:
      s = {"e4m3", false, 4, 3, 7, 0x7E, 0x80, 0x7F, {}};
      break;
    case ElemType::kE5M2:
      s = {"e5m2", false, 5, 2, 15, 0x7B, 0x80, 0x7C, {}};
      break;
    case ElemType::kInt8:
      s = {"int8", true, 0, 0, 0, 127, 0x80, -1, {}};
      break;
  }
  for (int k = 0; k <= s.max_mag + 1; ++k) {
    if (s.is_int) {
      s.v.push_back(k / 64.0);
      continue;
    }
    // Exponent field taken without masking, so that k = max_mag + 1 continues the grid.
    const int e = k >> s.mbits, m = k & ((1 << s.mbits) - 1);
    s.v.push_back(e == 0 ? std::ldexp(double(m), 1 - s.bias - s.mbits)
                         : std::ldexp(double(m + (1 << s.mbits)), e - s.bias - s.mbits));
  }
  return s;
}

uint8_t oracle(const Spec& s, float x, int c, Rounding rnd, Saturation sat) {
  const double q = std::ldexp(double(x), -c);  // exact
  const bool neg = std::signbit(x);
  const double a = std::fabs(q);
  const int top = s.max_mag + 1;  // virtual code just above max normal
  int k = 0;
  if (a >= s.v[size_t(top)]) {
    k = top;
  } else {
    const int i = int(std::upper_bound(s.v.begin(), s.v.end(), a) - s.v.begin()) - 1;
    if (s.v[size_t(i)] == a) {
      k = i;
    } else {
      const double twice = 2.0 * a, mid2 = s.v[size_t(i)] + s.v[size_t(i) + 1];  // both exact
      if (twice < mid2) {
        k = i;
      } else if (twice > mid2) {
        k = i + 1;
      } else {
        switch (rnd) {
          case Rounding::kRne:
            k = (i % 2 == 0) ? i : i + 1;
            break;
          case Rounding::kHalfAway:
            k = i + 1;
            break;
          case Rounding::kTowardZeroTies:
            k = i;
            break;
        }
      }
    }
  }
  int mag = k;
  if (k > s.max_mag) mag = sat == Saturation::kNanInf ? s.overflow_mag : s.max_mag;
  if (s.is_int) return uint8_t(neg ? (256 - mag) & 0xFF : mag);
  return uint8_t(unsigned(mag) | (neg ? s.sign_mask : 0u));
}

std::string hexf(float x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a (0x%08X)", double(x), bits(x));
  return buf;
}

// Runs encode_elem against the oracle on a set of (x, c) pairs for every rounding and every
// saturation valid for the type; counts what it checked.
class Checker {
 public:
  explicit Checker(ElemType t) : t_(t), s_(make_spec(t)) {}

  void add(float x, int c) {
    if (!std::isfinite(x) || c < -127 || c > 127) return;
    cases_.push_back({x, c});
  }
  // x and its neighbours one FP32 ulp away, both signs.
  void add_around(float x, int c) {
    for (float y : {x, std::nextafter(x, INFINITY), std::nextafter(x, -INFINITY)}) {
      add(y, c);
      add(-y, c);
    }
  }

  // Returns the number of mismatches (every one is also reported, the first few in detail).
  int run() {
    int bad = 0;
    std::vector<Saturation> sats{Saturation::kSaturate};
    if (s_.overflow_mag >= 0) sats.push_back(Saturation::kNanInf);
    for (Rounding r : kAllRoundings)
      for (Saturation sat : sats)
        for (const auto& [x, c] : cases_) {
          const uint8_t want = oracle(s_, x, c, r, sat);
          const uint8_t got = num::encode_elem(t_, bits(x), c, r, sat);
          ++checked_;
          if (got != want && ++bad <= 20)
            ADD_FAILURE() << s_.name << " x=" << hexf(x) << " c=" << c
                          << " rounding=" << rounding_name(r) << " sat=" << saturation_name(sat)
                          << ": got 0x" << std::hex << int(got) << ", want 0x" << int(want);
        }
    EXPECT_EQ(bad, 0) << s_.name << ": mismatches out of " << checked_;
    return bad;
  }

  const Spec& spec() const { return s_; }
  size_t checked() const { return checked_; }
  size_t cases() const { return cases_.size(); }

 private:
  ElemType t_;
  Spec s_;
  std::vector<std::pair<float, int>> cases_;
  size_t checked_ = 0;
};

// Scales exercised for the structured sets: both ends of E8M0, the points where scaled
// element values fall into FP32 subnormals, and ordinary ones.
constexpr int kScales[] = {-127, -126, -125, -120, -100, -64, -20, -7,  -1,  0,   1,
                           2,    7,    20,   64,   100,  110, 111, 112, 113, 120, 127};

// Adds every ingredient listed in the file comment for type t; `seed` varies the random part.
void add_all_cases(Checker& ch, uint32_t seed) {
  const Spec& s = ch.spec();
  const int top = s.max_mag + 1;
  std::mt19937 rng(seed);

  // Every representable value, every midpoint between neighbours (including max and the
  // virtual value above it: the overflow threshold), +-1 FP32 ulp around each.
  for (int c : kScales) {
    for (int k = 0; k <= top; ++k) {
      const double v = std::ldexp(s.v[size_t(k)], c);
      if (v <= double(FLT_MAX)) ch.add_around(float(v), c);  // float(v) may round: still valid
      if (k < top) {
        const double mid = std::ldexp((s.v[size_t(k)] + s.v[size_t(k) + 1]) / 2, c);
        if (mid <= double(FLT_MAX)) ch.add_around(float(mid), c);
      }
    }
  }

  // Random finite FP32 patterns with random scales (mostly far outside the element range).
  std::uniform_int_distribution<uint32_t> u32;
  std::uniform_int_distribution<int> cdist(-127, 127);
  for (int i = 0; i < 60000; ++i) {
    uint32_t u = u32(rng);
    if ((u & 0x7F800000u) == 0x7F800000u) u &= 0xBFFFFFFFu;  // make it finite
    ch.add(f32(u), cdist(rng));
  }
  // Random patterns whose scaled magnitude lies in (or just around) the element's range.
  const double lo = s.v[1], hi = s.v[size_t(top)];
  const int elo = int(std::floor(std::log2(lo))) - 3, ehi = int(std::ceil(std::log2(hi))) + 2;
  std::uniform_int_distribution<int> edist(elo, ehi);
  std::uniform_int_distribution<uint32_t> mant(0, 0x7FFFFF);
  for (int i = 0; i < 60000; ++i) {
    const int c = cdist(rng);
    const double q = std::ldexp(1.0 + std::ldexp(double(mant(rng)), -23), edist(rng));
    const double x = std::ldexp(q, c);
    if (x > double(FLT_MAX)) continue;
    ch.add((rng() & 1) ? -float(x) : float(x), c);
  }

  // FP32 subnormal inputs: structured patterns plus random ones, at the scales where they
  // matter (c = -127 maps the whole subnormal range onto (0, 2)).
  std::vector<uint32_t> sub;
  for (uint32_t m = 1; m <= 4096; ++m) sub.push_back(m);
  for (int b = 0; b < 23; ++b) {
    const uint32_t p = 1u << b;
    for (uint32_t m : {p, p - 1, p + 1, p | (p >> 1), (p | (p >> 1)) - 1, (p | (p >> 1)) + 1})
      if (m > 0 && m < 0x800000u) sub.push_back(m);
  }
  for (uint32_t m = 0x7FFFFFu; m > 0x7FFFFFu - 4096; --m) sub.push_back(m);
  std::uniform_int_distribution<uint32_t> subd(1, 0x7FFFFF);
  for (int i = 0; i < 8000; ++i) sub.push_back(subd(rng));
  for (int c : {-127, -126, -120, 0})
    for (uint32_t m : sub) {
      ch.add(f32(m), c);
      ch.add(f32(m | 0x80000000u), c);
    }

  // Zeros and values far above max normal.
  for (int c : kScales) {
    ch.add(0.0f, c);
    ch.add(-0.0f, c);
    for (double f : {1.0001, 1.5, 2.0, 17.0, 1000.0, 1048576.0, 1e30}) {
      const double x = std::ldexp(s.v[size_t(s.max_mag)], c) * f;
      if (x <= double(FLT_MAX)) ch.add_around(float(x), c);
    }
    ch.add_around(FLT_MAX, c);
    ch.add_around(0x1p127f, c);
    ch.add_around(0x1p100f, c);
    ch.add_around(0x1p21f, c);  // INT8: |q * 64| beyond the 24-bit significand shift range
    ch.add_around(FLT_MIN, c);
  }
}

void run_type(ElemType t) {
  Checker ch(t);
  add_all_cases(ch, 1234u + uint32_t(t));
  ASSERT_GT(ch.cases(), 100000u);
  ch.run();
}

// The oracle's grid agrees with the literal format table of NUMERICS.md.
TEST(EncodeOracle, GridMatchesFormatTable) {
  struct Row {
    ElemType t;
    double max_normal, min_sub, next_above_max;
  };
  const Row rows[] = {{ElemType::kE2M1, 6.0, 0.5, 8.0},
                      {ElemType::kE2M3, 7.5, 0.125, 8.0},
                      {ElemType::kE3M2, 28.0, 0.0625, 32.0},
                      {ElemType::kE4M3, 448.0, 0x1p-9, 480.0},
                      {ElemType::kE5M2, 57344.0, 0x1p-16, 65536.0},
                      {ElemType::kInt8, 127.0 / 64, 1.0 / 64, 2.0}};
  for (const Row& r : rows) {
    const Spec s = make_spec(r.t);
    EXPECT_EQ(s.v[size_t(s.max_mag)], r.max_normal) << s.name;
    EXPECT_EQ(s.v[1], r.min_sub) << s.name;
    EXPECT_EQ(s.v.back(), r.next_above_max) << s.name;
    EXPECT_TRUE(std::is_sorted(s.v.begin(), s.v.end())) << s.name;
    EXPECT_EQ(std::adjacent_find(s.v.begin(), s.v.end()), s.v.end()) << s.name << " duplicate";
  }
  const Spec e2m1 = make_spec(ElemType::kE2M1);
  const double want[] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (int k = 0; k < 8; ++k) EXPECT_EQ(e2m1.v[size_t(k)], want[k]) << k;
}

// A few hand-derived answers, to keep the oracle itself honest.
TEST(EncodeOracle, HandDerivedCases) {
  const Spec e4m3 = make_spec(ElemType::kE4M3), e5m2 = make_spec(ElemType::kE5M2);
  const Spec e2m1 = make_spec(ElemType::kE2M1), i8 = make_spec(ElemType::kInt8);
  const auto R = Rounding::kRne, A = Rounding::kHalfAway, Z = Rounding::kTowardZeroTies;
  const auto S = Saturation::kSaturate, N = Saturation::kNanInf;
  // E4M3 400 at scale 1 (NUMERICS.md): rne 384 (0x7C, mantissa 100), half_away 416 (0x7D).
  EXPECT_EQ(oracle(e4m3, 400.0f, 0, R, S), 0x7C);
  EXPECT_EQ(oracle(e4m3, 400.0f, 0, A, S), 0x7D);
  EXPECT_EQ(oracle(e4m3, 400.0f, 0, Z, S), 0x7C);
  // 464 ties 448 (0x7E, even) and 480 (odd): rne keeps 448 even under nan_inf.
  EXPECT_EQ(oracle(e4m3, 464.0f, 0, R, N), 0x7E);
  EXPECT_EQ(oracle(e4m3, 464.0f, 0, A, N), 0x7F);
  EXPECT_EQ(oracle(e4m3, -464.0f, 0, A, N), 0xFF);
  EXPECT_EQ(oracle(e4m3, 464.0f, 0, A, S), 0x7E);
  // E5M2 61440 ties 57344 (odd mantissa 11) and 65536: rne overflows to Inf.
  EXPECT_EQ(oracle(e5m2, 61440.0f, 0, R, N), 0x7C);
  EXPECT_EQ(oracle(e5m2, -61440.0f, 0, R, N), 0xFC);
  EXPECT_EQ(oracle(e5m2, 61440.0f, 0, Z, N), 0x7B);
  // E2M1 at scale 2^1: 5 -> q 2.5 ties 2 (0x4) / 3 (0x5).
  EXPECT_EQ(oracle(e2m1, 5.0f, 1, R, S), 0x4);
  EXPECT_EQ(oracle(e2m1, 5.0f, 1, A, S), 0x5);
  EXPECT_EQ(oracle(e2m1, -0.1f, 0, R, S), 0x8);  // -0
  // INT8: 1.5/64 ties 1 and 2 -> 2 (even); -2.5/64 -> -2 (0xFE); 3/64 at c=-1 -> 6.
  EXPECT_EQ(oracle(i8, 1.5f / 64, 0, R, S), 2);
  EXPECT_EQ(oracle(i8, -2.5f / 64, 0, R, S), 0xFE);
  EXPECT_EQ(oracle(i8, -2.5f / 64, 0, A, S), 0xFD);
  EXPECT_EQ(oracle(i8, 3.0f / 64, -1, R, S), 6);
  EXPECT_EQ(oracle(i8, -0.001f, 0, R, S), 0);
  EXPECT_EQ(oracle(i8, -100.0f, 0, R, S), 0x81);  // -127, never 0x80
}

TEST(Encode, E2M1MatchesOracle) { run_type(ElemType::kE2M1); }
TEST(Encode, E2M3MatchesOracle) { run_type(ElemType::kE2M3); }
TEST(Encode, E3M2MatchesOracle) { run_type(ElemType::kE3M2); }
TEST(Encode, E4M3MatchesOracle) { run_type(ElemType::kE4M3); }
TEST(Encode, E5M2MatchesOracle) { run_type(ElemType::kE5M2); }
TEST(Encode, Int8MatchesOracle) { run_type(ElemType::kInt8); }

// Every tie of every type at scale 1 under every rounding, checked on its own so that a
// failure names the tie directly (these are also inside the per-type sets above).
TEST(Encode, EveryTieAtUnitScale) {
  for (ElemType t : kAllElemTypes) {
    Checker ch(t);
    const Spec& s = ch.spec();
    for (int k = 0; k <= s.max_mag; ++k) {
      const float mid = float((s.v[size_t(k)] + s.v[size_t(k) + 1]) / 2);
      ASSERT_EQ(double(mid), (s.v[size_t(k)] + s.v[size_t(k) + 1]) / 2);
      ch.add(mid, 0);
      ch.add(-mid, 0);
    }
    EXPECT_EQ(ch.run(), 0) << elem_type_name(t);
  }
}

}  // namespace
}  // namespace mxq
