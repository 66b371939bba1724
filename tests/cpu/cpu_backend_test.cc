// The `cpu` backend against cpu-reference (float64), plus the properties the reference cannot
// show: bitwise independence from the thread count, the batch, and the ISA path (scalar, AVX2,
// AVX-512VL: a path this CPU lacks falls back to the next one down, so it is compared too but
// proves nothing new there).
//
// Tolerances (why each number):
//  - Linear, per element: |y - y_ref| <= dot_tol(format, K) * sum_k |xq_k * w_k| + output
//    rounding. The kernel's FP32 result for one element passes each term through at most
//    K/32 + 7 roundings (1 product, 1 block fma, one fma per block, 4 horizontal adds, the bias
//    add; E2M1: K/16 + 5, two fmas per block into the lane), so the standard bound
//    gamma_n = n * u with u = 2^-24 applies; the reference itself is
//    float64, rounded once to FP32 (half an ulp of |y|, covered by the one extra rounding).
//    BF16/F16 outputs: both sides round the FP32 value once more; they may land one output ulp
//    apart (ulp of the larger magnitude; F16's subnormal ulp 2^-24 as the floor).
//  - Linear, norm-wise: ||y - y_ref|| <= tol * ||y_ref|| with tol = 1e-5 for F32 (a few
//    hundred times u: a weak check next to the per-element one, but blind to cancellation
//    in single elements), 2^-8 for BF16 and 2^-11 for F16 (at most one output ulp per element).
//  - MoE, per token norm-wise: the FP32 gate/up result differs from the float64 one by ~1e-7
//    relative; rounding the intermediate to BF16 then lands on a neighbour for ~1e-4 of the
//    elements (2^-8 relative each), and with the quantizing keys such a neighbour can move an
//    element to the next FP8 / FP4 code (up to 2^-3 / 2^-1 relative, rarely). kMoETol below is
//    what those rare flips can cost per token, plus the output rounding; a wrong layout, bias,
//    routing weight or combine order costs O(1).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/backends.h"
#include "cpu/common/act_quant.h"
#include "cpu/fast/cpu_backend.h"
#include "cpu/fast/mx_gemv.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "mxq/quantize.h"
#include "cpu_test_util.h"

