// Property tests on random blocks, through num::quantize_block and through the tensor API
// (mxq::quantize / mxq::dequantize): error bounds, re-quantization stability, monotonicity
// and sign symmetry. Every expected quantity is derived here in double arithmetic from the
// format parameters (own table below); nothing is a recorded mxq output.
//
// Notation: a block with E8M0 scale s has c = s - 127; the element-domain value of a lane x is
// q = x * 2^-c (exact in double); the decoded element value is d, the dequantized value d * 2^c.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mxq/formats.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "mxq/quantize.h"

namespace mxq {
namespace {

constexpr int kN = kBlockSize;
using Block = std::array<float, kN>;

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

// The element formats as the OCP MX spec defines them (NUMERICS.md's table).
struct Fmt {
  bool is_int;
  int emin;           // binade of the smallest normal (INT8: unused)
  int emax;           // binade of the largest normal
  int mbits;          // explicit mantissa bits
  double max_normal;  // largest finite magnitude
  unsigned sign_mask;
};
Fmt fmt(ElemType t) {
  switch (t) {
    case ElemType::kE2M1:
      return {false, 0, 2, 1, 6.0, 0x08};
    case ElemType::kE2M3:
      return {false, 0, 2, 3, 7.5, 0x20};
    case ElemType::kE3M2:
      return {false, -2, 4, 2, 28.0, 0x20};
    case ElemType::kE4M3:
      return {false, -6, 8, 3, 448.0, 0x80};
    case ElemType::kE5M2:
      return {false, -14, 15, 2, 57344.0, 0x80};
    case ElemType::kInt8:
      return {true, 0, 0, 6, 127.0 / 64, 0x80};
  }
  return {};
}

// Half the element quantum at element-domain magnitude a (0 <= a <= max normal): the largest
// error of round-to-nearest there, whatever the tie rule.
double half_quantum(const Fmt& f, double a) {
  if (f.is_int) return 0x1p-7;  // fixed point, quantum 1/64
  int e2 = 0;
  if (a > 0) std::frexp(a, &e2);  // a in [2^(e2-1), 2^e2)
  const int binade = a > 0 ? std::max(e2 - 1, f.emin) : f.emin;
  return std::ldexp(1.0, binade - f.mbits - 1);
}

// Largest |q| any lane can have under the floor rule, exclusive: floor picks
// c = E(amax) - emax (amax's FP32 exponent), so amax / 2^c = 1.m * 2^emax < 2^(emax+1); a clamp
// at c = -127 only makes it smaller. A lane beyond max normal saturates to max normal, so its
// error is below 2^(emax+1) - max_normal, in element units. That exceeds half a quantum of the
// top binade for every type (FP4: 2 vs 1, E2M3: 0.5 vs 0.25, E3M2: 4 vs 2, E4M3: 64 vs 16 since
// 480 is the NaN code, E5M2: 8192 vs 4096, INT8: 1/64 vs 1/128), so it is the floor rule's
// worst-case error: every lane of a floor block is within (2^(emax+1) - max_normal) * 2^c.
double floor_saturation_bound(const Fmt& f) { return std::ldexp(1.0, f.emax + 1) - f.max_normal; }

std::string describe(const float* x, int n) {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < n; ++i) os << (i ? " " : "") << std::hexfloat << x[i];
  os << "]";
  return os.str();
}

struct Fails {
  int n = 0;
  template <typename Msg>
  void check(bool ok, const Msg& msg) {
    if (!ok && ++n <= 12) ADD_FAILURE() << msg();
  }
};

// ---- random blocks ------------------------------------------------------------------------

// Element grid (magnitudes, ascending) computed from the format parameters, plus the virtual
// value just above max normal, for tie-heavy blocks.
std::vector<double> element_grid(const Fmt& f) {
  std::vector<double> g;
  if (f.is_int) {
    for (int k = 0; k <= 128; ++k) g.push_back(k / 64.0);
    return g;
  }
  for (int m = 0; m < (1 << f.mbits); ++m) g.push_back(std::ldexp(double(m), f.emin - f.mbits));
  for (int e = f.emin; e <= f.emax + 1; ++e)
    for (int m = 0; m < (1 << f.mbits); ++m)
      g.push_back(std::ldexp(double(m + (1 << f.mbits)), e - f.mbits));
  std::sort(g.begin(), g.end());
  const auto above = std::upper_bound(g.begin(), g.end(), f.max_normal);
  g.erase(above + 1, g.end());  // keep the first value above max normal
  return g;
}

// Block kinds, chosen at random: wide and narrow dynamic range, tie-heavy grids, all FP32
// subnormal, signed zeros, huge-with-tiny, BF16- and FP16-representable values.
// `max_exp` bounds the FP32 exponent of generated values.
Block random_block(std::mt19937& rng, ElemType t, int max_exp) {
  const Fmt f = fmt(t);
  auto U = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto sign = [&](double v) { return (rng() & 1) ? -v : v; };
  auto mant = [&] { return 1.0 + std::ldexp(double(rng() & 0x7FFFFF), -23); };
  Block x{};
  const int kind = U(0, 8);
  switch (kind) {
    case 0:
    case 1: {  // wide (0) or narrow (1) range around a random exponent
      const int e0 = U(-155, max_exp), spread = kind == 0 ? U(0, 40) : U(0, 3);
      for (float& v : x) v = float(sign(std::ldexp(mant(), e0 - U(0, spread))));
      break;
    }
    case 2: {  // element-grid values and midpoints at a scale the block will get
      static thread_local std::vector<double> grids[6];
      std::vector<double>& g = grids[int(t)];
      if (g.empty()) g = element_grid(f);
      const int c = U(-127, std::min(127, max_exp - f.emax - 1));
      for (float& v : x) {
        const size_t k = size_t(U(0, int(g.size()) - 2));
        double q = g[k];
        const int how = U(0, 3);
        if (how == 1) q = (g[k] + g[k + 1]) / 2;  // tie
        if (how == 2) q = g[k] + (g[k + 1] - g[k]) * std::ldexp(double(rng() & 0xFFFF), -16);
        v = float(sign(std::ldexp(q, c)));  // may round to FP32 (subnormals): still valid input
      }
      x[size_t(U(0, kN - 1))] = float(sign(std::ldexp(f.max_normal, c)));  // pins the scale
      break;
    }
    case 3:  // all FP32 subnormal
      for (float& v : x)
        v = f32(((uint32_t(rng()) & 0x7FFFFFu) >> U(0, 22)) | (uint32_t(rng()) & 0x80000000u));
      break;
    case 4: {  // signed zeros mixed with values, sometimes all zero
      const int e0 = U(-150, max_exp);
      const bool all_zero = U(0, 5) == 0;
      for (float& v : x)
        v = (all_zero || U(0, 2) == 0) ? ((rng() & 1) ? -0.0f : 0.0f)
                                       : float(sign(std::ldexp(mant(), e0 - U(0, 10))));
      break;
    }
    case 5: {  // huge and tiny in one block
      const int hi = U(-20, max_exp);
      for (int i = 0; i < kN; ++i)
        x[size_t(i)] = float(sign(std::ldexp(mant(), i % 2 ? hi - U(0, 2) : U(-155, -100))));
      break;
    }
    case 6: {  // BF16-representable
      const int e0 = U(-140, max_exp);
      for (float& v : x)
        v = f32(bits(float(sign(std::ldexp(mant(), e0 - U(0, 20))))) & 0xFFFF0000u);
      break;
    }
    case 7: {  // FP16-representable (any finite FP16 pattern)
      for (float& v : x) {
        uint16_t h = uint16_t(rng());
        if ((h & 0x7C00u) == 0x7C00u) h = uint16_t(h & 0xBFFFu);
        v = num::f16_to_f32(h);
      }
      break;
    }
    default: {  // INT8-/FP4-style: small integers over a power of two
      const int e0 = U(-120, std::min(max_exp, 100));
      for (float& v : x) v = float(sign(std::ldexp(double(U(0, 255)), e0)));
      break;
    }
  }
  return x;
}

struct Quantized {
  uint8_t scale = 0;
  std::array<uint8_t, kN> codes{};
  std::array<float, kN> deq{};
};

Quantized quantize_ref(ElemType t, const num::BlockRules& rules, const Block& x) {
  Quantized out;
  uint32_t xb[kN];
  for (int i = 0; i < kN; ++i) xb[i] = bits(x[size_t(i)]);
  out.scale = num::quantize_block(t, rules, xb, kN, out.codes.data());
  for (int i = 0; i < kN; ++i)
    out.deq[size_t(i)] = num::dequantize_elem(t, out.codes[size_t(i)], out.scale);
  return out;
}

// ---- the properties -------------------------------------------------------------------------

// (a) error bounds and scale-rule tightness, for a block and its dequantized values.
void check_error_bound(ElemType t, ScaleRule rule, const Block& x, const Quantized& qz,
                       Fails& fails) {
  const Fmt f = fmt(t);
  const auto ctx = [&] {
    return std::string(elem_type_name(t)) + " " + scale_rule_name(rule) + " scale " +
           std::to_string(qz.scale) + " block " + describe(x.data(), kN);
  };
  fails.check(qz.scale != num::kScaleNaN, [&] { return "finite block got scale 0xFF: " + ctx(); });
  if (qz.scale == num::kScaleNaN) return;
  const int c = int(qz.scale) - 127;
  double amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(double(v)));
  const double q_amax = std::ldexp(amax, -c);
  for (int i = 0; i < kN; ++i) {
    const double xi = double(x[size_t(i)]), di = double(qz.deq[size_t(i)]);
    const double q = std::ldexp(xi, -c), err = std::fabs(xi - di);
    fails.check(std::isfinite(di), [&] {
      return "lane " + std::to_string(i) +
             " dequantizes to "
             "non-finite: " +
             ctx();
    });
    if (std::fabs(q) <= f.max_normal) {
      const double bound = std::ldexp(half_quantum(f, std::fabs(q)), c);
      fails.check(err <= bound, [&] {
        std::ostringstream os;
        os << "lane " << i << " x=" << std::hexfloat << xi << " deq=" << di << " err=" << err
           << " > half quantum " << bound << ": " << ctx();
        return os.str();
      });
    } else {  // beyond max normal: saturates to exactly +-max normal
      fails.check(di == std::copysign(std::ldexp(f.max_normal, c), xi), [&] {
        std::ostringstream os;
        os << "lane " << i << " x=" << std::hexfloat << xi << " beyond max normal gave " << di
           << ": " << ctx();
        return os.str();
      });
    }
    // Sign: kept, including on zero, except that INT8's only zero is +0.
    const bool want_neg = (f.is_int && di == 0) ? false : std::signbit(xi);
    fails.check(std::signbit(di) == want_neg,
                [&] { return "lane " + std::to_string(i) + " sign lost: " + ctx(); });
    if (rule == ScaleRule::kFloor) {
      const double sat = std::ldexp(floor_saturation_bound(f), c);
      fails.check(err < sat, [&] {
        return "lane " + std::to_string(i) + " error beyond the floor bound: " + ctx();
      });
    }
  }
  if (amax == 0) {
    fails.check(qz.scale == 0, [&] { return "all-zero block must get scale 0: " + ctx(); });
    return;
  }
  const double top = std::ldexp(1.0, f.emax);
  switch (rule) {
    case ScaleRule::kFloor:
      // amax / 2^c = 1.m * 2^emax, unless the scale was clamped at 2^-127.
      fails.check(q_amax < 2 * top && (q_amax >= top || c == -127),
                  [&] { return "floor scale is not E(amax) - emax: " + ctx(); });
      break;
    case ScaleRule::kRceil:
    case ScaleRule::kRoundUp:
      // The smallest power of two with amax / 2^c <= max normal, up to the FP32 rounding of
      // the quotient amax / max_normal (relative 2^-24); round_up maps subnormal quotients to
      // code 1, so the lower bound holds from c = -125 on (c = -127 for rceil).
      fails.check(q_amax <= f.max_normal * (1 + 0x1p-22),
                  [&] { return "scale too small for amax: " + ctx(); });
      fails.check(
          q_amax > f.max_normal / 2 || c == -127 || (rule == ScaleRule::kRoundUp && c == -126),
          [&] { return "scale larger than needed: " + ctx(); });
      break;
    default:
      break;
  }
}

