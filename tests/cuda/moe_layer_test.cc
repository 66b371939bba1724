// The CUDA MoE layer on the GPU: the gate/up repack orders against their CPU definition, and the
// whole layer (routing, dispatch, grouped GEMMs with the fused activation, combine) through
// each backend that runs it (cuda-mma's grouped GEMMs, and cuda-hopper's on sm_90: every test
// is instantiated for both) against cpu-reference: every routing mode, gate/up layout, format, activation, bias,
// activation dtype and output dtype; every token-block size and the split-rows variant; experts
// that get no token and one expert that gets every token; the local-expert map; scales off the
// exact-fold range (FP32 scale path); staged prepare from host memory in chunks of experts;
// determinism and CUDA-graph capture. (The shared case list in tests/cases runs cuda-mma's MoE
// through host pointers too.) Skipped with a printed reason when no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cpu/reference/reference_backend.h"
#include "cuda/common/pdl.h"
#include "cuda/gemm/frag_layout.h"
#include "cuda/gemm/repack.h"
#include "cuda/moe/moe_layer.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"
#include "mxq/select.h"
#include "gpu_test_util.h"
#include "test_weights.h"
#include "tolerance.h"  // tests/cases: the named tolerances against cpu-reference

namespace mxq {
namespace {

using testing::Dev;
using testing::random_weights;
using testing::Weights;

// The backend the current test runs (the CudaMoE fixture's parameter).
const char* g_backend = "cuda-mma";

TEST(CudaMoERepack, GateUpOrdersGpuEqualsCpu) {
  SKIP_WITHOUT_GPU();
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3})
    for (cuda::RowOrder order :
         {cuda::RowOrder::kChunked, cuda::RowOrder::kInterleaved, cuda::RowOrder::kSeparate}) {
      const int64_t batch = 3, inter = 40, k = 160;
      const bool sep = order == cuda::RowOrder::kSeparate;
      const Weights a = random_weights(e, batch, sep ? inter : 2 * inter, k, 11);
      const Weights u = random_weights(e, batch, inter, k, 12);
      const cuda::FragSource host{a.view, order, sep ? u.view : MXWeightView{}};
      const cuda::FragLayout l = host.layout();
      std::vector<uint8_t> want_p(l.packed_bytes()), want_s(l.scale_bytes());
      cuda::repack_frag_cpu(host, want_p.data(), want_s.data());
      Dev<uint8_t> ap(a.packed), as(a.scales), up(u.packed), us(u.scales);
      Dev<uint8_t> op(l.packed_bytes()), os(l.scale_bytes());
      cuda::FragSource dev = host;
      dev.w.packed = ap.p;
      dev.w.scales = as.p;
      if (sep) {
        dev.up.packed = up.p;
        dev.up.scales = us.p;
      }
      MXQ_OK(cuda::repack_frag(dev, op.p, os.p, nullptr, nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      EXPECT_EQ(op.get(), want_p) << elem_type_name(e) << " order " << int(order);
      EXPECT_EQ(os.get(), want_s) << elem_type_name(e) << " order " << int(order);
    }
}

// One MoE problem with its weights, inputs and the cpu-reference output.
struct MoECase {
  Problem p;
  int64_t local = 0;
  Weights w13, w1, w3, w2;
  std::vector<uint16_t> b13, b1, b3, b2, x;
  std::vector<float> logits, corr;
  std::vector<int32_t> map;
  MoEWeights mw;
  MoERouting rt;
  std::vector<uint8_t> want;
  std::string what;
};

enum class Skew { kNone, kOneExpert, kTwoExperts };

// Weights from quantize() of N(0, 0.05) values (real-checkpoint-like scales: the exact-fold
// path), or raw random codes with scale codes in [smin, smax] when smin >= 0.
void build(MoECase& c, Skew skew = Skew::kNone, int smin = -1, int smax = -1) {
  const Problem& p = c.p;
  const MoEParams& q = p.moe;
  c.local = q.expert_map ? q.experts / 2 : q.experts;
  const int64_t h = p.n, inter = p.k, e = c.local;
  std::mt19937 g(uint32_t(p.m * 131 + h * 7 + inter + q.experts));
  std::normal_distribution<float> nd;
  auto weights = [&](int64_t n, int64_t k) {
    if (smin >= 0) return random_weights(p.weight, e, n, k, uint32_t(g()), smin, smax);
    std::vector<float> v(size_t(e * n * k));
    for (auto& f : v) f = 0.05f * nd(g);
    QuantOptions o;
    o.elem = p.weight;
    MXMatrix m = quantize(v, e * n, k, o).value();
    Weights w{std::move(m.packed), std::move(m.scales), {}};
    w.view = {p.weight, e, n, k, w.packed.data(), w.scales.data()};
    return w;
  };
  auto bias = [&](int64_t n) {
    std::vector<uint16_t> b(static_cast<size_t>(n));
    for (auto& v : b) v = num::f32_to_bf16(0.1f * nd(g));
    return b;
  };
  if (q.layout == io::GateUpLayout::kSeparate) {
    c.w1 = weights(inter, h);
    c.w3 = weights(inter, h);
    c.mw.w1 = c.w1.view;
    c.mw.w3 = c.w3.view;
  } else {
    c.w13 = weights(2 * inter, h);
    c.mw.w13 = c.w13.view;
  }
  c.w2 = weights(h, inter);
  c.mw.w2 = c.w2.view;
  if (p.bias) {
    c.b13 = bias(e * 2 * inter);
    c.b1 = bias(e * inter);
    c.b3 = bias(e * inter);
    c.b2 = bias(e * h);
    if (q.layout == io::GateUpLayout::kSeparate) {
      c.mw.bias1 = {c.b1.data(), DType::kBF16, e, inter};
      c.mw.bias3 = {c.b3.data(), DType::kBF16, e, inter};
    } else {
      c.mw.bias13 = {c.b13.data(), DType::kBF16, e, 2 * inter};
    }
    c.mw.bias2 = {c.b2.data(), DType::kBF16, e, h};
  }
  const DType xd = act_input_dtype(p.act);
  c.x.resize(size_t(p.m * h));
  for (auto& v : c.x) v = xd == DType::kBF16 ? num::f32_to_bf16(nd(g)) : num::f32_to_f16(nd(g));
  c.logits.resize(size_t(p.m * q.experts));
  for (auto& l : c.logits) l = 2.0f * nd(g);
  if (skew != Skew::kNone)
    for (int64_t t = 0; t < p.m; ++t) {
      c.logits[size_t(t * q.experts + 4)] = 40.0f;
      if (skew == Skew::kTwoExperts) c.logits[size_t(t * q.experts + 6)] = 39.0f;
    }
  c.corr.resize(size_t(q.experts));
  for (auto& v : c.corr) v = 0.5f * nd(g);
  c.map.resize(size_t(q.experts));
  for (int64_t i = 0; i < q.experts; ++i) c.map[size_t(i)] = i % 2 == 0 ? int32_t(i / 2) : -1;
  c.rt = {{c.logits.data(), DType::kF32, p.m, q.experts},
          {q.correction_bias ? c.corr.data() : nullptr, DType::kF32, 1, q.experts},
          q.expert_map ? c.map.data() : nullptr};
  c.want.resize(size_t(p.m * h * dtype_bytes(p.out)));
  const Backend* ref = find_backend("cpu-reference");
  ASSERT_NE(ref, nullptr);
  auto rp = ref->prepare_moe(p, c.mw);
  ASSERT_TRUE(rp.ok()) << rp.status().to_string();
  MXQ_OK(ref->run_moe(p, *rp.value(), {c.x.data(), xd, p.m, h}, c.rt,
                      {c.want.data(), p.out, p.m, h}));
  c.what = p.to_string() + " layout " + io::gate_up_layout_name(q.layout) + " " +
           routing_name(q.routing) + " " + moe_activation_name(q.activation);
}

// Norm-wise relative error at the named tolerance of tests/cases/tolerance.h; every output must
// be written and finite.
void expect_close(const MoECase& c, const std::vector<uint8_t>& got) {
  const double tol = cases::tolerance(c.p);
  double se = 0, ss = 0;
  for (int64_t i = 0; i < c.p.m * c.p.n; ++i) {
    const double a = num::load_dense(got.data(), c.p.out, i);
    const double r = num::load_dense(c.want.data(), c.p.out, i);
    ASSERT_TRUE(std::isfinite(a)) << c.what << ": output " << i << " not written or not finite";
    se += (a - r) * (a - r);
    ss += r * r;
  }
  ASSERT_GT(ss, 0.0) << c.what << ": the reference output is all zero";
  EXPECT_LE(std::sqrt(se / ss), tol) << c.what;
}

// cuda-mma with device pointers (x, logits, correction bias, expert map, y) on a poisoned
// output; returns the output bytes.
std::vector<uint8_t> run_device(const MoECase& c, const PreparedWeights& w,
                                cudaStream_t stream = nullptr) {
  const Problem& p = c.p;
  const Backend* b = find_backend(g_backend);
  const DType xd = act_input_dtype(p.act);
  Dev<uint16_t> dx(c.x);
  Dev<float> dl(c.logits), dc(c.corr);
  Dev<int32_t> dm(c.map);
  const size_t yb = size_t(p.m * p.n * dtype_bytes(p.out));
  Dev<uint8_t> dy(yb);
  cudaMemset(dy.p, 0xFF, yb);  // NaN in every output dtype
  MoERouting rt = c.rt;
  rt.router_logits.data = dl.p;
  if (rt.correction_bias.data != nullptr) rt.correction_bias.data = dc.p;
  if (rt.expert_map != nullptr) rt.expert_map = dm.p;
  // Weights from cuda::prepare_moe_layer itself (not a backend's prepare_moe) run through the
  // layer function: the backend entry accepts only weights its own prepare_moe made.
  const Status s =
      w.prepared_by() == nullptr
          ? cuda::run_moe_layer(p, w, {dx.p, xd, p.m, p.n}, rt, {dy.p, p.out, p.m, p.n}, stream)
          : b->run_moe(p, w, {dx.p, xd, p.m, p.n}, rt, {dy.p, p.out, p.m, p.n}, stream);
  EXPECT_TRUE(s.ok()) << c.what << ": " << s.to_string();
  cudaDeviceSynchronize();
  return dy.get();
}

Problem moe(ElemType w, ActKey a, int64_t m, int64_t h, int64_t i, int64_t e, int64_t k) {
  return Problem::moe_problem(w, a, m, h, i, e, k);
}

void check(MoECase& c, Skew skew = Skew::kNone, int smin = -1, int smax = -1) {
  build(c, skew, smin, smax);
  if (::testing::Test::HasFatalFailure()) return;
  const Backend* b = find_backend(g_backend);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->can_implement(c.p)) << c.what << ": " << b->can_implement(c.p).reason;
  auto prep = b->prepare_moe(c.p, c.mw);
  ASSERT_TRUE(prep.ok()) << c.what << ": " << prep.status().to_string();
  if (std::string(g_backend) == "cuda-hopper") {
    // quantize()'s scales fold into the weights: the hopper kernels run; codes up to 140 do not
    // (BF16 E2M1 folds up to 128, E4M3 up to 134): cuda-mma's FP32 scale path does.
    const bool fold = smin < 0;
    EXPECT_EQ(cuda::moe_layer_kernels(*prep.value()),
              fold ? cuda::MoEKernels::kHopper : cuda::MoEKernels::kMma) << c.what;
  }
  const std::vector<uint8_t> got = run_device(c, *prep.value());
  // BF16/F16 outputs: output rounding plus the intermediate rounded to the activation dtype
  // from an FP32 (not float64) gate/up, as the shared case list allows.
  expect_close(c, got);
}

// Every test below runs once per backend; cuda-hopper is skipped with the reason where it is
// not built or the GPU is not an sm_90.
class CudaMoE : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    g_backend = GetParam();
    SKIP_WITHOUT_GPU();
    if (find_backend(g_backend) == nullptr) {
      std::printf("[ SKIPPED  ] %s is not in this build (no sm_90a code)\n", g_backend);
      GTEST_SKIP() << g_backend << " is not in this build";
    }
    cudaDeviceProp prop{};
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    if (hopper() && prop.major != 9) {
      std::printf("[ SKIPPED  ] cuda-hopper MoE test: GPU is sm_%d%d, needs sm_90\n", prop.major,
                  prop.minor);
      GTEST_SKIP() << "cuda-hopper runs on sm_90 only";
    }
  }
  static bool hopper() { return std::string(g_backend) == "cuda-hopper"; }
};

