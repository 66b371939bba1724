// The cpu-reference backend and the shared CPU pieces (activation quantization, routing).
// Expected values are derived independently here: hand-computed small cases, and brute-force
// double loops over decoded weights written in this file (not calls into the code under test).
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

// ---- routing -------------------------------------------------------------------------------------

TopK route_f32(const MoEParams& p, const std::vector<float>& logits,
               const std::vector<float>* bias = nullptr) {
  TopK out;
  const DenseView lv{logits.data(), DType::kF32, int64_t(logits.size()) / p.experts, p.experts};
  DenseView bv;
  if (bias) bv = {bias->data(), DType::kF32, 1, p.experts};
  const Status s = cpu::route(p, lv, bv, out);
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

MoEParams params(Routing r, int64_t e, int64_t k, bool renorm = true) {
  MoEParams p;
  p.routing = r;
  p.experts = e;
  p.topk = k;
  p.renormalize = renorm;
  return p;
}

TEST(Routing, WeightsAreFloat32) {
  static_assert(std::is_same_v<decltype(TopK::weights)::value_type, float>);
  static_assert(std::is_same_v<decltype(TopK::ids)::value_type, int32_t>);
}

TEST(Routing, SoftmaxTopK) {
  // logits 1 3 2 0, k = 2 -> experts 1, 2.
  const std::vector<float> l = {1, 3, 2, 0};
  const double z = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + 1.0;
  TopK t = route_f32(params(Routing::kSoftmaxTopK, 4, 2, false), l);
  EXPECT_EQ(t.ids, (std::vector<int32_t>{1, 2}));
  EXPECT_FLOAT_EQ(t.weights[0], float(std::exp(3.0) / z));
  EXPECT_FLOAT_EQ(t.weights[1], float(std::exp(2.0) / z));
  t = route_f32(params(Routing::kSoftmaxTopK, 4, 2, true), l);
  EXPECT_EQ(t.ids, (std::vector<int32_t>{1, 2}));
  EXPECT_FLOAT_EQ(t.weights[0], float(1.0 / (1.0 + std::exp(-1.0))));
  EXPECT_FLOAT_EQ(t.weights[1], float(1.0 / (1.0 + std::exp(1.0))));
  // Ties go to the lower expert index.
  t = route_f32(params(Routing::kSoftmaxTopK, 4, 2, false), {5, 5, 5, 5});
  EXPECT_EQ(t.ids, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(t.weights, (std::vector<float>{0.25f, 0.25f}));
}

TEST(Routing, TopKSoftmaxGptOss) {
  // Two tokens. Token 0: logits .5 2 -1 2 1, k = 3 -> 1, 3 (tie, lower first), 4; softmax over
  // {2, 2, 1}. renormalize does not matter.
  const std::vector<float> l = {0.5f, 2, -1, 2, 1,  -3, -2, -1, 0, 9};
  for (bool renorm : {false, true}) {
    const TopK t = route_f32(params(Routing::kTopKSoftmax, 5, 3, renorm), l);
    EXPECT_EQ(t.ids, (std::vector<int32_t>{1, 3, 4, 4, 3, 2}));
    const double z0 = 2 * std::exp(2.0) + std::exp(1.0);
    EXPECT_FLOAT_EQ(t.weights[0], float(std::exp(2.0) / z0));
    EXPECT_FLOAT_EQ(t.weights[1], float(std::exp(2.0) / z0));
    EXPECT_FLOAT_EQ(t.weights[2], float(std::exp(1.0) / z0));
    const double z1 = std::exp(9.0) + std::exp(0.0) + std::exp(-1.0);
    EXPECT_FLOAT_EQ(t.weights[3], float(std::exp(9.0) / z1));
    EXPECT_FLOAT_EQ(t.weights[5], float(std::exp(-1.0) / z1));
  }
}

// DeepSeek-V3-style: 8 experts in 4 groups of 2, keep 2 groups, top-2, scaling 2.5.
MoEParams deepseek_params(bool renorm = true) {
  MoEParams p = params(Routing::kSigmoidGroupedTopK, 8, 2, renorm);
  p.n_group = 4;
  p.topk_group = 2;
  p.routed_scaling = 2.5f;
  return p;
}
double logit(double s) { return std::log(s / (1 - s)); }

TEST(Routing, DeepSeekGroupRestrictionChangesTheChoice) {
  // Sigmoid scores: group0 {.9, .1} sum 1.0; group1 {.7, .5} 1.2; group2 {.6, .5} 1.1;
  // group3 {.2, .2} .4. Kept: groups 1 and 2, so expert 0 (the best score, .9) is NOT chosen:
  // top-2 among experts 2..5 are 2 (.7) and 4 (.6).
  const double s[8] = {.9, .1, .7, .5, .6, .5, .2, .2};
  std::vector<float> l;
  for (double v : s) l.push_back(float(logit(v)));
  std::vector<double> sf;  // the sigmoid of the FP32 logits actually passed
  for (float v : l) sf.push_back(1.0 / (1.0 + std::exp(-double(v))));
  TopK t = route_f32(deepseek_params(), l);
  EXPECT_EQ(t.ids, (std::vector<int32_t>{2, 4}));
  EXPECT_FLOAT_EQ(t.weights[0], float(sf[2] / (sf[2] + sf[4]) * 2.5));
  EXPECT_FLOAT_EQ(t.weights[1], float(sf[4] / (sf[2] + sf[4]) * 2.5));
  // Without groups (one group) expert 0 wins.
  MoEParams flat = deepseek_params();
  flat.n_group = 1;
  flat.topk_group = 1;
  EXPECT_EQ(route_f32(flat, l).ids, (std::vector<int32_t>{0, 2}));
  // Without renormalisation: s times the scaling.
  t = route_f32(deepseek_params(false), l);
  EXPECT_FLOAT_EQ(t.weights[0], float(sf[2] * 2.5));
  EXPECT_FLOAT_EQ(t.weights[1], float(sf[4] * 2.5));

  // A correction bias of +.3 on expert 5: group 2 becomes {.6, .8} (1.4), still kept; the
  // selection is now 5 (.8 corrected) then 2 (.7), but the weights use the uncorrected .5, .7.
  MoEParams pb = deepseek_params();
  pb.correction_bias = true;
  const std::vector<float> bias = {0, 0, 0, 0, 0, 0.3f, 0, 0};
  t = route_f32(pb, l, &bias);
  EXPECT_EQ(t.ids, (std::vector<int32_t>{5, 2}));
  EXPECT_FLOAT_EQ(t.weights[0], float(sf[5] / (sf[5] + sf[2]) * 2.5));
  EXPECT_FLOAT_EQ(t.weights[1], float(sf[2] / (sf[5] + sf[2]) * 2.5));
}

TEST(Routing, DeepSeekMatchesBruteForce) {
  // Random logits and biases; an independent implementation by sorting.
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  MoEParams p = params(Routing::kSigmoidGroupedTopK, 16, 3);
  p.n_group = 4;
  p.topk_group = 2;
  p.correction_bias = true;
  p.routed_scaling = 1.5f;
  const int64_t tokens = 20;
  std::vector<float> l(size_t(tokens * 16)), bias(16);
  for (float& v : l) v = nd(rng);
  for (float& v : bias) v = nd(rng) * 0.1f;
  const TopK t = route_f32(p, l, &bias);
  for (int64_t tok = 0; tok < tokens; ++tok) {
    std::vector<double> s(16), c(16);
    for (int e = 0; e < 16; ++e) {
      s[size_t(e)] = 1.0 / (1.0 + std::exp(-double(l[size_t(tok * 16 + e)])));
      c[size_t(e)] = s[size_t(e)] + double(bias[size_t(e)]);
    }
    auto desc = [](const std::vector<double>& v) {
      std::vector<int> idx(v.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return v[size_t(a)] > v[size_t(b)]; });
      return idx;
    };
    std::vector<double> gs(4);
    for (int g = 0; g < 4; ++g) {
      std::vector<double> m(c.begin() + 4 * g, c.begin() + 4 * g + 4);
      std::sort(m.rbegin(), m.rend());
      gs[size_t(g)] = m[0] + m[1];
    }
    const std::vector<int> go = desc(gs);
    std::vector<double> masked(16, -1e300);
    for (int j = 0; j < 2; ++j)
      for (int e = 4 * go[size_t(j)]; e < 4 * go[size_t(j)] + 4; ++e) masked[size_t(e)] = c[size_t(e)];
    const std::vector<int> eo = desc(masked);
    const double sum = s[size_t(eo[0])] + s[size_t(eo[1])] + s[size_t(eo[2])];
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(t.ids[size_t(tok * 3 + j)], eo[size_t(j)]);
      EXPECT_FLOAT_EQ(t.weights[size_t(tok * 3 + j)], float(s[size_t(eo[size_t(j)])] / sum * 1.5));
    }
  }
}

