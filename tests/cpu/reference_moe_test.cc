// cpu-reference MoE against a direct computation written here (routing by sorting, weights from
// the core dequantizer, the activation formulas, the intermediate rounding, the weighted sum).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "cpu/backends.h"
#include "cpu/common/routing.h"
#include "cpu/reference/reference_backend.h"
#include "ref_test_util.h"

namespace mxq {
namespace {

using io::GateUpLayout;
using reftest::Dense;
using reftest::TestMX;

struct Routed {
  std::vector<int32_t> ids;   // [M, k]
  std::vector<float> weights;  // [M, k]
};

// Stable descending order of a row of logits (ties: lower index first).
std::vector<int> order_desc(const float* l, int n) {
  std::vector<int> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
  return idx;
}

// topk-softmax (gpt-oss) or softmax-topk with renormalisation (equal weights: both are the
// softmax over the chosen logits).
Routed naive_route(const std::vector<float>& logits, int64_t m, int e, int k) {
  Routed r;
  for (int64_t t = 0; t < m; ++t) {
    const float* l = logits.data() + t * e;
    const std::vector<int> o = order_desc(l, e);
    double z = 0;
    for (int j = 0; j < k; ++j) z += std::exp(double(l[o[size_t(j)]]) - double(l[o[0]]));
    for (int j = 0; j < k; ++j) {
      r.ids.push_back(o[size_t(j)]);
      r.weights.push_back(float(std::exp(double(l[o[size_t(j)]]) - double(l[o[0]])) / z));
    }
  }
  return r;
}

// Decoded weights of the local experts, in "gate row i / up row i" terms.
struct NaiveWeights {
  std::function<float(int64_t le, int64_t i, int64_t c)> gate, up, down;  // down(le, hrow, i)
  std::function<double(int64_t le, int64_t i)> gate_bias, up_bias, down_bias;
};

double act_fn(const MoEParams& q, double g, double u) {
  if (q.activation == MoEActivation::kSiluAndMul) return g * (1.0 / (1.0 + std::exp(-g))) * u;
  const double limit = double(q.swiglu_limit), alpha = double(q.swiglu_alpha);
  g = std::min(g, limit);
  u = std::max(-limit, std::min(u, limit));
  return g * (1.0 / (1.0 + std::exp(-(alpha * g)))) * (u + 1.0);
}

// y [M, H] in float64. map: global -> local (-1: not local), empty for identity.
std::vector<double> naive_moe(const Problem& p, const std::vector<float>& x, const Routed& r,
                              const NaiveWeights& w, const std::vector<int>& map,
                              float s13 = 1.0f, float s2 = 1.0f, int* clamps = nullptr) {
  const int64_t h = p.n, inter = p.k, k = p.moe.topk;
  std::vector<double> y(size_t(p.m * h), 0.0);
  // x quantized as a tensor (per row, or one scale for fp8-dynamic-tensor); every pair's
  // intermediate row first, then quantized the same way over all pairs, then the down GEMM.
  const std::vector<float> xq_all = reftest::expected_act_tensor(p.act, x, p.m, s13);
  struct NaivePair {
    int64_t t;
    int le;
    float wt;
  };
  std::vector<NaivePair> all_pairs;
  std::vector<float> a_all;  // [pairs, I]
  for (int64_t t = 0; t < p.m; ++t) {
    const std::vector<float> xq(xq_all.begin() + t * h, xq_all.begin() + (t + 1) * h);
    std::vector<std::pair<int, float>> pairs;  // (local expert, weight), ascending expert
    for (int64_t j = 0; j < k; ++j) {
      const int e = r.ids[size_t(t * k + j)];
      const int local = map.empty() ? e : map[size_t(e)];
      if (local >= 0) pairs.push_back({local, r.weights[size_t(t * k + j)]});
    }
    std::sort(pairs.begin(), pairs.end());
    for (const auto& [le, wt] : pairs) {
      std::vector<float> a(static_cast<size_t>(inter));
      for (int64_t i = 0; i < inter; ++i) {
        double g = 0, u = 0;
        for (int64_t c = 0; c < h; ++c) g += double(xq[size_t(c)]) * double(w.gate(le, i, c));
        for (int64_t c = 0; c < h; ++c) u += double(xq[size_t(c)]) * double(w.up(le, i, c));
        g += w.gate_bias(le, i);
        u += w.up_bias(le, i);
        const double lim = double(p.moe.swiglu_limit);
        if (clamps && (g > lim || std::fabs(u) > lim)) ++*clamps;
        a[size_t(i)] = reftest::convert_out(act_fn(p.moe, g, u), act_input_dtype(p.act));
      }
      all_pairs.push_back({t, le, wt});
      a_all.insert(a_all.end(), a.begin(), a.end());
    }
  }
  const std::vector<float> aq_all =
      reftest::expected_act_tensor(p.act, a_all, int64_t(all_pairs.size()), s2);
  for (size_t pi = 0; pi < all_pairs.size(); ++pi) {
    const auto [t, le, wt] = all_pairs[pi];
    const float* aq = aq_all.data() + pi * size_t(inter);
    for (int64_t c = 0; c < h; ++c) {
      double o = 0;
      for (int64_t i = 0; i < inter; ++i) o += double(aq[size_t(i)]) * double(w.down(le, c, i));
      o += w.down_bias(le, c);
      y[size_t(t * h + c)] += double(wt) * o;
    }
  }
  return y;
}

// Chunked-layout accessors over w13 [E, 2I, H], w2 [E, H, I] and optional biases.
NaiveWeights chunked(const TestMX& w13, const TestMX& w2, int64_t inter, const Dense* b13,
                     const Dense* b2) {
  NaiveWeights n;
  n.gate = [&w13](int64_t e, int64_t i, int64_t c) { return w13.at(e, i, c); };
  n.up = [&w13, inter](int64_t e, int64_t i, int64_t c) { return w13.at(e, inter + i, c); };
  n.down = [&w2](int64_t e, int64_t r, int64_t i) { return w2.at(e, r, i); };
  n.gate_bias = [b13, inter](int64_t e, int64_t i) {
    return b13 ? double(b13->at(size_t(e * 2 * inter + i))) : 0.0;
  };
  n.up_bias = [b13, inter](int64_t e, int64_t i) {
    return b13 ? double(b13->at(size_t(e * 2 * inter + inter + i))) : 0.0;
  };
  n.down_bias = [b2, &w2](int64_t e, int64_t r) {
    return b2 ? double(b2->at(size_t(e * w2.n + r))) : 0.0;
  };
  return n;
}

std::vector<float> run_moe(const Problem& p, const MoEWeights& w, const Dense& x,
                           const MoERouting& r) {
  const std::unique_ptr<Backend> b = make_cpu_reference_backend();
  auto prepared = b->prepare_moe(p, w);
  EXPECT_TRUE(prepared.ok()) << prepared.status().message();
  if (!prepared.ok()) return {};
  EXPECT_EQ(prepared.value()->bytes(), 0u);
  Dense y(p.out, p.m, p.n);
  const Status s = b->run_moe(p, *prepared.value(), x.view(), r, y.mut());
  EXPECT_TRUE(s.ok()) << s.message();
  return y.values();
}

void expect_matches(const std::vector<float>& got, const std::vector<double>& want, DType out) {
  ASSERT_EQ(got.size(), want.size());
  int nonzero = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], reftest::convert_out(want[i], out)) << "at " << i << " want " << want[i];
    nonzero += want[i] != 0.0 ? 1 : 0;
  }
  EXPECT_GT(nonzero, 0);
}