TEST_P(CudaMoE, EveryLayoutFormatActivationBiasAndRouting) {
  SKIP_WITHOUT_GPU();
  const io::GateUpLayout layouts[] = {io::GateUpLayout::kChunked, io::GateUpLayout::kInterleaved,
                                      io::GateUpLayout::kSeparate};
  const Routing routings[] = {Routing::kSoftmaxTopK, Routing::kTopKSoftmax,
                              Routing::kSigmoidGroupedTopK};
  int idx = 0;
  for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
    for (io::GateUpLayout layout : layouts)
      for (MoEActivation act : {MoEActivation::kSiluAndMul, MoEActivation::kSwigluOAI})
        for (bool bias : {false, true}) {
          ++idx;
          const ActKey a = idx % 3 == 0 ? ActKey::kFP16 : ActKey::kBF16;
          MoECase c;
          c.p = moe(w, a, 5 + idx % 4, 96, 64, 8, 2);
          c.p.bias = bias;
          c.p.out = idx % 4 == 1 ? DType::kF32 : act_input_dtype(a);
          c.p.moe.layout = layout;
          c.p.moe.activation = act;
          c.p.moe.routing = routings[idx % 3];
          if (c.p.moe.routing == Routing::kSigmoidGroupedTopK) {
            c.p.moe.n_group = 4;
            c.p.moe.topk_group = 2;
            c.p.moe.correction_bias = true;
            c.p.moe.routed_scaling = 2.5f;
          }
          SCOPED_TRACE(idx);
          check(c);
          if (HasFatalFailure()) return;
        }
}