TEST(Routing, Bf16LogitsAndErrors) {
  const std::vector<uint16_t> lb = to_bf16({0.0f, 1.0f, 3.0f});
  TopK t;
  MoEParams p = params(Routing::kTopKSoftmax, 3, 1);
  ASSERT_TRUE(cpu::route(p, {lb.data(), DType::kBF16, 1, 3}, {}, t).ok());
  EXPECT_EQ(t.ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(t.weights, (std::vector<float>{1.0f}));
  // Wrong expert count.
  Status s = cpu::route(p, {lb.data(), DType::kBF16, 1, 2}, {}, t);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("[M, 3]"), std::string::npos) << s.message();
  // A correction bias the problem does not use.
  const std::vector<float> bias(3, 0.0f);
  EXPECT_FALSE(cpu::route(p, {lb.data(), DType::kBF16, 1, 3}, {bias.data(), DType::kF32, 1, 3},
                          t).ok());
  // A correction bias the problem needs but was not passed.
  p = deepseek_params();
  p.correction_bias = true;
  const std::vector<float> l8(8, 0.0f);
  EXPECT_FALSE(cpu::route(p, {l8.data(), DType::kF32, 1, 8}, {}, t).ok());
}

// ---- the backend ----------------------------------------------------------------------------------

using reftest::Dense;
using reftest::TestMX;