// (b) quantize(dequantize(quantize(x))): floor reproduces the scale and the codes; rceil and
// round_up reproduce the dequantized values bit for bit, and the scale and codes too except
// in two cases derived in the test below; one more round trip changes nothing in any rule.
void check_requantization(ElemType t, const num::BlockRules& rules, const Block& x,
                          const Quantized& q1, Fails& fails) {
  if (q1.scale == num::kScaleNaN) return;
  Block y{};
  for (int i = 0; i < kN; ++i) y[size_t(i)] = q1.deq[size_t(i)];
  for (float v : y)
    if (!std::isfinite(v)) return;  // the property needs finite dequantized values
  const Quantized q2 = quantize_ref(t, rules, y);
  const auto ctx = [&] {
    return std::string(elem_type_name(t)) + " " + scale_rule_name(rules.scale_rule) + " " +
           rounding_name(rules.rounding) + " scales " + std::to_string(q1.scale) + " -> " +
           std::to_string(q2.scale) + " block " + describe(x.data(), kN);
  };
  bool same_values = true;
  for (int i = 0; i < kN; ++i)
    same_values = same_values && bits(q2.deq[size_t(i)]) == bits(q1.deq[size_t(i)]);
  fails.check(same_values, [&] { return "re-quantization changed values: " + ctx(); });
  if (rules.scale_rule == ScaleRule::kFloor) {
    fails.check(q2.scale == q1.scale && q2.codes == q1.codes,
                [&] { return "floor re-quantization changed scale or codes: " + ctx(); });
  } else {
    // rceil: the scale is the smallest power of two with amax / 2^c <= max normal. If the
    // largest decoded magnitude M is exactly max_normal / 2 (x's amax was just above it and
    // rounded down onto it), the dequantized block needs one power of two less.
    // round_up: same, and a block whose quotient was subnormal got code 1; if all its
    // elements rounded to zero the dequantized block is all zero and gets code 0.
    const Fmt f = fmt(t);
    double m = 0;
    for (int i = 0; i < kN; ++i)
      m = std::max(m, std::fabs(double(num::decode_elem(t, q1.codes[size_t(i)]))));
    const bool ok = (q2.scale == q1.scale && q2.codes == q1.codes) ||
                    (q2.scale + 1 == q1.scale && m == f.max_normal / 2) ||
                    (q2.scale == 0 && m == 0);
    fails.check(ok, [&] { return "unexpected scale / code change: " + ctx(); });
  }
  const Quantized q3 = quantize_ref(t, rules, [&] {
    Block z{};
    for (int i = 0; i < kN; ++i) z[size_t(i)] = q2.deq[size_t(i)];
    return z;
  }());
  fails.check(q3.scale == q2.scale && q3.codes == q2.codes,
              [&] { return "second re-quantization is not a fixed point: " + ctx(); });
}