// A weight holding only the experts `keep` of `a`, in that order.
TestMX select_experts(const TestMX& a, const std::vector<int64_t>& keep) {
  TestMX m = a;
  m.batch = int64_t(keep.size());
  const int64_t pb = packed_bytes(a.elem, a.k) * a.n, sb = a.k / 32 * a.n, db = a.k * a.n;
  m.q.rows = m.batch * a.n;
  m.q.packed.clear();
  m.q.scales.clear();
  m.deq.clear();
  for (int64_t e : keep) {
    m.q.packed.insert(m.q.packed.end(), a.q.packed.begin() + e * pb, a.q.packed.begin() + (e + 1) * pb);
    m.q.scales.insert(m.q.scales.end(), a.q.scales.begin() + e * sb, a.q.scales.begin() + (e + 1) * sb);
    m.deq.insert(m.deq.end(), a.deq.begin() + e * db, a.deq.begin() + (e + 1) * db);
  }
  return m;
}

TEST(ReferenceMoE, GptOssInterleavedSwigluWithBiases) {
  // gpt-oss: interleaved gate/up rows, BF16 biases, swigluoai (alpha 1.702, limit 7), top-k of
  // the logits then softmax. Weights large enough that the clamps engage.
  const int64_t m = 5, h = 64, inter = 32, e = 4, k = 2;
  Problem p = Problem::moe_problem(ElemType::kE2M1, ActKey::kBF16, m, h, inter, e, k);
  p.bias = true;
  p.moe.layout = GateUpLayout::kInterleaved;
  p.moe.activation = MoEActivation::kSwigluOAI;
  p.moe.routing = Routing::kTopKSoftmax;
  const TestMX w13 = reftest::make_mx(ElemType::kE2M1, e, 2 * inter, h, 51, 0.5f);
  const TestMX w2 = reftest::make_mx(ElemType::kE2M1, e, h, inter, 52, 0.2f);
  const Dense b13(DType::kBF16, e, 2 * inter, reftest::random_floats(size_t(e * 2 * inter), 53));
  const Dense b2(DType::kBF16, e, h, reftest::random_floats(size_t(e * h), 54));
  const Dense x(DType::kBF16, m, h, reftest::random_floats(size_t(m * h), 55));
  const std::vector<float> logits = reftest::random_floats(size_t(m * e), 56, 2.0f);
  MoEWeights mw;
  mw.w13 = w13.view();
  mw.w2 = w2.view();
  mw.bias13 = b13.view();
  mw.bias2 = b2.view();
  MoERouting r;
  r.router_logits = {logits.data(), DType::kF32, m, e};
  const std::vector<float> got = run_moe(p, mw, x, r);

  NaiveWeights nw;  // interleaved: gate = row 2i, up = row 2i + 1
  nw.gate = [&](int64_t le, int64_t i, int64_t c) { return w13.at(le, 2 * i, c); };
  nw.up = [&](int64_t le, int64_t i, int64_t c) { return w13.at(le, 2 * i + 1, c); };
  nw.down = [&](int64_t le, int64_t row, int64_t i) { return w2.at(le, row, i); };
  nw.gate_bias = [&](int64_t le, int64_t i) { return double(b13.at(size_t(le * 2 * inter + 2 * i))); };
  nw.up_bias = [&](int64_t le, int64_t i) { return double(b13.at(size_t(le * 2 * inter + 2 * i + 1))); };
  nw.down_bias = [&](int64_t le, int64_t row) { return double(b2.at(size_t(le * h + row))); };
  int clamps = 0;
  const std::vector<double> want =
      naive_moe(p, x.values(), naive_route(logits, m, int(e), int(k)), nw, {}, 1, 1, &clamps);
  EXPECT_GT(clamps, 0) << "the test should exercise the swiglu limit";
  expect_matches(got, want, DType::kBF16);
}