TEST(ReferenceBackend, IdentityAndVerdicts) {
  const std::unique_ptr<Backend> b = make_cpu_reference_backend();
  EXPECT_EQ(b->name(), "cpu-reference");
  EXPECT_EQ(b->priority(), 0);
  EXPECT_TRUE(b->is_reference());
  EXPECT_TRUE(b->supports(Device{}).ok);
  for (ElemType t : kAllElemTypes) {
    for (ActKey a : kAllActKeys) {
      EXPECT_TRUE(b->can_implement(Problem::linear(t, a, 1, 3, 64, true)).ok);
      for (auto layout : {io::GateUpLayout::kChunked, io::GateUpLayout::kInterleaved,
                          io::GateUpLayout::kSeparate}) {
        for (Routing r : {Routing::kSoftmaxTopK, Routing::kTopKSoftmax,
                          Routing::kSigmoidGroupedTopK}) {
          Problem p = Problem::moe_problem(t, a, 3, 64, 32, 8, 2);
          p.moe.layout = layout;
          p.moe.routing = r;
          p.moe.n_group = 4;
          p.moe.topk_group = 2;
          p.moe.activation = layout == io::GateUpLayout::kInterleaved ? MoEActivation::kSwigluOAI
                                                                       : MoEActivation::kSiluAndMul;
          EXPECT_TRUE(b->can_implement(p).ok) << p.to_string();
        }
      }
    }
  }
  // Non-MX keys take any K; MX keys need whole 32-blocks; invalid problems and quantize are no.
  EXPECT_TRUE(b->can_implement(Problem::linear(ElemType::kE2M1, ActKey::kBF16, 1, 3, 40)).ok);
  const Verdict v = b->can_implement(Problem::linear(ElemType::kE2M1, ActKey::kMXFP4Dynamic, 1, 3, 40));
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.reason.find("K = 40"), std::string::npos) << v.reason;
  EXPECT_FALSE(b->can_implement(Problem::moe_problem(ElemType::kE2M1, ActKey::kMXFP8Dynamic, 1,
                                                     64, 48, 4, 2)).ok);
  EXPECT_FALSE(b->can_implement(Problem::linear(ElemType::kE2M1, ActKey::kBF16, 0, 3, 64)).ok);
  Problem q = Problem::linear(ElemType::kE2M1, ActKey::kBF16, 1, 3, 64);
  q.op = Op::kQuantize;
  EXPECT_FALSE(b->can_implement(q).ok);
}