namespace mxq {
namespace {

using namespace cputest;
using cpu::fast::CpuBackend;
using cpu::fast::CpuBackendOptions;
using cpu::fast::Isa;

// ---- linear -----------------------------------------------------------------------------------

struct LinearCase {
  Problem p;
  Weight w;
  Dense x, bias;
  float input_scale = 0.05f;
  LinearWeights weights() const {
    return {w.view(), p.bias ? bias.view() : DenseView{}, input_scale};
  }
};

LinearCase make_linear(ElemType t, ActKey a, int64_t m, int64_t n, int64_t k, bool bias, DType out,
                       uint32_t seed) {
  LinearCase c;
  c.p = Problem::linear(t, a, m, n, k, bias);
  c.p.out = out;
  c.w = make_weight(t, 1, n, k, seed, 0.1f);
  c.x = Dense(act_input_dtype(a), m, k, randn(size_t(m * k), seed + 1));
  c.bias = Dense(seed % 2 ? DType::kBF16 : DType::kF32, 1, n, randn(size_t(n), seed + 2, 0.5f));
  return c;
}

Dense run_linear(const Backend& b, const LinearCase& c) {
  auto prepared = b.prepare_linear(c.p, c.weights());
  EXPECT_TRUE(prepared.ok()) << prepared.status().to_string();
  Dense y(c.p.out, c.p.m, c.p.n);
  const Status s = b.run_linear(c.p, *prepared.value(), c.x.view(), y.mut());
  EXPECT_TRUE(s.ok()) << s.to_string();
  return y;
}

// Checks y against cpu-reference with the bounds described at the top.
void expect_matches_reference(const LinearCase& c, const Dense& y) {
  const auto ref_backend = make_cpu_reference_backend();
  const Dense yref = run_linear(*ref_backend, c);
  std::vector<float> xq;
  ASSERT_TRUE(cpu::act_quantize(c.p.act, c.x.view(), c.input_scale, xq).ok());
  double err2 = 0, ref2 = 0;
  int bad = 0;
  for (int64_t n = 0; n < c.p.n; ++n) {
    std::vector<double> wrow(size_t(c.p.k));
    for (int64_t i = 0; i < c.p.k; ++i) wrow[size_t(i)] = c.w.at(n, i);
    const double b = c.p.bias ? double(c.bias.at(n)) : 0.0;
    for (int64_t m = 0; m < c.p.m; ++m) {
      double mag = std::fabs(b);
      for (int64_t i = 0; i < c.p.k; ++i) mag += std::fabs(double(xq[size_t(m * c.p.k + i)]) * wrow[size_t(i)]);
      const double got = y.at(m * c.p.n + n), want = yref.at(m * c.p.n + n);
      if (!std::isfinite(want) || !std::isfinite(got)) {  // NaN rows, overflow to +-Inf
        EXPECT_TRUE(got == want || (std::isnan(got) && std::isnan(want)))
            << c.p.to_string() << " at " << m << "," << n << ": got " << got << ", reference "
            << want;
        continue;
      }
      const double tol = dot_tol(c.p.weight, c.p.k) * mag + out_ulp(std::max(std::fabs(got), std::fabs(want)), c.p.out);
      if (!(std::fabs(got - want) <= tol) && ++bad <= 5)
        ADD_FAILURE() << c.p.to_string() << " at m=" << m << " n=" << n << ": got " << got
                      << ", reference " << want << ", tolerance " << tol;
      err2 += (got - want) * (got - want);
      ref2 += want * want;
    }
  }
  EXPECT_LE(std::sqrt(err2), norm_tol(c.p.out) * std::sqrt(ref2)) << c.p.to_string();
}

bool bitwise_equal(const Dense& a, const Dense& b) { return a.bytes == b.bytes; }

class LinearVsReference : public ::testing::TestWithParam<std::tuple<ElemType, ActKey>> {};

TEST_P(LinearVsReference, AwkwardShapesBiasAndOutputs) {
  const auto [t, a] = GetParam();
  const bool mx_key = cpu::act_key_is_mx(a);
  struct Shape { int64_t m, n, k; };
  // K = 32 (one block), 96/160 (odd block counts), 1024 (row longer than a cache chunk for
  // M > 1), 100 / 72 (not multiples of 32: padded weights; only for the non-MX keys).
  std::vector<Shape> shapes = {{1, 32, 32}, {3, 96, 160}, {17, 160, 96}, {5, 33, 1024}, {9, 7, 64}};
  if (!mx_key) shapes.insert(shapes.end(), {{3, 40, 100}, {17, 5, 72}});
  const CpuBackend cpu_backend;
  uint32_t seed = uint32_t(int(t) * 100 + int(a) * 10);
  int i = 0;
  for (const Shape& s : shapes) {
    for (DType out : {DType::kF32, DType::kBF16, DType::kF16}) {
      const bool bias = (i++ % 2) == 0;
      const LinearCase c = make_linear(t, a, s.m, s.n, s.k, bias, out, ++seed);
      SCOPED_TRACE(c.p.to_string());
      ASSERT_TRUE(cpu_backend.can_implement(c.p).ok);
      expect_matches_reference(c, run_linear(cpu_backend, c));
    }
  }
}

TEST_P(LinearVsReference, ThreadsScalarAndBatchAreBitwiseInvariant) {
  const auto [t, a] = GetParam();
  const LinearCase c = make_linear(t, a, 19, 67, 320, true, DType::kF32, 7);
  CpuBackendOptions o;
  o.threads = 1;
  const Dense base = run_linear(CpuBackend(o), c);
  for (int threads : {2, 3, 8}) {
    o.threads = threads;
    o.min_rows_per_thread = 1;
    EXPECT_TRUE(bitwise_equal(base, run_linear(CpuBackend(o), c))) << threads << " threads";
  }
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    o.isa = isa;
    EXPECT_TRUE(bitwise_equal(base, run_linear(CpuBackend(o), c))) << cpu::fast::isa_name(isa);
  }
  // Each row alone (M = 1) gives the bits it gets inside the batch of 19; under
  // fp8-dynamic-tensor, whose one scale is the whole batch's amax, rows alone differ (by
  // definition, docs/numerics.md "FP8 activation keys").
  const bool per_tensor = cpu::act_key_is_per_tensor_dynamic(a);
  int differ = 0;
  for (int64_t m : {0, 8, 16, 18}) {
    LinearCase one = c;
    one.p.m = 1;
    const size_t rb = size_t(c.p.k * dtype_bytes(c.x.dtype));
    one.x = Dense(c.x.dtype, 1, c.p.k);
    std::memcpy(one.x.bytes.data(), c.x.bytes.data() + size_t(m) * rb, rb);
    const Dense y1 = run_linear(CpuBackend(), one);
    const bool same =
        std::memcmp(y1.bytes.data(), base.bytes.data() + m * c.p.n * 4, size_t(c.p.n) * 4) == 0;
    differ += same ? 0 : 1;
    if (!per_tensor) {
      EXPECT_TRUE(same) << "row " << m;
    }
  }
  if (per_tensor) {
    EXPECT_GT(differ, 0) << "every row alone gave its in-batch bits";
  }
}

std::string param_name(const ::testing::TestParamInfo<std::tuple<ElemType, ActKey>>& info) {
  std::string s = std::string(mx_format_name(std::get<0>(info.param))) + "_" +
                  act_key_name(std::get<1>(info.param));
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(AllFormatsAndKeys, LinearVsReference,
                         ::testing::Combine(::testing::ValuesIn(kAllElemTypes),
                                            ::testing::ValuesIn(kAllActKeys)),
                         param_name);

// ---- the kernels directly: every element code, every ISA path --------------------------------

TEST(MxGemmKernel, EveryCodeMatchesExactDotOnBothIsas) {
  for (ElemType t : kAllElemTypes) {
    const int64_t m = 11, n = 13, k = 256;
    std::mt19937 rng(uint32_t(int(t)) + 1);
    std::vector<uint8_t> packed(size_t(n * packed_bytes(t, k))), scales(size_t(n * k / 32));
    for (auto& b : packed) b = uint8_t(rng());  // every code, E4M3 NaN codes included
    for (auto& s : scales) s = uint8_t(110 + rng() % 30);
    const std::vector<float> x = randn(size_t(m * k), 3);
    const cpu::fast::MXMatrixRef w{t, n, k, packed.data(), scales.data()};
    std::vector<float> ya(size_t(m * n)), ys(size_t(m * n));
    cpu::fast::mx_gemm_rows(Isa::kScalar, w, x.data(), m, k, ys.data(), n, 0, n);
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {  // each, where the CPU has it
      cpu::fast::mx_gemm_rows(isa, w, x.data(), m, k, ya.data(), n, 0, n);
      EXPECT_TRUE(same_bits(ya.data(), ys.data(), ya.size()))
          << mx_format_name(t) << " " << cpu::fast::isa_name(isa);
    }
    std::vector<uint8_t> codes(static_cast<size_t>(k));
    for (int64_t j = 0; j < n; ++j) {
      pack::unpack_codes(t, packed.data() + j * packed_bytes(t, k), k, codes.data());
      for (int64_t r = 0; r < m; ++r) {
        double want = 0, mag = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double wv = double(num::decode_elem(t, codes[size_t(i)])) *
                            std::ldexp(1.0, int(scales[size_t(j * k / 32 + i / 32)]) - 127);
          want += wv * x[size_t(r * k + i)];
          mag += std::fabs(wv * x[size_t(r * k + i)]);
        }
        const double got = ya[size_t(r * n + j)];
        if (std::isnan(want) || std::isinf(want)) {
          EXPECT_TRUE(std::isnan(got) || got == want) << mx_format_name(t) << " " << r << "," << j;
        } else {
          EXPECT_LE(std::fabs(got - want), dot_tol(t, k) * mag) << mx_format_name(t) << " " << r << "," << j;
        }
      }
    }
  }
}

// M = 1 takes its own kernels (several weight rows in lockstep; for E2M1 on AVX-512 a scale
// prepass per 64-block segment, 16 codes at a time, and rows with off-path scale codes redone
// afterwards). K = 149 blocks makes two full segments and one of 21 (16 vectorised + 5 single);
// N = 4 * 9 + 3 rows: four streams and three rows left over. Off-path scale codes sit in rows of
// different streams, in the vectorised and the single part of a segment, and in the last rows.
// Every ISA gives the scalar kernel's bits, and M = 1 gives the bits of the same row in a batch.
TEST(MxGemmKernel, SingleRowStreamsMatchScalarAndBatchBitwise) {
  const int64_t n = 39, k = 149 * 32, kb = 149;
  for (ElemType t : kAllElemTypes) {
    std::mt19937 rng(uint32_t(int(t)) + 20);
    std::vector<uint8_t> packed(size_t(n * packed_bytes(t, k))), scales(size_t(n * kb));
    for (auto& b : packed) b = uint8_t(rng());
    if (t == ElemType::kE4M3)  // NaN codes send the whole row to float64: keep them to row 7
      for (int64_t i = 0; i < n * k; ++i)
        if (i / k != 7 && (packed[size_t(i)] & 0x7F) == 0x7F) packed[size_t(i)] = 0x7E;
    for (auto& s : scales) s = uint8_t(112 + rng() % 24);
    const auto set_scale = [&](int64_t row, int64_t blk, uint8_t c) { scales[size_t(row * kb + blk)] = c; };
    set_scale(1, 3, 255);     // NaN scale, vectorised part of the first segment
    set_scale(10, 146, 0);    // subnormal multiplier, single part of the last segment
    set_scale(12, 70, 1);     // E2M1's scaled table would be subnormal
    set_scale(21, 100, 230);  // huge: S beyond 2^64 for every format (float64 row)
    set_scale(30, 148, 200);  // the last block (E2M1: beyond 2^64)
    set_scale(37, 0, 195);    // a leftover row
    set_scale(19, 5, 0);      // scale 0 on an all-zero block: stays exact on the fast path
    std::memset(packed.data() + 19 * packed_bytes(t, k) + 5 * packed_bytes(t, 32), 0,
                size_t(packed_bytes(t, 32)));
    const std::vector<float> x = randn(size_t(3 * k), 4);
    const cpu::fast::MXMatrixRef w{t, n, k, packed.data(), scales.data()};
    std::vector<float> ys(static_cast<size_t>(n)), ya(static_cast<size_t>(n)), yb(static_cast<size_t>(3 * n));
    cpu::fast::mx_gemm_rows(Isa::kScalar, w, x.data() + k, 1, k, ys.data(), n, 0, n);
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
      cpu::fast::mx_gemm_rows(isa, w, x.data() + k, 1, k, ya.data(), n, 0, n);
      EXPECT_TRUE(same_bits(ya.data(), ys.data(), ya.size()))
          << mx_format_name(t) << " " << cpu::fast::isa_name(isa);
      cpu::fast::mx_gemm_rows(isa, w, x.data(), 3, k, yb.data(), n, 0, n);
      EXPECT_TRUE(same_bits(yb.data() + n, ys.data(), ys.size()))
          << mx_format_name(t) << " " << cpu::fast::isa_name(isa) << " batch row";
      // A split of the rows (as threads take them) changes nothing either.
      cpu::fast::mx_gemm_rows(isa, w, x.data() + k, 1, k, ya.data(), n, 0, 17);
      cpu::fast::mx_gemm_rows(isa, w, x.data() + k, 1, k, ya.data(), n, 17, n);
      EXPECT_TRUE(same_bits(ya.data(), ys.data(), ya.size()))
          << mx_format_name(t) << " " << cpu::fast::isa_name(isa) << " split";
    }
    EXPECT_TRUE(std::isnan(ys[1])) << mx_format_name(t);
    // The scalar kernel against the exact dot product (it is checked bitwise above).
    std::vector<uint8_t> codes(static_cast<size_t>(k));
    for (int64_t j = 0; j < n; ++j) {
      pack::unpack_codes(t, packed.data() + j * packed_bytes(t, k), k, codes.data());
      double want = 0, mag = 0;
      for (int64_t i = 0; i < k; ++i) {
        const uint8_t s = scales[size_t(j * kb + i / 32)];
        const double wv = s == num::kScaleNaN
                              ? NAN
                              : double(num::decode_elem(t, codes[size_t(i)])) * std::ldexp(1.0, int(s) - 127);
        want += wv * x[size_t(k + i)];
        mag += std::fabs(wv * x[size_t(k + i)]);
      }
      if (std::isnan(want) || std::isinf(want)) {
        EXPECT_TRUE(std::isnan(ys[size_t(j)]) || ys[size_t(j)] == want) << mx_format_name(t) << " " << j;
      } else {
        EXPECT_LE(std::fabs(ys[size_t(j)] - want), dot_tol(t, k) * mag) << mx_format_name(t) << " " << j;
      }
    }
  }
}

