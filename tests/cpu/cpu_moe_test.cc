// The cpu backend's MoE against cpu-reference: every gate/up layout x activation x routing, with
// and without biases and an expert map, across weight formats and activation keys; and bitwise
// independence of the thread count. Tolerances: see the top of cpu_backend_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/backends.h"
#include "cpu/fast/cpu_backend.h"
#include "cpu_test_util.h"

namespace mxq {
namespace {

using namespace cputest;
using cpu::fast::CpuBackend;
using cpu::fast::CpuBackendOptions;
using io::GateUpLayout;

// Per-token relative norm tolerance by activation key (see cpu_backend_test.cc): FP32 vs
// float64 gate/up moves a few intermediate BF16 roundings by one ulp (2^-8 of one element);
// with the quantizing keys such a move can also change an element's FP8 (2^-3 relative) or
// FP4 (up to 2^-1) code. Each such event shifts a token's output by roughly that relative
// amount divided by sqrt(I); the bounds leave room for one or two per token at I = 64.
double moe_key_tol(ActKey a) {
  switch (a) {
    case ActKey::kBF16:
    case ActKey::kFP16: return 2e-3;
    case ActKey::kFP8StaticTensor:
    case ActKey::kFP8DynamicToken:
    case ActKey::kFP8DynamicTensor:
    case ActKey::kFP8DynamicGroup128:
    case ActKey::kMXFP8Dynamic:
    case ActKey::kMXFP6E2M3Dynamic: return 2e-2;
    case ActKey::kMXFP6E3M2Dynamic: return 4e-2;
    case ActKey::kMXFP4Dynamic: return 8e-2;
  }
  return 0;
}

struct MoECase {
  Problem p;
  Weight w13, w1, w3, w2;
  Dense b13, b1, b3, b2;
  Dense x, logits, corr;
  std::vector<int32_t> expert_map;
  int64_t e_local = 0;