TEST(ReferenceMoE, ChunkedInterleavedSeparateAgree) {
  const int64_t m = 6, h = 64, inter = 32, e = 4, k = 2;
  const TestMX chunk = reftest::make_mx(ElemType::kE4M3, e, 2 * inter, h, 61);
  const TestMX w2 = reftest::make_mx(ElemType::kE4M3, e, h, inter, 62);
  const std::vector<float> b13v = reftest::random_floats(size_t(e * 2 * inter), 63);
  // Interleaved row 2i = chunked row i (gate), row 2i + 1 = chunked row I + i (up).
  const TestMX inter_w = reftest::select_rows(chunk, 2 * inter, [&](int64_t, int64_t r) {
    return r % 2 == 0 ? r / 2 : inter + r / 2;
  });
  const TestMX w1 = reftest::select_rows(chunk, inter, [](int64_t, int64_t r) { return r; });
  const TestMX w3 = reftest::select_rows(chunk, inter, [&](int64_t, int64_t r) { return inter + r; });
  std::vector<float> b13i(b13v.size()), b1, b3;
  for (int64_t ex = 0; ex < e; ++ex) {
    for (int64_t i = 0; i < inter; ++i) {
      const float g = b13v[size_t(ex * 2 * inter + i)], u = b13v[size_t(ex * 2 * inter + inter + i)];
      b13i[size_t(ex * 2 * inter + 2 * i)] = g;
      b13i[size_t(ex * 2 * inter + 2 * i + 1)] = u;
      b1.push_back(g);
      b3.push_back(u);
    }
  }
  const Dense b13c(DType::kF32, e, 2 * inter, b13v), b13il(DType::kF32, e, 2 * inter, b13i),
      b1d(DType::kF32, e, inter, b1), b3d(DType::kF32, e, inter, b3);
  const Dense x(DType::kBF16, m, h, reftest::random_floats(size_t(m * h), 64));
  const std::vector<float> logits = reftest::random_floats(size_t(m * e), 65);
  MoERouting r;
  r.router_logits = {logits.data(), DType::kF32, m, e};

  std::vector<std::vector<float>> outs;
  for (GateUpLayout layout :
       {GateUpLayout::kChunked, GateUpLayout::kInterleaved, GateUpLayout::kSeparate}) {
    Problem p = Problem::moe_problem(ElemType::kE4M3, ActKey::kBF16, m, h, inter, e, k);
    p.out = DType::kF32;
    p.bias = true;
    p.moe.layout = layout;
    MoEWeights mw;
    mw.w2 = w2.view();
    if (layout == GateUpLayout::kChunked) {
      mw.w13 = chunk.view();
      mw.bias13 = b13c.view();
    } else if (layout == GateUpLayout::kInterleaved) {
      mw.w13 = inter_w.view();
      mw.bias13 = b13il.view();
    } else {
      mw.w1 = w1.view();
      mw.w3 = w3.view();
      mw.bias1 = b1d.view();
      mw.bias3 = b3d.view();
    }
    outs.push_back(run_moe(p, mw, x, r));
  }
  EXPECT_EQ(outs[0], outs[1]);
  EXPECT_EQ(outs[0], outs[2]);
  // And the chunked result is the direct computation (softmax-topk, renormalised).
  Problem p = Problem::moe_problem(ElemType::kE4M3, ActKey::kBF16, m, h, inter, e, k);
  const std::vector<double> want = naive_moe(p, x.values(), naive_route(logits, m, int(e), int(k)),
                                             chunked(chunk, w2, inter, &b13c, nullptr), {});
  expect_matches(outs[0], want, DType::kF32);
}