// Average pairs per expert 1, 12, 25, 150, 500, 775: tokens per block 8 / 16 / then 64 (the
// wgmma variant on a Hopper; elsewhere mma.sync, warps over rows for the large ones) and 128
// (775: the 128-token wgmma variant on a Hopper). ScalesOffTheFoldRange covers the mma.sync
// blocks of 64 (over rows) on the Hopper.
TEST_P(CudaMoE, EveryTokenBlockSizeAndSplitRows) {
  SKIP_WITHOUT_GPU();
  std::set<std::string> blocks;  // cuda-hopper: the dispatch blocks (= token tiles) that ran
  for (int64_t m : {4, 48, 100, 180, 360, 600, 2000, 3100}) {
    MoECase c;
    c.p = moe(ElemType::kE2M1, ActKey::kBF16, m, 128, 256, 8, 2);
    c.p.bias = m % 2 == 0;
    c.p.moe.layout = io::GateUpLayout::kInterleaved;
    c.p.moe.activation = MoEActivation::kSwigluOAI;
    c.p.moe.routing = Routing::kTopKSoftmax;
    SCOPED_TRACE(m);
    check(c);
    if (HasFatalFailure()) return;
    if (hopper()) {
      const std::string plan = cuda::moe_launch_plan(c.p, cuda::MoEKernels::kHopper);
      const size_t at = plan.find("dispatch blocks of ");
      ASSERT_NE(at, std::string::npos) << plan;
      blocks.insert(plan.substr(at + 19, plan.find(' ', at + 19) - at - 19));
      std::printf("  M = %lld: %s\n", static_cast<long long>(m), plan.c_str());
    }
  }
  if (hopper()) {
    // The small tiles for the small counts, and one of the large ones (256, or 288 = 256 +
    // a 32-token tail) for the largest; the tail tiles are forced in TailTokenTiles.
    for (const char* b : {"16", "32", "64", "128"})
      EXPECT_EQ(blocks.count(b), 1u) << "block " << b << " did not run";
    EXPECT_TRUE(blocks.count("256") || blocks.count("288")) << "no 256 / 288-token block ran";
  }
}