  MoEWeights weights() const {
    MoEWeights w;
    if (p.moe.layout == GateUpLayout::kSeparate) {
      w.w1 = w1.view();
      w.w3 = w3.view();
      if (p.bias) {
        w.bias1 = b1.view();
        w.bias3 = b3.view();
      }
    } else {
      w.w13 = w13.view();
      if (p.bias) w.bias13 = b13.view();
    }
    w.w2 = w2.view();
    if (p.bias) w.bias2 = b2.view();
    w.input_scale13 = 0.02f;
    w.input_scale2 = 0.01f;
    return w;
  }
  MoERouting routing() const {
    MoERouting r;
    r.router_logits = logits.view();
    if (p.moe.correction_bias) r.correction_bias = corr.view();
    if (p.moe.expert_map) r.expert_map = expert_map.data();
    return r;
  }
};

MoECase make_moe(ElemType t, ActKey a, int64_t m, int64_t h, int64_t inter, int64_t experts,
                 int64_t topk, GateUpLayout layout, MoEActivation act, Routing routing,
                 bool bias, bool map, DType out, uint32_t seed) {
  MoECase c;
  c.p = Problem::moe_problem(t, a, m, h, inter, experts, topk);
  c.p.out = out;
  c.p.bias = bias;
  c.p.moe.layout = layout;
  c.p.moe.activation = act;
  c.p.moe.routing = routing;
  if (routing == Routing::kSigmoidGroupedTopK) {
    c.p.moe.n_group = 4;
    c.p.moe.topk_group = 2;
    c.p.moe.routed_scaling = 2.5f;
    c.p.moe.correction_bias = true;
  }
  c.p.moe.expert_map = map;
  c.e_local = map ? experts / 2 : experts;
  if (map) {  // every other expert is local: global 2j -> local j, odd ones elsewhere
    for (int64_t e = 0; e < experts; ++e) c.expert_map.push_back(e % 2 == 0 ? int32_t(e / 2) : -1);
  }
  // Weights ~ N(0, 1/sqrt(fan-in)) keep every activation O(1).
  const float s13 = 1.0f / std::sqrt(float(h)), s2 = 1.0f / std::sqrt(float(inter));
  if (layout == GateUpLayout::kSeparate) {
    c.w1 = make_weight(t, c.e_local, inter, h, seed + 1, s13);
    c.w3 = make_weight(t, c.e_local, inter, h, seed + 2, s13);
  } else {
    c.w13 = make_weight(t, c.e_local, 2 * inter, h, seed + 3, s13);
  }
  c.w2 = make_weight(t, c.e_local, h, inter, seed + 4, s2);
  c.b13 = Dense(DType::kBF16, c.e_local, 2 * inter, randn(size_t(c.e_local * 2 * inter), seed + 5, 0.3f));
  c.b1 = Dense(DType::kF32, c.e_local, inter, randn(size_t(c.e_local * inter), seed + 6, 0.3f));
  c.b3 = Dense(DType::kF16, c.e_local, inter, randn(size_t(c.e_local * inter), seed + 7, 0.3f));
  c.b2 = Dense(DType::kF32, c.e_local, h, randn(size_t(c.e_local * h), seed + 8, 0.3f));
  c.x = Dense(act_input_dtype(a), m, h, randn(size_t(m * h), seed + 9));
  c.logits = Dense(DType::kF32, m, experts, randn(size_t(m * experts), seed + 10, 2.0f));
  c.corr = Dense(DType::kF32, 1, experts, randn(size_t(experts), seed + 11, 0.5f));
  return c;
}

Dense run_moe(const Backend& b, const MoECase& c) {
  auto prepared = b.prepare_moe(c.p, c.weights());
  EXPECT_TRUE(prepared.ok()) << prepared.status().to_string();
  Dense y(c.p.out, c.p.m, c.p.n);
  const Status s = b.run_moe(c.p, *prepared.value(), c.x.view(), c.routing(), y.mut());
  EXPECT_TRUE(s.ok()) << s.to_string();
  return y;
}

void expect_moe_matches_reference(const MoECase& c, const Dense& y) {
  const Dense yref = run_moe(*make_cpu_reference_backend(), c);
  const double tol = moe_key_tol(c.p.act) + norm_tol(c.p.out);
  for (int64_t t = 0; t < c.p.m; ++t) {
    double err2 = 0, ref2 = 0;
    for (int64_t j = 0; j < c.p.n; ++j) {
      const double got = y.at(t * c.p.n + j), want = yref.at(t * c.p.n + j);
      err2 += (got - want) * (got - want);
      ref2 += want * want;
    }
    // A token whose experts all live on other ranks is exactly zero on both sides.
    EXPECT_LE(std::sqrt(err2), tol * std::sqrt(ref2) + (ref2 == 0 ? 0.0 : 1e-30))
        << c.p.to_string() << ", token " << t << ": relative error "
        << std::sqrt(err2 / std::max(ref2, 1e-300));
  }
}

// (layout, activation, routing): all 18 combinations; formats, keys, bias, map and output
// dtype rotate with the index so that every value of each appears several times.
class MoEVsReference
    : public ::testing::TestWithParam<std::tuple<GateUpLayout, MoEActivation, Routing>> {};

TEST_P(MoEVsReference, Modes) {
  const auto [layout, act, routing] = GetParam();
  const int idx = int(layout) * 6 + int(act) * 3 + int(routing);
  const CpuBackend cpu_backend;
  for (int v = 0; v < 3; ++v) {
    const int i = idx * 3 + v;
    const ElemType t = kAllElemTypes[size_t(i % 6)];
    const ActKey a = kAllActKeys[size_t((i / 2 + v) % 6)];
    const DType out = std::array<DType, 3>{DType::kBF16, DType::kF32, DType::kF16}[size_t(i % 3)];
    const bool bias = (i % 2) == 0, map = (i % 5) < 2;
    // M = 1 (decode), 5, 17 tokens; H, I multiples of 32 (the MX keys need them).
    const int64_t m = std::array<int64_t, 3>{1, 5, 17}[size_t(v)];
    const MoECase c = make_moe(t, a, m, 96, 64, 8, 3, layout, act, routing, bias, map, out,
                               uint32_t(1000 + i * 20));
    SCOPED_TRACE(c.p.to_string());
    ASSERT_TRUE(cpu_backend.can_implement(c.p).ok) << cpu_backend.can_implement(c.p).reason;
    expect_moe_matches_reference(c, run_moe(cpu_backend, c));
  }
}

std::string moe_param_name(
    const ::testing::TestParamInfo<std::tuple<GateUpLayout, MoEActivation, Routing>>& info) {
  std::string s = std::string(io::gate_up_layout_name(std::get<0>(info.param))) + "_" +
                  moe_activation_name(std::get<1>(info.param)) + "_" +
                  routing_name(std::get<2>(info.param));
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    AllModes, MoEVsReference,
    ::testing::Combine(::testing::Values(GateUpLayout::kChunked, GateUpLayout::kInterleaved,
                                         GateUpLayout::kSeparate),
                       ::testing::Values(MoEActivation::kSiluAndMul, MoEActivation::kSwigluOAI),
                       ::testing::Values(Routing::kSoftmaxTopK, Routing::kTopKSoftmax,
                                         Routing::kSigmoidGroupedTopK)),
    moe_param_name);

// Awkward sizes: H, I not multiples of 32 (padded weights, bf16 key), one expert, top-1.
TEST(MoEVsReferenceShapes, PaddedAndTiny) {
  const CpuBackend b;
  for (ElemType t : kAllElemTypes) {
    MoECase c = make_moe(t, ActKey::kBF16, 3, 40, 20, 4, 2, GateUpLayout::kInterleaved,
                         MoEActivation::kSwigluOAI, Routing::kTopKSoftmax, true, false,
                         DType::kF32, 77 + uint32_t(t));
    expect_moe_matches_reference(c, run_moe(b, c));
    c = make_moe(t, ActKey::kFP16, 2, 32, 32, 1, 1, GateUpLayout::kChunked,
                 MoEActivation::kSiluAndMul, Routing::kSoftmaxTopK, false, false, DType::kF16,
                 88 + uint32_t(t));
    expect_moe_matches_reference(c, run_moe(b, c));
  }
}

// A key the rotation above does not reach, on every layout, with and without a local-expert
// map, against cpu-reference; and its scales really are used: the per-token key gives another
// result (for a batch whose tokens differ in scale, or groups within a token).
void key_against_reference_and_token_key(ActKey key, int64_t h, int64_t inter,
                                         std::initializer_list<int64_t> ms, uint32_t seed) {
  const CpuBackend b;
  int i = 0;
  for (GateUpLayout layout : {GateUpLayout::kChunked, GateUpLayout::kInterleaved, GateUpLayout::kSeparate})
    for (int64_t m : ms) {
      const bool map = (i++ % 2) == 1;
      MoECase c = make_moe(ElemType::kE2M1, key, m, h, inter, 8, 3, layout,
                           MoEActivation::kSiluAndMul, Routing::kSoftmaxTopK, true, map,
                           DType::kF32, seed + uint32_t(40 * i));
      SCOPED_TRACE(c.p.to_string());
      ASSERT_TRUE(b.can_implement(c.p).ok) << b.can_implement(c.p).reason;
      const Dense y = run_moe(b, c);
      expect_moe_matches_reference(c, y);
      if (m == 1 && key == ActKey::kFP8DynamicTensor) continue;  // one token: the token key's scale
      MoECase t = c;
      t.p.act = ActKey::kFP8DynamicToken;
      const Dense yt = run_moe(b, t);
      bool differ = false;
      for (int64_t j = 0; j < m * c.p.n; ++j) differ = differ || yt.at(size_t(j)) != y.at(size_t(j));
      EXPECT_TRUE(differ) << act_key_name(key) << " gave the per-token key's output";
    }
}

// fp8-dynamic-tensor: the whole call's scale (M = 1 and 17).
TEST(MoEVsReferenceShapes, Fp8DynamicTensor) {
  key_against_reference_and_token_key(ActKey::kFP8DynamicTensor, 96, 64, {1, 17}, 7000);
}

// fp8-dynamic-group128: H = 320 and I = 256, so x and the intermediate span several 128-groups
// (H's last one short).
TEST(MoEVsReferenceShapes, Fp8DynamicGroup128) {
  key_against_reference_and_token_key(ActKey::kFP8DynamicGroup128, 320, 256, {1, 9}, 9000);
}

TEST(MoEDeterminism, ThreadCountAndIsaDoNotChangeBits) {
  for (GateUpLayout layout : {GateUpLayout::kChunked, GateUpLayout::kSeparate}) {
    const MoECase c = make_moe(ElemType::kE2M1, ActKey::kMXFP8Dynamic, 23, 128, 96, 8, 2, layout,
                               MoEActivation::kSwigluOAI, Routing::kSoftmaxTopK, true, true,
                               DType::kF32, 5);
    CpuBackendOptions o;
    o.threads = 1;
    const Dense base = run_moe(CpuBackend(o), c);
    for (int threads : {2, 3, 8}) {
      o.threads = threads;
      o.min_rows_per_thread = 1;
      EXPECT_EQ(base.bytes, run_moe(CpuBackend(o), c).bytes) << threads << " threads";
    }
    for (cpu::fast::Isa isa :
         {cpu::fast::Isa::kScalar, cpu::fast::Isa::kAvx2, cpu::fast::Isa::kAvx512}) {
      o.isa = isa;
      EXPECT_EQ(base.bytes, run_moe(CpuBackend(o), c).bytes) << cpu::fast::isa_name(isa);
    }
  }
}

TEST(MoEErrors, BadViewsSayWhat) {
  const CpuBackend b;
  MoECase c = make_moe(ElemType::kE2M1, ActKey::kBF16, 2, 64, 32, 4, 2, GateUpLayout::kChunked,
                       MoEActivation::kSiluAndMul, Routing::kSoftmaxTopK, false, false,
                       DType::kBF16, 3);
  MoEWeights w = c.weights();
  w.w1 = c.w13.view();  // separate-layout tensors for a fused layout
  auto bad = b.prepare_moe(c.p, w);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("w1/w3"), std::string::npos) << bad.status().message();
  w = c.weights();
  w.w2.n = 63;
  bad = b.prepare_moe(c.p, w);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("moe w2"), std::string::npos) << bad.status().message();
  // An expert map whose local index is out of range.
  c = make_moe(ElemType::kE2M1, ActKey::kBF16, 2, 64, 32, 4, 4, GateUpLayout::kChunked,
               MoEActivation::kSiluAndMul, Routing::kSoftmaxTopK, false, true, DType::kBF16, 4);
  c.expert_map[1] = 7;
  auto prepared = b.prepare_moe(c.p, c.weights()).value();
  Dense y(DType::kBF16, 2, 64);
  const Status s = b.run_moe(c.p, *prepared, c.x.view(), c.routing(), y.mut());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("maps to local 7"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace mxq