// y[m][n] = sum_k xq[m][k] * W[n][k] + bias[n], W from the core dequantizer, k ascending.
std::vector<double> naive_linear(const std::vector<float>& xq, const TestMX& w,
                                 const Dense* bias, int64_t m, int64_t n, int64_t k) {
  std::vector<double> y(size_t(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < k; ++c) acc += double(xq[size_t(i * k + c)]) * double(w.at(0, j, c));
      y[size_t(i * n + j)] = acc + (bias ? double(bias->at(size_t(j))) : 0.0);
    }
  }
  return y;
}

// Runs the backend on a linear problem; returns y widened to FP32.
std::vector<float> run_linear(const Problem& p, const LinearWeights& lw, const Dense& x) {
  const std::unique_ptr<Backend> b = make_cpu_reference_backend();
  auto prepared = b->prepare_linear(p, lw);
  EXPECT_TRUE(prepared.ok()) << prepared.status().message();
  if (!prepared.ok()) return {};
  EXPECT_EQ(prepared.value()->bytes(), 0u);
  Dense y(p.out, p.m, p.n);
  const Status s = b->run_linear(p, *prepared.value(), x.view(), y.mut());
  EXPECT_TRUE(s.ok()) << s.message();
  return y.values();
}

// The reference backend quantizes an MX key's activations with the problem's act_rule: a
// 1-row, 1-output layer with w = 1 shows the quantized x directly (7 -> 6 floor, 8 even).
TEST(ReferenceLinear, MxKeyUsesTheProblemsScaleRule) {
  const int64_t k = 32;
  std::vector<float> xv(k, 0.0f), wv(k, 0.0f);
  xv[0] = 7.0f;
  wv[0] = 1.0f;
  QuantOptions o;
  const MXMatrix q = quantize(wv, 1, k, o).value();
  LinearWeights lw;
  lw.w = {ElemType::kE2M1, 1, 1, k, q.packed.data(), q.scales.data()};
  const Dense x(DType::kBF16, 1, k, xv);
  Problem p = Problem::linear(ElemType::kE2M1, ActKey::kMXFP4Dynamic, 1, 1, k);
  p.out = DType::kF32;
  EXPECT_EQ(run_linear(p, lw, x), std::vector<float>{6.0f});
  p.act_rule = ScaleRule::kEven;
  EXPECT_EQ(run_linear(p, lw, x), std::vector<float>{8.0f});
  EXPECT_NE(p.to_string().find("mxfp4-dynamic(even)"), std::string::npos) << p.to_string();
}

TEST(ReferenceLinear, EveryElemTypeBiasDtypeAndOutDtype) {
  const int64_t m = 3, n = 5, k = 64;
  uint32_t seed = 100;
  for (ElemType t : kAllElemTypes) {
    const TestMX w = reftest::make_mx(t, 1, n, k, ++seed);
    const Dense x(DType::kBF16, m, k, reftest::random_floats(size_t(m * k), ++seed));
    for (DType out : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (int bias_kind = 0; bias_kind < 4; ++bias_kind) {  // none, F32, BF16, F16
        const DType bdt = bias_kind == 1 ? DType::kF32 : (bias_kind == 2 ? DType::kBF16 : DType::kF16);
        const Dense bias(bdt, 1, n, reftest::random_floats(size_t(n), ++seed));
        Problem p = Problem::linear(t, ActKey::kBF16, m, n, k, bias_kind != 0);
        p.out = out;
        LinearWeights lw;
        lw.w = w.view();
        if (bias_kind != 0) lw.bias = bias.view();
        const std::vector<float> got = run_linear(p, lw, x);
        const std::vector<double> want =
            naive_linear(x.values(), w, bias_kind != 0 ? &bias : nullptr, m, n, k);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i)
          EXPECT_EQ(got[i], reftest::convert_out(want[i], out))
              << p.to_string() << " bias " << bias_kind << " at " << i;
      }
    }
  }
}