// cuda-hopper's tail tiles (80 = 64 + 16, 144 = 128 + 16, 288 = 256 + 32 tokens: one weight
// decode, a main and a tail wgmma), forced through MXQ_HOPPER_CONFIG, against cpu-reference:
// per-expert counts inside the tail, above it (a second block) and far below it; gate/up and
// down, both formats, bias, FP16.
TEST_P(CudaMoE, TailTokenTiles) {
  SKIP_WITHOUT_GPU();
  if (!hopper()) GTEST_SKIP() << "cuda-hopper only";
  for (int nt : {80, 144, 288}) {
    const std::string v = std::to_string(nt) + ":0:0";
    ASSERT_EQ(setenv("MXQ_HOPPER_CONFIG", v.c_str(), 1), 0);
    // 8 experts, top-2: average counts nt - 8 (inside the tail), 1.3 nt (two blocks), nt / 8.
    for (int64_t m : {int64_t(4 * (nt - 8)), int64_t(5 * nt + 20), int64_t(nt / 2)}) {
      MoECase c;
      c.p = moe(m % 3 == 0 ? ElemType::kE4M3 : ElemType::kE2M1,
                m % 2 == 0 ? ActKey::kBF16 : ActKey::kFP16, m, 128, 96, 8, 2);
      c.p.bias = true;
      c.p.moe.layout = io::GateUpLayout::kInterleaved;
      c.p.moe.activation = MoEActivation::kSwigluOAI;
      c.p.moe.routing = Routing::kTopKSoftmax;
      SCOPED_TRACE(std::to_string(nt) + " tokens, M = " + std::to_string(m));
      check(c);
      if (HasFatalFailure()) break;
      const std::string plan = cuda::moe_launch_plan(c.p, cuda::MoEKernels::kHopper);
      EXPECT_NE(plan.find("dispatch blocks of " + std::to_string(nt) + " "), std::string::npos)
          << plan;
    }
    unsetenv("MXQ_HOPPER_CONFIG");
    if (HasFatalFailure()) return;
  }
}