// (c) sorted inputs give non-decreasing decoded values.
void check_monotone(ElemType t, const num::BlockRules& rules, const Block& x, Fails& fails) {
  Block s = x;
  std::sort(s.begin(), s.end());
  const Quantized qz = quantize_ref(t, rules, s);
  for (int i = 1; i < kN; ++i)
    fails.check(qz.deq[size_t(i - 1)] <= qz.deq[size_t(i)], [&] {
      std::ostringstream os;
      os << elem_type_name(t) << " " << scale_rule_name(rules.scale_rule) << " "
         << rounding_name(rules.rounding) << ": sorted lanes " << i - 1 << "," << i << " decode to "
         << std::hexfloat << qz.deq[size_t(i - 1)] << " > " << qz.deq[size_t(i)] << " block "
         << describe(s.data(), kN);
      return os.str();
    });
}

// (d) quantize(-x) is quantize(x) with the sign flipped: sign bit for FP, negation for INT8.
void check_sign_symmetry(ElemType t, const num::BlockRules& rules, const Block& x,
                         const Quantized& qz, Fails& fails) {
  Block n{};
  for (int i = 0; i < kN; ++i) n[size_t(i)] = f32(bits(x[size_t(i)]) ^ 0x80000000u);
  const Quantized qn = quantize_ref(t, rules, n);
  const Fmt f = fmt(t);
  bool ok = qn.scale == qz.scale;
  for (int i = 0; i < kN; ++i) {
    const uint8_t a = qz.codes[size_t(i)], b = qn.codes[size_t(i)];
    ok = ok && (f.is_int ? int(int8_t(b)) == -int(int8_t(a)) : b == (a ^ f.sign_mask));
  }
  fails.check(ok, [&] {
    return std::string(elem_type_name(t)) + " " + scale_rule_name(rules.scale_rule) + " " +
           rounding_name(rules.rounding) + ": quantize(-x) is not -quantize(x) for block " +
           describe(x.data(), kN);
  });
}