TEST(ReferenceMoE, ExpertWithZeroTokensIsNeverRead) {
  // Expert 3 gets no token; its weights are poisoned with NaN scales and must not matter.
  const int64_t m = 7, h = 32, inter = 32, e = 4, k = 1;
  Problem p = Problem::moe_problem(ElemType::kE2M3, ActKey::kBF16, m, h, inter, e, k);
  p.out = DType::kF32;
  TestMX w13 = reftest::make_mx(ElemType::kE2M3, e, 2 * inter, h, 71);
  TestMX w2 = reftest::make_mx(ElemType::kE2M3, e, h, inter, 72);
  const NaiveWeights nw = chunked(w13, w2, inter, nullptr, nullptr);  // reads deq (clean)
  std::fill(w13.q.scales.begin() + 3 * 2 * inter, w13.q.scales.end(), uint8_t(0xFF));
  std::fill(w2.q.scales.begin() + 3 * h, w2.q.scales.end(), uint8_t(0xFF));
  std::vector<float> logits = reftest::random_floats(size_t(m * e), 73);
  for (int64_t t = 0; t < m; ++t) logits[size_t(t * e + 3)] = -100.0f;
  const Dense x(DType::kBF16, m, h, reftest::random_floats(size_t(m * h), 74));
  MoEWeights mw;
  mw.w13 = w13.view();
  mw.w2 = w2.view();
  MoERouting r;
  r.router_logits = {logits.data(), DType::kF32, m, e};
  const std::vector<float> got = run_moe(p, mw, x, r);
  for (float v : got) EXPECT_TRUE(std::isfinite(v));
  expect_matches(got, naive_moe(p, x.values(), naive_route(logits, m, int(e), int(k)), nw, {}),
                 DType::kF32);
}