TEST_P(CudaMoE, ExpertsWithoutTokensAndOneExpertWithAll) {
  SKIP_WITHOUT_GPU();
  {  // 64 experts, 3 tokens x 2: most experts get nothing
    MoECase c;
    c.p = moe(ElemType::kE4M3, ActKey::kBF16, 3, 64, 96, 64, 2);
    check(c);
  }
  {  // every token to expert 4 (top-1): one expert, many blocks
    MoECase c;
    c.p = moe(ElemType::kE2M1, ActKey::kBF16, 300, 64, 64, 16, 1);
    c.p.moe.renormalize = false;
    check(c, Skew::kOneExpert);
  }
  {  // every token to experts 4 and 6, 64-token blocks
    MoECase c;
    c.p = moe(ElemType::kE2M1, ActKey::kFP16, 700, 64, 64, 16, 2);
    check(c, Skew::kTwoExperts);
  }
}

TEST_P(CudaMoE, LocalExpertMap) {
  SKIP_WITHOUT_GPU();
  for (int64_t m : {1, 9, 200}) {
    MoECase c;
    c.p = moe(ElemType::kE2M1, ActKey::kBF16, m, 64, 32, 16, 4);
    c.p.moe.layout = io::GateUpLayout::kSeparate;
    c.p.moe.routing = Routing::kSigmoidGroupedTopK;
    c.p.moe.n_group = 4;
    c.p.moe.topk_group = 2;
    c.p.moe.correction_bias = true;
    c.p.moe.routed_scaling = 2.5f;
    c.p.moe.expert_map = true;
    SCOPED_TRACE(m);
    check(c);
    if (HasFatalFailure()) return;
  }
}

// Scale codes beyond the exact-fold range: the FP32 per-block scale path (BF16: E2M1 codes
// above 128, E4M3 above 134), with token blocks of 8 and 64; M = 2000 over 8 experts with
// 2I = 512 gives 64-token blocks with warps over rows (70 blocks x 2 row blocks >= the SMs).
TEST_P(CudaMoE, ScalesOffTheFoldRange) {
  SKIP_WITHOUT_GPU();
  for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
    for (int64_t m : {2, 60, 900, 2000}) {
      MoECase c;
      c.p = m == 2000 ? moe(w, ActKey::kBF16, m, 128, 256, 8, 2) : moe(w, ActKey::kBF16, m, 64, 64, 4, 2);
      c.p.out = DType::kF32;
      SCOPED_TRACE(m);
      check(c, Skew::kNone, 100, 140);
      if (HasFatalFailure()) return;
    }
}