// ---- edge cases: scales and codes the factored arithmetic cannot take ---------------------------

// One weight row of K = 64 (two blocks) with the given codes and scales, M = 2.
void expect_row_matches_reference(ElemType t, const std::vector<uint8_t>& codes,
                                  const std::vector<uint8_t>& scales, const char* what) {
  const int64_t k = int64_t(codes.size());
  Weight w;
  w.elem = t;
  w.n = 1;
  w.k = k;
  w.q.elem = t;
  w.q.rows = 1;
  w.q.k = k;
  w.q.packed.resize(size_t(packed_bytes(t, k)));
  pack::pack_codes(t, codes.data(), k, w.q.packed.data());
  w.q.scales = scales;
  LinearCase c;
  c.p = Problem::linear(t, ActKey::kBF16, 2, 1, k);
  c.p.out = DType::kF32;
  c.w = w;
  c.x = Dense(DType::kBF16, 2, k, randn(size_t(2 * k), 5));
  SCOPED_TRACE(what);
  expect_matches_reference(c, run_linear(CpuBackend(), c));
  CpuBackendOptions o;
  o.isa = Isa::kScalar;
  const Dense scalar = run_linear(CpuBackend(o), c);
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    o.isa = isa;
    const Dense fast = run_linear(CpuBackend(o), c);
    EXPECT_TRUE(same_bits(reinterpret_cast<const float*>(fast.bytes.data()),
                          reinterpret_cast<const float*>(scalar.bytes.data()), 2))
        << cpu::fast::isa_name(isa);
  }
}

