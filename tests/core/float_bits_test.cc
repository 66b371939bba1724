// FP32 <-> BF16 / FP16 bit conversions (num::f32_to_bf16, bf16_to_f32, f32_to_f16, f16_to_f32).
//
// References, none of them mxq code:
//  - ieee_value / ieee_rne below: the IEEE binary16 / bfloat16 value of a bit pattern and
//    round-to-nearest-even of a double onto those formats, written with frexp/ldexp/floor in
//    double arithmetic (every quantity involved is exact in double);
//  - the compiler's own _Float16 conversions (GCC >= 12 on x86-64: libgcc soft-fp or F16C,
//    both IEEE round-to-nearest-even).
// Exhaustive where it is cheap (every 16-bit pattern, every tie and its FP32 neighbours, all
// FP32 patterns in windows around the interesting boundaries), strided over the rest of the
// 2^32 FP32 patterns.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mxq/numerics.h"

namespace mxq {
namespace {

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

struct Fmt {
  const char* name;
  int eb, mb;  // exponent and explicit mantissa bits; total 1 + eb + mb = 16
  int bias() const { return (1 << (eb - 1)) - 1; }
  uint32_t inf() const { return ((1u << eb) - 1u) << mb; }
  uint32_t sign() const { return 1u << (eb + mb); }
  bool is_nan(uint32_t h) const { return (h & (sign() - 1u)) > inf(); }
};
constexpr Fmt kF16{"f16", 5, 10};
constexpr Fmt kBF16{"bf16", 8, 7};

// Value of a 16-bit pattern (NaN patterns give NaN).
double ieee_value(const Fmt& f, uint32_t h) {
  const bool neg = (h & f.sign()) != 0;
  const uint32_t e = (h >> f.mb) & ((1u << f.eb) - 1u), m = h & ((1u << f.mb) - 1u);
  double v = 0;
  if (e == (1u << f.eb) - 1u)
    v = m == 0 ? INFINITY : NAN;
  else if (e == 0)
    v = std::ldexp(double(m), 1 - f.bias() - f.mb);
  else
    v = std::ldexp(double(m + (1u << f.mb)), int(e) - f.bias() - f.mb);
  return neg ? -v : v;
}

// Round-to-nearest-even of a finite double onto the format, overflowing to Inf (the IEEE rule:
// a value at or beyond max + half an ulp of the top binade rounds to Inf, ties included, since
// the Inf pattern continues the grid with an even mantissa).
uint32_t ieee_rne(const Fmt& f, double x) {
  const uint32_t sign = std::signbit(x) ? f.sign() : 0u;
  const double a = std::fabs(x);
  if (a == 0) return sign;
  int e2 = 0;
  std::frexp(a, &e2);  // a = frac * 2^e2, frac in [0.5, 1)
  const int emin = 1 - f.bias();
  const int binade = std::max(e2 - 1, emin);      // subnormals share the emin quantum
  const double n = std::ldexp(a, f.mb - binade);  // a in units of the quantum (exact)
  double k = std::floor(n);
  const double r = n - k;
  if (r > 0.5 || (r == 0.5 && std::fmod(k, 2.0) == 1.0)) k += 1.0;
  // A binade whose biased exponent is all ones (or beyond) is at least 2^(emax+1): Inf.
  if (binade + f.bias() >= int((1u << f.eb) - 1u)) return sign | f.inf();
  // Normal: k includes the implicit bit, so (biased exponent - 1) << mb plus k is the code and
  // a carry out of the mantissa moves into the exponent by plain addition.
  const double code = std::ldexp(double(binade + f.bias() - 1), f.mb) + k;
  if (code >= double(f.inf())) return sign | f.inf();
  return sign | uint32_t(code);
}

uint32_t lib_round(const Fmt& f, float x) {
  return f.mb == 10 ? num::f32_to_f16(x) : num::f32_to_bf16(x);
}

// Checks one FP32 input against the double oracle (and NaN handling); returns true if equal.
bool check_one(const Fmt& f, uint32_t u, int& failures) {
  const float x = f32(u);
  const uint32_t got = lib_round(f, x);
  bool ok = false;
  if (std::isnan(x)) {
    ok = f.is_nan(got) && ((got & f.sign()) != 0) == std::signbit(x);
  } else {
    ok = got == ieee_rne(f, double(x));
  }
  if (!ok && ++failures <= 10)
    ADD_FAILURE() << f.name << " input 0x" << std::hex << u << " (" << double(x) << "): got 0x"
                  << got << ", want 0x" << (std::isnan(x) ? 0u : ieee_rne(f, double(x)));
  return ok;
}

// ---- exhaustive 16-bit round trips ---------------------------------------------------------

TEST(FloatBits, F16ToF32ExhaustiveAndRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float x = num::f16_to_f32(uint16_t(h));
    const double want = ieee_value(kF16, h);
    if (kF16.is_nan(h)) {
      EXPECT_TRUE(std::isnan(x)) << std::hex << h;
      const uint16_t back = num::f32_to_f16(x);
      EXPECT_TRUE(kF16.is_nan(back)) << std::hex << h << " -> " << back;
      EXPECT_EQ(back & 0x8000u, h & 0x8000u) << std::hex << h;
      continue;
    }
    EXPECT_EQ(double(x), want) << std::hex << h;
    EXPECT_EQ(std::signbit(x), std::signbit(want)) << std::hex << h;
    EXPECT_EQ(num::f32_to_f16(x), h) << std::hex << h;
  }
}

TEST(FloatBits, BF16ToF32ExhaustiveAndRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float x = num::bf16_to_f32(uint16_t(h));
    if (kBF16.is_nan(h)) {
      EXPECT_TRUE(std::isnan(x)) << std::hex << h;
      const uint16_t back = num::f32_to_bf16(x);
      EXPECT_TRUE(kBF16.is_nan(back)) << std::hex << h << " -> " << back;
      EXPECT_EQ(back & 0x8000u, h & 0x8000u) << std::hex << h;
      continue;
    }
    const double want = ieee_value(kBF16, h);
    EXPECT_EQ(double(x), want) << std::hex << h;
    EXPECT_EQ(std::signbit(x), std::signbit(want)) << std::hex << h;
    EXPECT_EQ(num::f32_to_bf16(x), h) << std::hex << h;
  }
}