// Host weights staged one expert at a time give the same bytes out as device weights (one
// launch), and the staging buffer stays within the bound (one expert here).
TEST_P(CudaMoE, StagedPrepareEqualsDevicePrepare) {
  SKIP_WITHOUT_GPU();
  for (io::GateUpLayout layout : {io::GateUpLayout::kInterleaved, io::GateUpLayout::kSeparate}) {
    MoECase c;
    c.p = moe(ElemType::kE2M1, ActKey::kBF16, 33, 128, 64, 8, 2);
    c.p.moe.layout = layout;
    build(c);
    ASSERT_FALSE(HasFatalFailure());
    const int64_t h = c.p.n, inter = c.p.k, e = c.local;
    const size_t per_expert = size_t(2 * inter * (h / 2 + h / 32));  // gate+up rows, E2M1
    const cuda::MoEKernels fam = hopper() ? cuda::MoEKernels::kHopper : cuda::MoEKernels::kMma;
    auto staged = cuda::prepare_moe_layer(c.p, c.mw, per_expert, fam);
    ASSERT_TRUE(staged.ok()) << staged.status().to_string();
    EXPECT_GT(cuda::moe_layer_staging_bytes(*staged.value()), 0u);
    EXPECT_LE(cuda::moe_layer_staging_bytes(*staged.value()), per_expert);

    // The same weights from device memory: no staging.
    auto up = [](const Weights& w) { return std::make_unique<Dev<uint8_t>>(w.packed); };
    auto us = [](const Weights& w) { return std::make_unique<Dev<uint8_t>>(w.scales); };
    MoEWeights dw = c.mw;
    std::vector<std::unique_ptr<Dev<uint8_t>>> keep;
    auto to_dev = [&](MXWeightView& v, const Weights& w) {
      keep.push_back(up(w));
      v.packed = keep.back()->p;
      keep.push_back(us(w));
      v.scales = keep.back()->p;
    };
    if (layout == io::GateUpLayout::kSeparate) {
      to_dev(dw.w1, c.w1);
      to_dev(dw.w3, c.w3);
    } else {
      to_dev(dw.w13, c.w13);
    }
    to_dev(dw.w2, c.w2);
    auto direct = cuda::prepare_moe_layer(c.p, dw, cuda::kMoEStageBytes, fam);
    ASSERT_TRUE(direct.ok()) << direct.status().to_string();
    EXPECT_EQ(cuda::moe_layer_staging_bytes(*direct.value()), 0u);
    EXPECT_EQ(run_device(c, *staged.value()), run_device(c, *direct.value())) << c.what;
    expect_close(c, run_device(c, *direct.value()));
    (void)e;
  }
}

// Two runs give the same bytes; a captured graph replays to the same bytes.
TEST_P(CudaMoE, DeterministicAndGraphCapturable) {
  SKIP_WITHOUT_GPU();
  MoECase c;
  c.p = moe(ElemType::kE2M1, ActKey::kBF16, 257, 128, 128, 16, 4);
  c.p.bias = true;
  c.p.moe.layout = io::GateUpLayout::kInterleaved;
  c.p.moe.activation = MoEActivation::kSwigluOAI;
  c.p.moe.routing = Routing::kTopKSoftmax;
  build(c);
  ASSERT_FALSE(HasFatalFailure());
  const Backend* b = find_backend(g_backend);
  auto prep = b->prepare_moe(c.p, c.mw);
  ASSERT_TRUE(prep.ok()) << prep.status().to_string();
  const std::vector<uint8_t> first = run_device(c, *prep.value());
  EXPECT_EQ(first, run_device(c, *prep.value()));

  const Problem& p = c.p;
  Dev<uint16_t> dx(c.x);
  Dev<float> dl(c.logits);
  const size_t yb = size_t(p.m * p.n * dtype_bytes(p.out));
  Dev<uint8_t> dy(yb);
  CUDA_OK(cudaMemset(dy.p, 0, yb));
  MoERouting rt = c.rt;
  rt.router_logits.data = dl.p;
  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  const Status st = b->run_moe(p, *prep.value(), {dx.p, DType::kBF16, p.m, p.n}, rt,
                               {dy.p, p.out, p.m, p.n}, s);
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  ASSERT_TRUE(st.ok()) << st.to_string();
  cudaGraphExec_t exec;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT_EQ(dy.get(), first);
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaStreamDestroy(s));
}