constexpr ScaleRule kStableRules[] = {ScaleRule::kFloor, ScaleRule::kRceil, ScaleRule::kRoundUp};

// Runs every property over `blocks` random blocks of type t, every rounding, the three rules.
void run_block_properties(ElemType t, int blocks) {
  std::mt19937 rng(20240601u + uint32_t(t));
  Fails fails;
  int checked = 0;
  for (int b = 0; b < blocks; ++b) {
    // floor blocks may reach FLT_MAX; rceil / round_up dequantize values up to ~2 amax, which
    // overflow FP32 near FLT_MAX (not a bug: the product is beyond FP32), so they stay below.
    const Block x_full = random_block(rng, t, 127);
    const Block x_safe = random_block(rng, t, 124);
    for (ScaleRule rule : kStableRules)
      for (Rounding rnd : kAllRoundings) {
        const num::BlockRules rules{rule, rnd, Saturation::kSaturate, false};
        const Block& x = rule == ScaleRule::kFloor ? x_full : x_safe;
        const Quantized qz = quantize_ref(t, rules, x);
        check_error_bound(t, rule, x, qz, fails);
        check_requantization(t, rules, x, qz, fails);
        check_monotone(t, rules, x, fails);
        check_sign_symmetry(t, rules, x, qz, fails);
        ++checked;
      }
  }
  EXPECT_EQ(fails.n, 0) << elem_type_name(t) << ": failures over " << checked << " blocks";
}