// The oracle itself, on hand-checked points.
TEST(FloatBits, OracleSanity) {
  EXPECT_EQ(ieee_rne(kF16, 1.0), 0x3C00u);
  EXPECT_EQ(ieee_rne(kF16, 65504.0), 0x7BFFu);
  EXPECT_EQ(ieee_rne(kF16, 65519.99), 0x7BFFu);
  EXPECT_EQ(ieee_rne(kF16, 65520.0), 0x7C00u);  // tie with the (even) Inf pattern
  EXPECT_EQ(ieee_rne(kF16, -1e10), 0xFC00u);
  EXPECT_EQ(ieee_rne(kF16, 0x1p-24), 0x0001u);
  EXPECT_EQ(ieee_rne(kF16, 0x1p-25), 0x0000u);    // tie -> even (zero)
  EXPECT_EQ(ieee_rne(kF16, 0x1.8p-24), 0x0002u);  // tie 1 / 2 -> 2
  EXPECT_EQ(ieee_rne(kF16, -0.0), 0x8000u);
  EXPECT_EQ(ieee_rne(kF16, 0x1.ff8p-15), 0x03FFu);  // largest subnormal, 1023 * 2^-24
  EXPECT_EQ(ieee_rne(kF16, 0x1.ffcp-15), 0x0400u);  // tie 1023.5 * 2^-24 -> min normal (even)
  EXPECT_EQ(ieee_rne(kF16, 0x1.ffbp-15), 0x03FFu);
  EXPECT_EQ(ieee_rne(kBF16, 1.0 + 0x1p-8), 0x3F80u);    // tie -> even
  EXPECT_EQ(ieee_rne(kBF16, 1.0 + 0x1.8p-7), 0x3F82u);  // tie 0x3F81 / 0x3F82 -> even
  EXPECT_EQ(ieee_rne(kBF16, double(FLT_MAX)), 0x7F80u);
  EXPECT_EQ(ieee_rne(kBF16, 0x1p-133), 0x0001u);
  EXPECT_EQ(ieee_rne(kBF16, 0x1p-149), 0x0000u);
}

// ---- every tie and its FP32 neighbours -----------------------------------------------------