TEST(ReferenceMoE, AllTokensOnOneExpert) {
  const int64_t m = 17, h = 64, inter = 64, e = 4, k = 1;
  Problem p = Problem::moe_problem(ElemType::kE3M2, ActKey::kBF16, m, h, inter, e, k);
  const TestMX w13 = reftest::make_mx(ElemType::kE3M2, e, 2 * inter, h, 81);
  const TestMX w2 = reftest::make_mx(ElemType::kE3M2, e, h, inter, 82);
  std::vector<float> logits(size_t(m * e), 0.0f);
  for (int64_t t = 0; t < m; ++t) logits[size_t(t * e + 2)] = 5.0f;
  const Dense x(DType::kBF16, m, h, reftest::random_floats(size_t(m * h), 83));
  MoEWeights mw;
  mw.w13 = w13.view();
  mw.w2 = w2.view();
  MoERouting r;
  r.router_logits = {logits.data(), DType::kF32, m, e};
  const Routed routed = naive_route(logits, m, int(e), int(k));
  for (int32_t id : routed.ids) ASSERT_EQ(id, 2);
  for (float wt : routed.weights) ASSERT_EQ(wt, 1.0f);  // top-1 renormalised
  expect_matches(run_moe(p, mw, x, r),
                 naive_moe(p, x.values(), routed, chunked(w13, w2, inter, nullptr, nullptr), {}),
                 DType::kBF16);
}