TEST(BlockProperties, E2M1) { run_block_properties(ElemType::kE2M1, 4000); }
TEST(BlockProperties, E2M3) { run_block_properties(ElemType::kE2M3, 4000); }
TEST(BlockProperties, E3M2) { run_block_properties(ElemType::kE3M2, 4000); }
TEST(BlockProperties, E4M3) { run_block_properties(ElemType::kE4M3, 4000); }
TEST(BlockProperties, E5M2) { run_block_properties(ElemType::kE5M2, 4000); }
TEST(BlockProperties, Int8) { run_block_properties(ElemType::kInt8, 4000); }

// The nan_inf saturation keeps the in-range properties: lanes within max normal obey the same
// bound, and lanes beyond it become NaN (E4M3) / Inf (E5M2) of the right sign, never a value.
TEST(BlockProperties, NanInfSaturationOnlyAffectsOverflowingLanes) {
  std::mt19937 rng(99);
  Fails fails;
  for (ElemType t : {ElemType::kE4M3, ElemType::kE5M2}) {
    const Fmt f = fmt(t);
    for (int b = 0; b < 3000; ++b) {
      const Block x = random_block(rng, t, 127);
      for (Rounding rnd : kAllRoundings) {
        const num::BlockRules rules{ScaleRule::kFloor, rnd, Saturation::kNanInf, false};
        const Quantized qz = quantize_ref(t, rules, x);
        const int c = int(qz.scale) - 127;
        for (int i = 0; i < kN; ++i) {
          const double xi = double(x[size_t(i)]), q = std::ldexp(xi, -c);
          const double di = double(qz.deq[size_t(i)]);
          // Overflow iff |q| passes the midpoint between max normal and the next grid value,
          // max + the top binade's quantum (480 for E4M3, 65536 for E5M2). The tie itself is
          // the rounding's business (encode_test covers it) and is skipped here.
          const double mid = f.max_normal + std::ldexp(1.0, f.emax - f.mbits - 1);
          if (std::fabs(q) < mid) {
            fails.check(
                std::isfinite(di) &&
                    std::fabs(xi - di) <=
                        std::ldexp(half_quantum(f, std::min(std::fabs(q), f.max_normal)), c),
                [&] {
                  return std::string(elem_type_name(t)) +
                         " in-range lane broken: " + describe(x.data(), kN);
                });
          } else if (std::fabs(q) > mid) {
            fails.check(t == ElemType::kE4M3 ? std::isnan(di) : std::isinf(di), [&] {
              return std::string(elem_type_name(t)) +
                     " overflow lane not NaN/Inf: " + describe(x.data(), kN);
            });
            fails.check(std::signbit(di) == std::signbit(xi), [&] {
              return std::string("overflow sign lost: ") + describe(x.data(), kN);
            });
          }
        }
      }
    }
  }
  EXPECT_EQ(fails.n, 0);
}