void check_all_ties(const Fmt& f) {
  int failures = 0;
  size_t n = 0;
  for (uint32_t h = 0; h < f.inf(); ++h) {  // positive finite patterns; h + 1 may be Inf
    const double lo = ieee_value(f, h);
    // The grid continues past max normal: the value Inf's pattern would have.
    const double hi = h + 1 == f.inf() ? std::ldexp(1.0, f.bias() + 1) : ieee_value(f, h + 1);
    const double mid = (lo + hi) / 2;
    const float m = float(mid);
    ASSERT_EQ(double(m), mid) << f.name << " midpoint not representable in FP32";
    for (uint32_t u : {bits(m), bits(m) + 1, bits(m) - 1, bits(float(lo)), bits(float(lo)) + 1})
      for (uint32_t s : {0u, 0x80000000u}) {
        if (u == 0xFFFFFFFFu) continue;  // bits(0.0f) - 1 wraps
        check_one(f, u | s, failures);
        ++n;
      }
  }
  EXPECT_EQ(failures, 0) << f.name << " over " << n << " tie-adjacent inputs";
}

TEST(FloatBits, F32ToF16EveryTie) { check_all_ties(kF16); }
TEST(FloatBits, F32ToBF16EveryTie) { check_all_ties(kBF16); }

// Every FP32 pattern (both signs) in windows around the boundaries where rounding changes
// regime: zero / min subnormal, subnormal / normal, max normal / overflow, Inf / NaN.
TEST(FloatBits, F32ToF16BoundaryWindowsExhaustive) {
  const uint32_t centers[] = {0x00000000u,   // FP32 zero and subnormals
                              0x33000000u,   // 2^-25: half the min f16 subnormal
                              0x33800000u,   // 2^-24: min f16 subnormal
                              0x38800000u,   // 2^-14: min f16 normal
                              0x477FE000u,   // 65504: max f16
                              0x477FF000u,   // 65520: overflow threshold (tie)
                              0x7F800000u};  // FP32 Inf / NaN
  int failures = 0;
  for (uint32_t c : centers)
    for (uint32_t d = 0; d < (1u << 16); ++d)
      for (uint32_t s : {0u, 0x80000000u}) {
        if (c >= d) check_one(kF16, (c - d) | s, failures);
        if (c + d < 0x80000000u) check_one(kF16, (c + d) | s, failures);
      }
  EXPECT_EQ(failures, 0);
}

TEST(FloatBits, F32ToBF16BoundaryWindowsExhaustive) {
  const uint32_t centers[] = {0x00000000u, 0x00800000u, 0x7F7F8000u, 0x7F800000u};
  int failures = 0;
  for (uint32_t c : centers)
    for (uint32_t d = 0; d < (1u << 16); ++d)
      for (uint32_t s : {0u, 0x80000000u}) {
        if (c >= d) check_one(kBF16, (c - d) | s, failures);
        if (c + d < 0x80000000u) check_one(kBF16, (c + d) | s, failures);
      }
  EXPECT_EQ(failures, 0);
}

// ---- strided sweep over all 2^32 FP32 patterns ----------------------------------------------

// 211 is prime (so odd): the walk u = i * 211 mod 2^32 visits distinct patterns, ~20M of them,
// spread over every exponent and both signs.
constexpr uint32_t kStride = 211;
constexpr uint32_t kSamples = uint32_t((uint64_t(1) << 32) / kStride);

TEST(FloatBits, F32ToF16StridedVsOracle) {
  int failures = 0;
  for (uint32_t i = 0, u = 0x1234u; i < kSamples; ++i, u += kStride) check_one(kF16, u, failures);
  EXPECT_EQ(failures, 0);
}

TEST(FloatBits, F32ToBF16StridedVsOracle) {
  int failures = 0;
  for (uint32_t i = 0, u = 0x4321u; i < kSamples; ++i, u += kStride) check_one(kBF16, u, failures);
  EXPECT_EQ(failures, 0);
}