TEST(ReferenceLinear, EveryActKey) {
  const int64_t m = 4, n = 6, k = 96;
  for (ActKey key : kAllActKeys) {
    const TestMX w = reftest::make_mx(ElemType::kE4M3, 1, n, k, 7);
    std::vector<float> xv = reftest::random_floats(size_t(m * k), 8, 3.0f);
    xv[5] = 0.0f;  // a few exact zeros, a large value
    xv[17] = 60.0f;
    const Dense x(act_input_dtype(key), m, k, xv);
    const Dense bias(DType::kF32, 1, n, reftest::random_floats(size_t(n), 9));
    Problem p = Problem::linear(ElemType::kE4M3, key, m, n, k, true);
    p.out = DType::kF32;
    LinearWeights lw{w.view(), bias.view(), 0.05f};
    const std::vector<float> got = run_linear(p, lw, x);
    // The activations the matmul must see, re-derived from the definitions row by row (for
    // fp8-dynamic-tensor over the whole x).
    const std::vector<float> xs = x.values();
    const std::vector<float> xq = reftest::expected_act_tensor(key, xs, m, 0.05f);
    if (key != ActKey::kBF16 && key != ActKey::kFP16) {
      EXPECT_NE(xq, xs) << act_key_name(key);
    }
    if (key == ActKey::kFP8DynamicTensor) {  // one scale, not the token key's per-row ones
      EXPECT_NE(xq, reftest::expected_act_tensor(ActKey::kFP8DynamicToken, xs, m, 0.05f));
    }
    const std::vector<double> want = naive_linear(xq, w, &bias, m, n, k);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], float(want[i])) << act_key_name(key) << " at " << i;
  }
}

TEST(ReferenceLinear, Fp8DynamicGroup128OverSeveralGroups) {
  // K = 320: groups of 128, 128 and 64 columns, each token's groups at different magnitudes.
  const int64_t m = 3, n = 5, k = 320;
  const TestMX w = reftest::make_mx(ElemType::kE2M1, 1, n, k, 41);
  std::vector<float> xv = reftest::random_floats(size_t(m * k), 42, 2.0f);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < k; ++c) xv[size_t(r * k + c)] *= std::ldexp(1.0f, int(3 * ((c / 128 + r) % 3)));
  const Dense x(DType::kBF16, m, k, xv);
  Problem p = Problem::linear(ElemType::kE2M1, ActKey::kFP8DynamicGroup128, m, n, k, false);
  p.out = DType::kF32;
  const std::vector<float> got = run_linear(p, {w.view(), {}, 1.0f}, x);
  const std::vector<float> xs = x.values();
  const std::vector<float> xq = reftest::expected_act_tensor(ActKey::kFP8DynamicGroup128, xs, m, 1.0f);
  EXPECT_NE(xq, reftest::expected_act_tensor(ActKey::kFP8DynamicToken, xs, m, 1.0f));
  const std::vector<double> want = naive_linear(xq, w, nullptr, m, n, k);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], float(want[i])) << i;
}

TEST(ReferenceLinear, UnalignedKIgnoresThePaddedColumns) {
  // K = 40: the canonical weights hold 64 columns; columns 40..63 must not matter.
  const int64_t m = 2, n = 3, k = 40;
  TestMX w = reftest::make_mx(ElemType::kE4M3, 1, n, k, 21);
  ASSERT_EQ(w.k, 64);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = k; c < 64; ++c) w.q.packed[size_t(r * 64 + c)] = 0x7E;  // 448 * scale
  const Dense x(DType::kBF16, m, k, reftest::random_floats(size_t(m * k), 22));
  Problem p = Problem::linear(ElemType::kE4M3, ActKey::kBF16, m, n, k);
  p.out = DType::kF32;
  const std::vector<float> got = run_linear(p, {w.view(), {}, 1.0f}, x);
  const std::vector<double> want = naive_linear(x.values(), w, nullptr, m, n, k);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], float(want[i]));
}