TEST(CpuEdgeCases, ScalesAndCodesOffTheFastPath) {
  std::mt19937 rng(9);
  const auto codes_of = [&](ElemType t, bool zero_first_block) {
    std::vector<uint8_t> c(64);
    const int mask = (1 << elem_info(t).bits) - 1;
    for (int i = 0; i < 64; ++i) {
      c[size_t(i)] = uint8_t(int(rng()) & mask);
      if (t == ElemType::kE4M3 && (c[size_t(i)] & 0x7F) == 0x7F) c[size_t(i)] = 0x7E;
      if (t == ElemType::kE5M2 && (c[size_t(i)] & 0x7C) == 0x7C) c[size_t(i)] &= 0xFB;
    }
    if (zero_first_block)
      for (int i = 0; i < 32; ++i) c[size_t(i)] = 0;
    return c;
  };
  for (ElemType t : kAllElemTypes) {
    const std::string f = mx_format_name(t);
    // Scale code 0 (2^-127): the multiplier is subnormal for E2M1/E5M2/INT8.
    expect_row_matches_reference(t, codes_of(t, false), {0, 120}, (f + " nonzero block, scale 0").c_str());
    expect_row_matches_reference(t, codes_of(t, true), {0, 120}, (f + " zero block, scale 0").c_str());
    // E2M1's scaled table: 0.5 * 2^(c-127) is subnormal for c = 1, normal from c = 2.
    expect_row_matches_reference(t, codes_of(t, false), {1, 2}, (f + " scales 1, 2").c_str());
    expect_row_matches_reference(t, codes_of(t, true), {1, 2}, (f + " zero block, scale 1").c_str());
    // INT8's multiplier 2^(c-133) is subnormal up to c = 6.
    expect_row_matches_reference(t, codes_of(t, false), {5, 3}, (f + " scales 5, 3").c_str());
    // Huge scales: S = 2^(c-127)/d overflows for FP6 / E4M3 near the top of the range.
    expect_row_matches_reference(t, codes_of(t, false), {250, 140}, (f + " scale 250").c_str());
    expect_row_matches_reference(t, codes_of(t, false), {254, 100}, (f + " scale 254").c_str());
    // NaN scale: the row is NaN.
    expect_row_matches_reference(t, codes_of(t, false), {255, 120}, (f + " NaN scale").c_str());
  }
  // E4M3 NaN element codes, E5M2 Inf and NaN codes.
  std::vector<uint8_t> c = codes_of(ElemType::kE4M3, false);
  c[3] = 0xFF;
  expect_row_matches_reference(ElemType::kE4M3, c, {120, 121}, "e4m3 NaN code");
  c = codes_of(ElemType::kE5M2, false);
  c[40] = 0x7C;
  expect_row_matches_reference(ElemType::kE5M2, c, {120, 121}, "e5m2 +Inf code");
  c[40] = 0xFD;
  expect_row_matches_reference(ElemType::kE5M2, c, {120, 121}, "e5m2 NaN code");
}