#if defined(__FLT16_MAX__)
uint16_t compiler_f16(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float compiler_f16_to_f32(uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}

// The compiler's conversion is a slow library call: a sparser prime stride (~6.8M samples).
TEST(FloatBits, F32ToF16StridedVsCompiler) {
  constexpr uint32_t kCompilerStride = 631;
  int failures = 0;
  uint32_t u = 0x9876u;
  for (uint32_t i = 0; i < uint32_t((uint64_t(1) << 32) / kCompilerStride);
       ++i, u += kCompilerStride) {
    const float x = f32(u);
    const uint16_t got = num::f32_to_f16(x), want = compiler_f16(x);
    const bool ok = std::isnan(x) ? (kF16.is_nan(got) && kF16.is_nan(want) &&
                                     (got & 0x8000u) == (want & 0x8000u))
                                  : got == want;
    if (!ok && ++failures <= 10)
      ADD_FAILURE() << "input 0x" << std::hex << u << ": mxq 0x" << got << ", compiler 0x" << want;
  }
  EXPECT_EQ(failures, 0);
}

TEST(FloatBits, F16TiesAndF16ToF32VsCompiler) {
  int failures = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = num::f16_to_f32(uint16_t(h)), b = compiler_f16_to_f32(uint16_t(h));
    if (kF16.is_nan(h)) {
      EXPECT_TRUE(std::isnan(a) && std::isnan(b)) << std::hex << h;
      continue;
    }
    EXPECT_EQ(bits(a), bits(b)) << std::hex << h;
    if ((h & 0x7FFFu) >= 0x7C00u) continue;
    // Tie between h and the next pattern up in magnitude, and its FP32 neighbours.
    const double lo = ieee_value(kF16, h & 0x7FFFu);
    const double hi = (h & 0x7FFFu) == 0x7BFFu ? 65536.0 : ieee_value(kF16, (h & 0x7FFFu) + 1);
    const float m = float((lo + hi) / 2) * ((h & 0x8000u) ? -1.0f : 1.0f);
    for (float x : {m, std::nextafter(m, INFINITY), std::nextafter(m, -INFINITY)}) {
      const uint16_t got = num::f32_to_f16(x), want = compiler_f16(x);
      if (got != want && ++failures <= 10)
        ADD_FAILURE() << "input " << double(x) << std::hex << ": mxq 0x" << got << ", compiler 0x"
                      << want;
    }
  }
  EXPECT_EQ(failures, 0);
}
#else
TEST(FloatBits, F32ToF16StridedVsCompiler) { GTEST_SKIP() << "no _Float16 in this compiler"; }
#endif

// Special values named by the contract.
TEST(FloatBits, SpecialValues) {
  EXPECT_EQ(num::f32_to_f16(INFINITY), 0x7C00u);
  EXPECT_EQ(num::f32_to_f16(-INFINITY), 0xFC00u);
  EXPECT_EQ(num::f32_to_f16(-0.0f), 0x8000u);
  EXPECT_EQ(num::f32_to_f16(FLT_MAX), 0x7C00u);
  EXPECT_EQ(num::f32_to_f16(65504.0f), 0x7BFFu);
  EXPECT_EQ(num::f32_to_f16(65520.0f), 0x7C00u);
  EXPECT_EQ(num::f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7BFFu);
  EXPECT_EQ(num::f32_to_bf16(INFINITY), 0x7F80u);
  EXPECT_EQ(num::f32_to_bf16(-INFINITY), 0xFF80u);
  EXPECT_EQ(num::f32_to_bf16(-0.0f), 0x8000u);
  EXPECT_EQ(num::f32_to_bf16(FLT_MAX), 0x7F80u);
  EXPECT_EQ(num::f32_to_bf16(-FLT_MAX), 0xFF80u);
  for (uint32_t nan : {0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu, 0xFF800001u, 0xFFC00000u, 0xFFFFFFFFu,
                       0x7F802000u, 0x7F810000u}) {
    const uint16_t h = num::f32_to_f16(f32(nan)), b = num::f32_to_bf16(f32(nan));
    EXPECT_TRUE(kF16.is_nan(h)) << std::hex << nan << " -> " << h;
    EXPECT_TRUE(kBF16.is_nan(b)) << std::hex << nan << " -> " << b;
    EXPECT_EQ(uint32_t(h >> 15), nan >> 31) << std::hex << nan;
    EXPECT_EQ(uint32_t(b >> 15), nan >> 31) << std::hex << nan;
  }
}

}  // namespace
}  // namespace mxq