TEST(ReferenceMoE, LocalExpertMap) {
  // 4 global experts, this rank holds 1 and 3 (local 0 and 1). Token 0 routes only to 0 and 2.
  const int64_t m = 6, h = 32, inter = 32, e = 4, k = 2;
  Problem p = Problem::moe_problem(ElemType::kE2M1, ActKey::kBF16, m, h, inter, e, k);
  p.out = DType::kF32;
  p.bias = true;
  const TestMX w13 = reftest::make_mx(ElemType::kE2M1, e, 2 * inter, h, 91);
  const TestMX w2 = reftest::make_mx(ElemType::kE2M1, e, h, inter, 92);
  const std::vector<float> b2v = reftest::random_floats(size_t(e * h), 93);
  std::vector<float> logits = reftest::random_floats(size_t(m * e), 94);
  logits[0] = logits[2] = 10.0f;
  const Dense x(DType::kBF16, m, h, reftest::random_floats(size_t(m * h), 95));
  MoERouting r;
  r.router_logits = {logits.data(), DType::kF32, m, e};

  auto run_local = [&](const std::vector<int64_t>& keep, const std::vector<int32_t>& map) {
    const TestMX l13 = select_experts(w13, keep), l2 = select_experts(w2, keep);
    std::vector<float> lb2;
    for (int64_t g : keep) lb2.insert(lb2.end(), b2v.begin() + g * h, b2v.begin() + (g + 1) * h);
    const Dense b2(DType::kF32, int64_t(keep.size()), h, lb2);
    MoEWeights mw;
    mw.w13 = l13.view();
    mw.w2 = l2.view();
    mw.bias2 = b2.view();
    Problem pm = p;
    pm.moe.expert_map = true;
    MoERouting rm = r;
    rm.expert_map = map.data();
    const std::vector<float> got = run_moe(pm, mw, x, rm);
    const std::vector<double> want = naive_moe(
        pm, x.values(), naive_route(logits, m, int(e), int(k)),
        chunked(l13, l2, inter, nullptr, &b2), std::vector<int>(map.begin(), map.end()));
    expect_matches(got, want, DType::kF32);
    return got;
  };
  const std::vector<float> y13 = run_local({1, 3}, {-1, 0, -1, 1});
  for (int64_t c = 0; c < h; ++c) EXPECT_EQ(y13[size_t(c)], 0.0f) << "token 0 has no local expert";
  const std::vector<float> y02 = run_local({0, 2}, {0, -1, 1, -1});

  // The two ranks together give the full layer.
  const Dense b2all(DType::kF32, e, h, b2v);
  MoEWeights mw;
  mw.w13 = w13.view();
  mw.w2 = w2.view();
  mw.bias2 = b2all.view();
  const std::vector<float> full = run_moe(p, mw, x, r);
  for (size_t i = 0; i < full.size(); ++i)
    EXPECT_NEAR(full[i], y13[i] + y02[i], 1e-5 * (1 + std::fabs(full[i])));

  // Errors: a map the problem does not declare; a local index past the prepared experts.
  const std::unique_ptr<Backend> b = make_cpu_reference_backend();
  auto prepared = b->prepare_moe(p, mw);
  ASSERT_TRUE(prepared.ok());
  Dense y(p.out, m, h);
  const std::vector<int32_t> map = {0, 1, 2, 3};
  MoERouting rm = r;
  rm.expert_map = map.data();
  EXPECT_FALSE(b->run_moe(p, *prepared.value(), x.view(), rm, y.mut()).ok());
  Problem pm = p;
  pm.moe.expert_map = true;
  const TestMX l13 = select_experts(w13, {0, 1}), l2 = select_experts(w2, {0, 1});
  const Dense b2(DType::kF32, 2, h, std::vector<float>(b2v.begin(), b2v.begin() + 2 * h));
  MoEWeights lw;
  lw.w13 = l13.view();
  lw.w2 = l2.view();
  lw.bias2 = b2.view();
  auto lp = b->prepare_moe(pm, lw);
  ASSERT_TRUE(lp.ok()) << lp.status().message();
  const Status s = b->run_moe(pm, *lp.value(), x.view(), rm, y.mut());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("only 2 local experts"), std::string::npos) << s.message();
}

TEST(ReferenceMoE, EveryActKeyWithStaticScales) {
  const int64_t m = 4, h = 64, inter = 64, e = 3, k = 2;
  const TestMX w13 = reftest::make_mx(ElemType::kE2M1, e, 2 * inter, h, 101);
  const TestMX w2 = reftest::make_mx(ElemType::kE2M1, e, h, inter, 102);
  const std::vector<float> logits = reftest::random_floats(size_t(m * e), 103);
  const std::vector<float> xv = reftest::random_floats(size_t(m * h), 104, 2.0f);
  for (ActKey key : kAllActKeys) {
    Problem p = Problem::moe_problem(ElemType::kE2M1, key, m, h, inter, e, k);
    p.out = DType::kF32;
    const Dense x(act_input_dtype(key), m, h, xv);
    MoEWeights mw;
    mw.w13 = w13.view();
    mw.w2 = w2.view();
    mw.input_scale13 = 0.01f;
    mw.input_scale2 = 0.003f;
    MoERouting r;
    r.router_logits = {logits.data(), DType::kF32, m, e};
    const std::vector<double> want =
        naive_moe(p, x.values(), naive_route(logits, m, int(e), int(k)),
                  chunked(w13, w2, inter, nullptr, nullptr), {}, 0.01f, 0.003f);
    SCOPED_TRACE(act_key_name(key));
    expect_matches(run_moe(p, mw, x, r), want, DType::kF32);
  }
}