// A hand-derived case showing why (b) can only promise values, not codes, under rceil:
// MXFP4 [3.1]: 3.1 / 6 = 0.517 -> scale 2^0, element 3.1 rounds to 3 (code 0x5). The
// dequantized 3 has 3 / 6 = 0.5 -> scale 2^-1 and element 6 (code 0x7). Same value 3.
TEST(BlockProperties, RceilRequantizationMayLowerTheScaleButKeepsValues) {
  Block x{};
  x[0] = 3.1f;
  const num::BlockRules rules{ScaleRule::kRceil, Rounding::kRne, Saturation::kSaturate, false};
  const Quantized q1 = quantize_ref(ElemType::kE2M1, rules, x);
  EXPECT_EQ(q1.scale, 127);
  EXPECT_EQ(q1.codes[0], 0x5);
  EXPECT_EQ(q1.deq[0], 3.0f);
  Block y{};
  y[0] = q1.deq[0];
  const Quantized q2 = quantize_ref(ElemType::kE2M1, rules, y);
  EXPECT_EQ(q2.scale, 126);
  EXPECT_EQ(q2.codes[0], 0x7);
  EXPECT_EQ(q2.deq[0], 3.0f);
  // Under floor the same block is stable: E(3.1) - 2 = -1 -> 2^-1, 6.2 -> 6 (code 0x7).
  const num::BlockRules fl{ScaleRule::kFloor, Rounding::kRne, Saturation::kSaturate, false};
  const Quantized f1 = quantize_ref(ElemType::kE2M1, fl, x);
  EXPECT_EQ(f1.scale, 126);
  EXPECT_EQ(f1.codes[0], 0x7);
  const Quantized f2 = quantize_ref(ElemType::kE2M1, fl, [&] {
    Block z{};
    z[0] = f1.deq[0];
    return z;
  }());
  EXPECT_EQ(f2.scale, f1.scale);
  EXPECT_EQ(f2.codes, f1.codes);
}

// ---- through the tensor API ------------------------------------------------------------------

constexpr int64_t kRows = 48, kBlocksPerRow = 8, kK = kBlocksPerRow * kN;

struct TensorCase {
  std::vector<Block> blocks;  // row-major: row r holds blocks [r * kBlocksPerRow, ...)
  std::vector<float> flat() const {
    std::vector<float> v;
    v.reserve(blocks.size() * kN);
    for (const Block& b : blocks) v.insert(v.end(), b.begin(), b.end());
    return v;
  }
};

TensorCase random_tensor(std::mt19937& rng, ElemType t, int max_exp) {
  TensorCase tc;
  for (int64_t i = 0; i < kRows * kBlocksPerRow; ++i)
    tc.blocks.push_back(random_block(rng, t, max_exp));
  return tc;
}