// The chain's kernels (route, dispatch, gather, grouped GEMMs, combine) launched with
// programmatic dependent launch (common/pdl.h) give the bytes of fully serialised launches:
// for the one-block dispatch (M = 1, 16) and the multi-kernel one (M = 700), and for two
// layers chained on one stream with no host sync in between, the second reading the first's
// output as its x (a kernel that read its input or wrote its output before its predecessor
// finished would change the second layer's result), eagerly and replayed from a graph.
TEST_P(CudaMoE, ProgrammaticLaunchGivesTheBytesOfSerialisedLaunches) {
  SKIP_WITHOUT_GPU();
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  cuda::pdl::set_enabled(true);
  EXPECT_EQ(cuda::pdl::enabled_on_current_device(), prop.major >= 9);
  for (const int64_t m : {int64_t(1), int64_t(16), int64_t(700)}) {
    MoECase c;
    c.p = moe(ElemType::kE2M1, ActKey::kBF16, m, 256, 128, 16, 4);
    c.p.bias = true;
    build(c);
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_EQ(c.p.out, DType::kBF16) << "the second layer reads the first's output as its x";
    const Backend* b = find_backend(g_backend);
    auto prep = b->prepare_moe(c.p, c.mw);
    ASSERT_TRUE(prep.ok()) << prep.status().to_string();
    const Problem& p = c.p;
    const size_t yb = size_t(p.m * p.n * dtype_bytes(p.out));
    // Two chained layers on `s`, outputs poisoned first; `graph`: captured, then replayed.
    // (no ASSERT in a lambda that returns a value)
    auto cu = [](cudaError_t e) { EXPECT_EQ(e, cudaSuccess) << cudaGetErrorString(e); };
    auto chained = [&](bool pdl, bool graph) {
      cuda::pdl::set_enabled(pdl);
      Dev<uint16_t> dx(c.x);
      Dev<float> dl(c.logits);
      Dev<uint8_t> y1(yb), y2(yb);
      cu(cudaMemset(y1.p, 0xFF, yb));
      cu(cudaMemset(y2.p, 0xFF, yb));
      MoERouting rt = c.rt;
      rt.router_logits.data = dl.p;
      Status s1, s2;
      testing::run_on_stream(graph, [&](cudaStream_t s) {
        s1 = b->run_moe(p, *prep.value(), {dx.p, DType::kBF16, p.m, p.n}, rt,
                        {y1.p, p.out, p.m, p.n}, s);
        s2 = b->run_moe(p, *prep.value(), {y1.p, DType::kBF16, p.m, p.n}, rt,
                        {y2.p, p.out, p.m, p.n}, s);
      });
      EXPECT_TRUE(s1.ok() && s2.ok()) << s1.to_string() << " / " << s2.to_string();
      return std::make_pair(y1.get(), y2.get());
    };
    const auto serial = chained(false, false);
    const auto eager = chained(true, false);
    const auto replay = chained(true, true);
    cuda::pdl::set_enabled(true);
    expect_close(c, serial.first);
    EXPECT_EQ(eager.first, serial.first) << c.what;
    EXPECT_EQ(eager.second, serial.second) << c.what << ": the chained layer";
    EXPECT_EQ(replay.first, serial.first) << c.what << " (graph)";
    EXPECT_EQ(replay.second, serial.second) << c.what << ": the chained layer (graph)";
  }
}

TEST_P(CudaMoE, BadInputsNameTheProblem) {
  SKIP_WITHOUT_GPU();
  MoECase c;
  c.p = moe(ElemType::kE2M1, ActKey::kBF16, 4, 64, 64, 8, 2);
  build(c);
  ASSERT_FALSE(HasFatalFailure());
  const Backend* b = find_backend(g_backend);
  auto prep = b->prepare_moe(c.p, c.mw);
  ASSERT_TRUE(prep.ok());
  std::vector<uint16_t> y(size_t(4 * 64));
  const Status s = b->run_moe(c.p, *prep.value(), {c.x.data(), DType::kBF16, 4, 32}, c.rt,
                              {y.data(), DType::kBF16, 4, 64});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.to_string().find("moe x"), std::string::npos) << s.to_string();
  // Shapes the layer cannot run are refused by can_implement with the reason.
  const Problem odd = moe(ElemType::kE2M1, ActKey::kBF16, 4, 80, 64, 8, 2);
  const Verdict v = b->can_implement(odd);
  ASSERT_FALSE(v.ok);
  EXPECT_NE(v.reason.find("multiples of 32"), std::string::npos) << v.reason;
}

INSTANTIATE_TEST_SUITE_P(Backends, CudaMoE, ::testing::Values("cuda-mma", "cuda-hopper"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace mxq