// fp8-dynamic-tensor in an MoE layer: one scale over the whole x for gate/up and one over the
// whole intermediate of the call (every pair) for down, so a token's output depends on the
// other tokens of the call; fp8-dynamic-token's does not.
TEST(ReferenceMoE, Fp8DynamicTensorScaleSpansTheCall) {
  const int64_t m = 4, h = 64, inter = 64, e = 3, k = 2;
  const TestMX w13 = reftest::make_mx(ElemType::kE4M3, e, 2 * inter, h, 131);
  const TestMX w2 = reftest::make_mx(ElemType::kE4M3, e, h, inter, 132);
  const std::vector<float> logits = reftest::random_floats(size_t(m * e), 133);
  std::vector<float> xv = reftest::random_floats(size_t(m * h), 134);
  for (int64_t c = 0; c < h; ++c) xv[size_t(3 * h + c)] *= 30.0f;  // token 3 holds the amax
  for (ActKey key : {ActKey::kFP8DynamicToken, ActKey::kFP8DynamicTensor}) {
    SCOPED_TRACE(act_key_name(key));
    Problem p = Problem::moe_problem(ElemType::kE4M3, key, m, h, inter, e, k);
    p.out = DType::kF32;
    MoEWeights mw;
    mw.w13 = w13.view();
    mw.w2 = w2.view();
    const Dense x(DType::kBF16, m, h, xv);
    MoERouting r;
    r.router_logits = {logits.data(), DType::kF32, m, e};
    const std::vector<float> batch = run_moe(p, mw, x, r);
    const std::vector<double> want =
        naive_moe(p, x.values(), naive_route(logits, m, int(e), int(k)),
                  chunked(w13, w2, inter, nullptr, nullptr), {});
    expect_matches(batch, want, DType::kF32);
    // Token 0 alone.
    Problem p1 = p;
    p1.m = 1;
    const Dense x1(DType::kBF16, 1, h, std::vector<float>(xv.begin(), xv.begin() + h));
    MoERouting r1;
    r1.router_logits = {logits.data(), DType::kF32, 1, e};
    const std::vector<float> alone = run_moe(p1, mw, x1, r1);
    const std::vector<float> row0(batch.begin(), batch.begin() + h);
    if (key == ActKey::kFP8DynamicToken) {
      EXPECT_EQ(alone, row0);
    } else {
      EXPECT_NE(alone, row0);
    }
  }
}

TEST(ReferenceMoE, DeepSeekRoutingScalesTheOutput) {
  // Separate w1/w3, sigmoid grouped top-k with a correction bias: routed_scaling 2.5 scales y.
  const int64_t m = 5, h = 32, inter = 32, e = 8, k = 2;
  const TestMX w1 = reftest::make_mx(ElemType::kE4M3, e, inter, h, 111);
  const TestMX w3 = reftest::make_mx(ElemType::kE4M3, e, inter, h, 112);
  const TestMX w2 = reftest::make_mx(ElemType::kE4M3, e, h, inter, 113);
  const std::vector<float> logits = reftest::random_floats(size_t(m * e), 114);
  const std::vector<float> bias = reftest::random_floats(size_t(e), 115, 0.1f);
  const Dense x(DType::kBF16, m, h, reftest::random_floats(size_t(m * h), 116));
  MoEWeights mw;
  mw.w1 = w1.view();
  mw.w3 = w3.view();
  mw.w2 = w2.view();
  MoERouting r;
  r.router_logits = {logits.data(), DType::kF32, m, e};
  r.correction_bias = {bias.data(), DType::kF32, 1, e};
  std::vector<float> ys[2];
  for (int i = 0; i < 2; ++i) {
    Problem p = Problem::moe_problem(ElemType::kE4M3, ActKey::kBF16, m, h, inter, e, k);
    p.out = DType::kF32;
    p.moe.layout = GateUpLayout::kSeparate;
    p.moe.routing = Routing::kSigmoidGroupedTopK;
    p.moe.n_group = 4;
    p.moe.topk_group = 2;
    p.moe.correction_bias = true;
    p.moe.routed_scaling = i == 0 ? 1.0f : 2.5f;
    ys[i] = run_moe(p, mw, x, r);
  }
  double norm = 0;
  for (size_t i = 0; i < ys[0].size(); ++i) {
    EXPECT_NEAR(ys[1][i], 2.5 * ys[0][i], 1e-5 * (1 + std::fabs(ys[1][i])));
    norm += std::fabs(ys[0][i]);
  }
  EXPECT_GT(norm, 0.0);
}