// Unpacks block b of a quantized matrix into a Quantized, with the tensor API's dequantized
// values `deq` (the whole matrix) for its lanes.
Quantized block_of(const MXMatrix& m, const std::vector<float>& deq, int64_t b) {
  Quantized q;
  const int64_t bb = packed_bytes(m.elem, kN);
  EXPECT_TRUE(unpack_codes(m.elem, m.packed.data() + b * bb, kN, q.codes.data()).ok());
  q.scale = m.scales[size_t(b)];
  for (int i = 0; i < kN; ++i) q.deq[size_t(i)] = deq[size_t(b * kN + i)];
  return q;
}

void run_tensor_properties(ElemType t) {
  std::mt19937 rng(777u + uint32_t(t));
  Fails fails;
  for (ScaleRule rule : kStableRules)
    for (Rounding rnd : kAllRoundings) {
      const TensorCase tc = random_tensor(rng, t, rule == ScaleRule::kFloor ? 127 : 124);
      QuantOptions o;
      o.elem = t;
      o.scale_rule = rule;
      o.rounding = rnd;
      const std::vector<float> in = tc.flat();
      const StatusOr<MXMatrix> m = quantize(in, kRows, kK, o);
      ASSERT_TRUE(m.ok()) << m.status().to_string();
      const StatusOr<std::vector<float>> deq = dequantize(m.value());
      ASSERT_TRUE(deq.ok()) << deq.status().to_string();
      const num::BlockRules rules{rule, rnd, Saturation::kSaturate, false};
      for (int64_t b = 0; b < kRows * kBlocksPerRow; ++b) {
        const Block& x = tc.blocks[size_t(b)];
        const Quantized q = block_of(m.value(), deq.value(), b);
        // Same bytes as the scalar block quantizer, same values as the scalar decoder.
        const Quantized ref = quantize_ref(t, rules, x);
        bool same = ref.scale == q.scale && ref.codes == q.codes;
        for (int i = 0; i < kN; ++i)
          same = same && bits(ref.deq[size_t(i)]) == bits(q.deq[size_t(i)]);
        fails.check(same, [&] {
          return "tensor API differs from quantize_block: " + describe(x.data(), kN);
        });
        check_error_bound(t, rule, x, q, fails);
      }
      // (b) through the tensor API.
      const StatusOr<MXMatrix> m2 = quantize(deq.value(), kRows, kK, o);
      ASSERT_TRUE(m2.ok());
      const StatusOr<std::vector<float>> deq2 = dequantize(m2.value());
      ASSERT_TRUE(deq2.ok());
      bool same_values = true;
      for (size_t i = 0; i < deq2.value().size(); ++i)
        same_values = same_values && bits(deq2.value()[i]) == bits(deq.value()[i]);
      EXPECT_TRUE(same_values) << elem_type_name(t) << " " << scale_rule_name(rule);
      if (rule == ScaleRule::kFloor) {
        EXPECT_EQ(m2.value().scales, m.value().scales) << elem_type_name(t);
        EXPECT_EQ(m2.value().packed, m.value().packed) << elem_type_name(t);
      }
      // (d) through the tensor API: negated input, flipped signs.
      std::vector<float> neg = in;
      for (float& v : neg) v = f32(bits(v) ^ 0x80000000u);
      const StatusOr<MXMatrix> mn = quantize(neg, kRows, kK, o);
      ASSERT_TRUE(mn.ok());
      EXPECT_EQ(mn.value().scales, m.value().scales) << elem_type_name(t);
      const StatusOr<std::vector<float>> deqn = dequantize(mn.value());
      ASSERT_TRUE(deqn.ok());
      bool mirrored = true;
      for (size_t i = 0; i < in.size(); ++i) {
        const float a = deq.value()[i], b = deqn.value()[i];
        mirrored = mirrored &&
                   (fmt(t).is_int && a == 0 ? bits(b) == 0 : bits(b) == (bits(a) ^ 0x80000000u));
      }
      EXPECT_TRUE(mirrored) << elem_type_name(t) << " " << scale_rule_name(rule);
    }
  EXPECT_EQ(fails.n, 0) << elem_type_name(t);
}