TEST(CpuEdgeCases, NonFinitePaddingCodesAreIgnoredLikeTheReference) {
  for (ElemType t : {ElemType::kE4M3, ElemType::kE5M2}) {
    LinearCase c = make_linear(t, ActKey::kBF16, 3, 5, 40, false, DType::kF32, 11);
    ASSERT_EQ(c.w.k, 64);
    const CpuBackend b;
    EXPECT_EQ(b.prepare_linear(c.p, c.weights()).value()->bytes(), 0u);  // zero padding: views
    c.w.q.packed[size_t(2 * 64 + 50)] = t == ElemType::kE4M3 ? 0x7F : 0x7C;  // row 2, col 50
    auto prepared = b.prepare_linear(c.p, c.weights());
    ASSERT_TRUE(prepared.ok());
    EXPECT_EQ(prepared.value()->bytes(), size_t(5 * 64));  // a sanitized copy
    const Dense y = run_linear(b, c);
    for (int64_t i = 0; i < 15; ++i) EXPECT_TRUE(std::isfinite(y.at(i))) << i;
    expect_matches_reference(c, y);
  }
}

// ---- the backend's contract ---------------------------------------------------------------------

TEST(CpuBackendContract, NamePriorityVerdicts) {
  const auto b = make_cpu_backend();
  EXPECT_EQ(b->name(), "cpu");
  EXPECT_EQ(b->priority(), 10);
  EXPECT_FALSE(b->is_reference());
  const Verdict v = b->supports(this_device());
  EXPECT_TRUE(v.ok);
  EXPECT_NE(v.reason.find(cpu::fast::isa_name(cpu::fast::best_isa())), std::string::npos)
      << v.reason;
  Device plain;  // no SIMD flags
  EXPECT_NE(b->supports(plain).reason.find("scalar kernels (the CPU lacks"), std::string::npos);
  CpuBackendOptions o;
  o.isa = Isa::kScalar;
  EXPECT_NE(CpuBackend(o).supports(this_device()).reason.find("scalar"), std::string::npos);

  EXPECT_TRUE(b->can_implement(Problem::linear(ElemType::kE2M1, ActKey::kBF16, 1, 8, 100)).ok);
  const Verdict no_mx = b->can_implement(Problem::linear(ElemType::kE2M1, ActKey::kMXFP4Dynamic, 1, 8, 100));
  EXPECT_FALSE(no_mx.ok);
  EXPECT_NE(no_mx.reason.find("K = 100"), std::string::npos) << no_mx.reason;
  Problem q = Problem::linear(ElemType::kE2M1, ActKey::kBF16, 1, 8, 64);
  q.op = Op::kQuantize;
  EXPECT_FALSE(b->can_implement(q).ok);
  EXPECT_FALSE(b->can_implement(Problem::linear(ElemType::kE2M1, ActKey::kBF16, 0, 8, 64)).ok);
}

TEST(CpuBackendContract, BadViewsAreErrorsThatSayWhat) {
  const CpuBackend b;
  LinearCase c = make_linear(ElemType::kE2M1, ActKey::kBF16, 2, 8, 64, false, DType::kBF16, 1);
  LinearWeights lw = c.weights();
  lw.w.n = 9;
  auto bad = b.prepare_linear(c.p, lw);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("expected shape [1, 8, 64]"), std::string::npos)
      << bad.status().message();
  auto prepared = b.prepare_linear(c.p, c.weights()).value();
  Dense y(DType::kF32, 2, 8);  // wrong output dtype
  const Status s = b.run_linear(c.p, *prepared, c.x.view(), y.mut());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("expected dtype bf16"), std::string::npos) << s.message();
  Dense x16(DType::kF16, 2, 64);
  Dense y16(DType::kBF16, 2, 8);
  EXPECT_FALSE(b.run_linear(c.p, *prepared, x16.view(), y16.mut()).ok());
  lw = c.weights();
  lw.bias = c.bias.view();  // bias given for a problem without one
  EXPECT_FALSE(b.prepare_linear(c.p, lw).ok());
}

}  // namespace
}  // namespace mxq