TEST(ReferenceMoE, ErrorsNameExpectedAndGot) {
  const std::unique_ptr<Backend> b = make_cpu_reference_backend();
  const int64_t m = 2, h = 32, inter = 32, e = 4, k = 2;
  const Problem p = Problem::moe_problem(ElemType::kE2M1, ActKey::kBF16, m, h, inter, e, k);
  const TestMX w13 = reftest::make_mx(ElemType::kE2M1, e, 2 * inter, h, 121);
  const TestMX w1 = reftest::make_mx(ElemType::kE2M1, e, inter, h, 122);
  const TestMX w2 = reftest::make_mx(ElemType::kE2M1, e, h, inter, 123);
  MoEWeights mw;
  mw.w13 = w13.view();
  mw.w2 = w2.view();
  ASSERT_TRUE(b->prepare_moe(p, mw).ok());

  auto expect_error = [](const Status& s, const std::string& needle) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  MoEWeights bad = mw;
  bad.w13 = {};
  bad.w1 = w1.view();
  bad.w3 = w1.view();
  expect_error(b->prepare_moe(p, bad).status(), "moe w13: missing");
  Problem sep = p;
  sep.moe.layout = GateUpLayout::kSeparate;
  expect_error(b->prepare_moe(sep, mw).status(), "moe w1: missing");
  bad = mw;
  bad.w1 = w1.view();
  expect_error(b->prepare_moe(p, bad).status(), "chunked layout takes the fused w13");
  bad = mw;
  bad.w2.n = 31;
  expect_error(b->prepare_moe(p, bad).status(), "moe w2: expected shape [4, 32, 32], got [4, 31, 32]");
  Problem more = p;
  more.moe.experts = 8;
  expect_error(b->prepare_moe(more, mw).status(), "expected 8 experts (no expert map), got 4");
  const Dense b13(DType::kBF16, e, inter);
  bad = mw;
  bad.bias13 = b13.view();
  expect_error(b->prepare_moe(p, bad).status(), "the problem has no bias");
  Problem biased = p;
  biased.bias = true;
  expect_error(b->prepare_moe(biased, bad).status(), "moe bias13: expected shape [4, 64], got [4, 32]");

  auto prepared = b->prepare_moe(p, mw);
  ASSERT_TRUE(prepared.ok());
  const std::vector<float> logits(size_t(m * e), 0.0f);
  MoERouting r;
  r.router_logits = {logits.data(), DType::kF32, m, e};
  const Dense x(DType::kBF16, m, h), x16(DType::kF16, m, h);
  Dense y(DType::kBF16, m, h), yshort(DType::kBF16, m - 1, h);
  EXPECT_TRUE(b->run_moe(p, *prepared.value(), x.view(), r, y.mut()).ok());
  expect_error(b->run_moe(p, *prepared.value(), x16.view(), r, y.mut()),
               "moe x: expected dtype bf16, got f16");
  expect_error(b->run_moe(p, *prepared.value(), x.view(), r, yshort.mut()),
               "moe y: expected shape [2, 32], got [1, 32]");
  MoERouting rbad = r;
  rbad.router_logits.rows = 1;
  expect_error(b->run_moe(p, *prepared.value(), x.view(), rbad, y.mut()),
               "moe router_logits: expected [2, 4], got [1, 4]");
  const TestMX lw = reftest::make_mx(ElemType::kE2M1, 1, h, h, 1);
  auto lin = b->prepare_linear(Problem::linear(ElemType::kE2M1, ActKey::kBF16, m, h, h),
                               LinearWeights{lw.view(), {}, 1.0f});
  ASSERT_TRUE(lin.ok());
  expect_error(b->run_moe(p, *lin.value(), x.view(), r, y.mut()), "do not come from cpu-reference");
}

}  // namespace
}  // namespace mxq