TEST(ReferenceLinear, RealShapeKEquals2880) {
  // gpt-oss hidden size: 2880 = 90 blocks, not a multiple of 64 or 128.
  const int64_t m = 2, n = 3, k = 2880;
  const TestMX w = reftest::make_mx(ElemType::kE2M1, 1, n, k, 31);
  const Dense x(DType::kBF16, m, k, reftest::random_floats(size_t(m * k), 32));
  const Problem p = Problem::linear(ElemType::kE2M1, ActKey::kMXFP4Dynamic, m, n, k);
  const std::vector<float> got = run_linear(p, {w.view(), {}, 1.0f}, x);
  std::vector<float> xq;
  const std::vector<float> xs = x.values();
  for (int64_t r = 0; r < m; ++r) {
    const std::vector<float> q = reftest::expected_act(
        ActKey::kMXFP4Dynamic, std::vector<float>(xs.begin() + r * k, xs.begin() + (r + 1) * k), 1.0f);
    xq.insert(xq.end(), q.begin(), q.end());
  }
  const std::vector<double> want = naive_linear(xq, w, nullptr, m, n, k);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], reftest::convert_out(want[i], DType::kBF16));
}

void expect_error(const Status& s, const std::string& needle) {
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

TEST(ReferenceLinear, ErrorsNameExpectedAndGot) {
  const std::unique_ptr<Backend> b = make_cpu_reference_backend();
  const int64_t m = 3, n = 5, k = 64;
  const TestMX w = reftest::make_mx(ElemType::kE2M1, 1, n, k, 41);
  const Dense bias(DType::kBF16, 1, n);
  const Problem p = Problem::linear(ElemType::kE2M1, ActKey::kBF16, m, n, k, true);
  LinearWeights lw{w.view(), bias.view(), 1.0f};

  LinearWeights bad = lw;
  bad.w.n = 6;
  expect_error(b->prepare_linear(p, bad).status(), "expected shape [1, 5, 64], got [1, 6, 64]");
  bad = lw;
  bad.w.elem = ElemType::kE4M3;
  expect_error(b->prepare_linear(p, bad).status(), "expected mxfp4 elements, got mxfp8");
  bad = lw;
  bad.bias = {};
  expect_error(b->prepare_linear(p, bad).status(), "linear bias: missing");
  expect_error(b->prepare_linear(Problem::linear(ElemType::kE2M1, ActKey::kBF16, m, n, k), lw)
                   .status(),
               "the problem has no bias");
  const Dense wrong_bias(DType::kF32, 1, 4);
  bad = lw;
  bad.bias = wrong_bias.view();
  expect_error(b->prepare_linear(p, bad).status(), "expected shape [1, 5], got [1, 4]");
  Problem fp8 = p;
  fp8.act = ActKey::kFP8StaticTensor;
  bad = lw;
  bad.input_scale = 0.0f;
  expect_error(b->prepare_linear(fp8, bad).status(), "input_scale");

  auto prepared = b->prepare_linear(p, lw);
  ASSERT_TRUE(prepared.ok());
  const Dense x32(DType::kF32, m, k), x(DType::kBF16, m, k), xshort(DType::kBF16, m, k - 1);
  Dense y(DType::kBF16, m, n), y4(DType::kBF16, m, 4), y32(DType::kF32, m, n);
  expect_error(b->run_linear(p, *prepared.value(), x32.view(), y.mut()),
               "linear x: expected dtype bf16, got f32");
  expect_error(b->run_linear(p, *prepared.value(), xshort.view(), y.mut()),
               "linear x: expected shape [3, 64], got [3, 63]");
  expect_error(b->run_linear(p, *prepared.value(), x.view(), y4.mut()),
               "linear y: expected shape [3, 5], got [3, 4]");
  expect_error(b->run_linear(p, *prepared.value(), x.view(), y32.mut()),
               "linear y: expected dtype bf16, got f32");
  EXPECT_TRUE(b->run_linear(p, *prepared.value(), x.view(), y.mut()).ok());
  // Prepared weights of another kind.
  struct Foreign : PreparedWeights {
    size_t bytes() const override { return 0; }
  } foreign;
  expect_error(b->run_linear(p, foreign, x.view(), y.mut()), "do not come from cpu-reference");
}

}  // namespace
}  // namespace mxq