TEST(TensorProperties, E2M1) { run_tensor_properties(ElemType::kE2M1); }
TEST(TensorProperties, E2M3) { run_tensor_properties(ElemType::kE2M3); }
TEST(TensorProperties, E3M2) { run_tensor_properties(ElemType::kE3M2); }
TEST(TensorProperties, E4M3) { run_tensor_properties(ElemType::kE4M3); }
TEST(TensorProperties, E5M2) { run_tensor_properties(ElemType::kE5M2); }
TEST(TensorProperties, Int8) { run_tensor_properties(ElemType::kInt8); }

// BF16 and FP16 inputs: the tensor API widens them exactly, so quantizing the 16-bit tensor
// gives the bytes of quantizing its FP32 widening, and the error bound holds against the
// widened values. The 16-bit widening here is independent of mxq (BF16: bits << 16; FP16:
// sign / exponent / mantissa fields through ldexp).
float f16_value(uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const double v = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(m + 1024), e - 25);
  return float((h & 0x8000u) ? -v : v);
}

TEST(TensorProperties, Bf16AndF16Inputs) {
  std::mt19937 rng(4242);
  Fails fails;
  for (ElemType t : kAllElemTypes)
    for (ScaleRule rule : kStableRules)
      for (DType d : {DType::kBF16, DType::kF16}) {
        // 16-bit patterns: BF16 from random blocks rounded down to BF16; FP16 any finite one.
        std::vector<uint16_t> h(size_t(kRows * kK));
        std::vector<float> wide(h.size());
        for (int64_t b = 0; b < kRows * kBlocksPerRow; ++b) {
          const Block x = random_block(rng, t, 124);
          for (int i = 0; i < kN; ++i) {
            const size_t j = size_t(b * kN + i);
            if (d == DType::kBF16) {
              h[j] = uint16_t(bits(x[size_t(i)]) >> 16);
              wide[j] = f32(uint32_t(h[j]) << 16);
            } else {
              h[j] = uint16_t(rng());
              if ((h[j] & 0x7C00u) == 0x7C00u) h[j] = uint16_t(h[j] & 0xBFFFu);
              wide[j] = f16_value(h[j]);
            }
          }
        }
        QuantOptions o;
        o.elem = t;
        o.scale_rule = rule;
        MXMatrix m16;
        m16.elem = t;
        m16.rows = kRows;
        m16.k = kK;
        m16.packed.resize(size_t(kRows * packed_bytes(t, kK)));
        m16.scales.resize(size_t(kRows * kBlocksPerRow));
        ASSERT_TRUE(quantize(h.data(), d, kRows, kK, o, m16.packed.data(), m16.scales.data()).ok());
        const StatusOr<MXMatrix> m32 = quantize(wide, kRows, kK, o);
        ASSERT_TRUE(m32.ok());
        EXPECT_EQ(m16.scales, m32.value().scales) << elem_type_name(t) << " " << dtype_name(d);
        EXPECT_EQ(m16.packed, m32.value().packed) << elem_type_name(t) << " " << dtype_name(d);
        const StatusOr<std::vector<float>> deq = dequantize(m16);
        ASSERT_TRUE(deq.ok());
        for (int64_t b = 0; b < kRows * kBlocksPerRow; ++b) {
          Block x{};
          for (int i = 0; i < kN; ++i) x[size_t(i)] = wide[size_t(b * kN + i)];
          check_error_bound(t, rule, x, block_of(m16, deq.value(), b), fails);
        }
        // Dequantizing to BF16 / FP16 rounds the exact FP32 values to nearest even.
        std::vector<uint16_t> out16(h.size());
        ASSERT_TRUE(
            dequantize(m16.packed.data(), m16.scales.data(), t, kRows, kK, d, out16.data()).ok());
        for (size_t j = 0; j < out16.size(); ++j) {
          const uint16_t want = d == DType::kBF16 ? num::f32_to_bf16(deq.value()[j])
                                                  : num::f32_to_f16(deq.value()[j]);
          fails.check(out16[j] == want, [&] {
            return std::string(elem_type_name(t)) + " " + dtype_name(d) + " output " +
                   std::to_string(j) + " not the RNE of the FP32 dequantization";
          });
        }
      }
  EXPECT_EQ(fails.n, 0);
}

}  // namespace
}  // namespace mxq
