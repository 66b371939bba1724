// Every registered backend against cpu-reference on the shared case list. A backend that does
// not support this machine or cannot implement a case is skipped with its reason printed, so
// a GPU host runs the GPU backends on the same cases automatically. Coverage.* fails when a
// non-reference backend that supports this machine runs none of the cases (and prints, per
// backend, how many cases ran and how many were refused, with the reasons).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "cases.h"
#include "tolerance.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"
#include "mxq/select.h"

namespace mxq::cases {
namespace {

struct Rng {
  explicit Rng(uint32_t seed) : g(seed) {}
  float normal() { return n(g); }
  std::mt19937 g;
  std::normal_distribution<float> n{0.0f, 1.0f};
};

std::vector<uint16_t> bf16_vector(int64_t n, Rng& r, float scale) {
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = num::f32_to_bf16(r.normal() * scale);
  return v;
}

struct MXBuf {
  std::vector<uint8_t> packed, scales;
  MXWeightView view;
};
MXBuf random_weights(ElemType t, int64_t batch, int64_t n, int64_t k, Rng& r) {
  std::vector<float> w(size_t(batch * n * k));
  for (auto& x : w) x = r.normal() * 0.05f;
  QuantOptions o;
  o.elem = t;
  MXMatrix m = quantize(w, batch * n, k, o).value();
  MXBuf b{std::move(m.packed), std::move(m.scales), {}};
  b.view = {t, batch, n, k, b.packed.data(), b.scales.data()};
  return b;
}

double output_value(const std::vector<uint8_t>& y, DType d, size_t i) {
  return num::load_dense(y.data(), d, int64_t(i));
}

void compare(const Problem& p, const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
             int64_t count, std::string_view backend) {
  double se = 0, ss = 0;
  for (int64_t i = 0; i < count; ++i) {
    const double a = output_value(got, p.out, size_t(i)), b = output_value(want, p.out, size_t(i));
    ASSERT_TRUE(std::isfinite(a)) << backend << ": non-finite output at " << i;
    se += (a - b) * (a - b);
    ss += b * b;
  }
  const double rel = std::sqrt(se / std::max(ss, 1e-300));
  EXPECT_LE(rel, tolerance(p, backend)) << backend << " on " << p.to_string();
}

void skip_note(std::string_view backend, const std::string& why) {
  std::printf("[ SKIP     ] %s: %s\n", std::string(backend).c_str(), why.c_str());
}

// Calls fn(backend) for every registered backend except `ref` that runs `p` here (runs_case:
// supports this machine, then the oracle's check_problem), and prints the reason for each one
// that does not.
template <typename Fn>
void for_each_candidate(const Problem& p, const Backend* ref, Fn fn) {
  for (const Backend* b : backends()) {
    if (b == ref) continue;
    if (Verdict v = runs_case(*b, this_device(), p); !v) {
      skip_note(b->name(), v.reason);
      continue;
    }
    fn(b);
  }
}

class LinearCases : public ::testing::TestWithParam<Case> {};
class MoECases : public ::testing::TestWithParam<Case> {};

TEST_P(LinearCases, EveryBackendMatchesReference) {
  const Problem& p = GetParam().problem;
  const Backend* ref = find_backend("cpu-reference");
  ASSERT_NE(ref, nullptr);
  Rng r(uint32_t(std::hash<std::string>{}(GetParam().name)));
  MXBuf w = random_weights(p.weight, 1, p.n, p.k, r);
  std::vector<uint16_t> x = bf16_vector(p.m * p.k, r, 1.0f);
  if (act_input_dtype(p.act) == DType::kF16)
    for (auto& v : x) v = num::f32_to_f16(num::bf16_to_f32(v));
  std::vector<uint16_t> bias = bf16_vector(p.n, r, 0.1f);
  LinearWeights lw{w.view, {p.bias ? bias.data() : nullptr, DType::kBF16, 1, p.n}, 3.0f / 448};
  const DenseView xv{x.data(), act_input_dtype(p.act), p.m, p.k};
  const size_t ybytes = size_t(p.m * p.n * dtype_bytes(p.out));
  std::vector<uint8_t> want(ybytes);
  auto rp = ref->prepare_linear(p, lw);
  ASSERT_TRUE(rp.ok()) << rp.status().to_string();
  ASSERT_TRUE(ref->run_linear(p, *rp.value(), xv, {want.data(), p.out, p.m, p.n}).ok());
  for_each_candidate(p, ref, [&](const Backend* b) {
    auto prep = b->prepare_linear(p, lw);
    ASSERT_TRUE(prep.ok()) << b->name() << ": " << prep.status().to_string();
    std::vector<uint8_t> got(ybytes);
    const Status s = b->run_linear(p, *prep.value(), xv, {got.data(), p.out, p.m, p.n});
    ASSERT_TRUE(s.ok()) << b->name() << ": " << s.to_string();
    compare(p, got, want, p.m * p.n, b->name());
  });
}

TEST_P(MoECases, EveryBackendMatchesReference) {
  const Problem& p = GetParam().problem;
  const MoEParams& q = p.moe;
  const Backend* ref = find_backend("cpu-reference");
  ASSERT_NE(ref, nullptr);
  Rng r(uint32_t(std::hash<std::string>{}(GetParam().name)));
  const int64_t local = q.expert_map ? q.experts / 2 : q.experts;
  const int64_t h = p.n, inter = p.k;
  MoEWeights mw;
  MXBuf w13, w1, w3;
  if (q.layout == io::GateUpLayout::kSeparate) {
    w1 = random_weights(p.weight, local, inter, h, r);
    w3 = random_weights(p.weight, local, inter, h, r);
    mw.w1 = w1.view;
    mw.w3 = w3.view;
  } else {
    w13 = random_weights(p.weight, local, 2 * inter, h, r);
    mw.w13 = w13.view;
  }
  MXBuf w2 = random_weights(p.weight, local, h, inter, r);
  mw.w2 = w2.view;
  std::vector<uint16_t> b13 = bf16_vector(local * 2 * inter, r, 0.1f),
                        b1 = bf16_vector(local * inter, r, 0.1f),
                        b3 = bf16_vector(local * inter, r, 0.1f),
                        b2 = bf16_vector(local * h, r, 0.1f);
  if (p.bias) {
    if (q.layout == io::GateUpLayout::kSeparate) {
      mw.bias1 = {b1.data(), DType::kBF16, local, inter};
      mw.bias3 = {b3.data(), DType::kBF16, local, inter};
    } else {
      mw.bias13 = {b13.data(), DType::kBF16, local, 2 * inter};
    }
    mw.bias2 = {b2.data(), DType::kBF16, local, h};
  }
  std::vector<uint16_t> x = bf16_vector(p.m * h, r, 1.0f);
  if (act_input_dtype(p.act) == DType::kF16)
    for (auto& v : x) v = num::f32_to_f16(num::bf16_to_f32(v));
  std::vector<float> logits(size_t(p.m * q.experts)), corr(size_t(q.experts));
  for (auto& l : logits) l = r.normal() * 2.0f;
  for (auto& c : corr) c = r.normal() * 0.5f;
  std::vector<int32_t> map(size_t(q.experts));
  for (int64_t e = 0; e < q.experts; ++e) map[size_t(e)] = e % 2 == 0 ? int32_t(e / 2) : -1;
  MoERouting rt{{logits.data(), DType::kF32, p.m, q.experts},
                {q.correction_bias ? corr.data() : nullptr, DType::kF32, 1, q.experts},
                q.expert_map ? map.data() : nullptr};
  const DenseView xv{x.data(), act_input_dtype(p.act), p.m, h};
  const size_t ybytes = size_t(p.m * h * dtype_bytes(p.out));
  std::vector<uint8_t> want(ybytes);
  auto rp = ref->prepare_moe(p, mw);
  ASSERT_TRUE(rp.ok()) << rp.status().to_string();
  const Status rs = ref->run_moe(p, *rp.value(), xv, rt, {want.data(), p.out, p.m, h});
  ASSERT_TRUE(rs.ok()) << rs.to_string();
  for_each_candidate(p, ref, [&](const Backend* b) {
    auto prep = b->prepare_moe(p, mw);
    ASSERT_TRUE(prep.ok()) << b->name() << ": " << prep.status().to_string();
    std::vector<uint8_t> got(ybytes);
    const Status s = b->run_moe(p, *prep.value(), xv, rt, {got.data(), p.out, p.m, h});
    ASSERT_TRUE(s.ok()) << b->name() << ": " << s.to_string();
    compare(p, got, want, p.m * h, b->name());
  });
}

std::string case_name(const ::testing::TestParamInfo<Case>& i) { return i.param.name; }

Tier tier() {
  const char* t = std::getenv("MXQ_CASES");
  return t != nullptr && std::string(t) == "full" ? Tier::kFull : Tier::kQuick;
}

INSTANTIATE_TEST_SUITE_P(Shared, LinearCases, ::testing::ValuesIn(linear_cases(tier())), case_name);
INSTANTIATE_TEST_SUITE_P(Shared, MoECases, ::testing::ValuesIn(moe_cases(tier())), case_name);

std::vector<Case> all_cases() {
  std::vector<Case> c = linear_cases(tier());
  for (Case& m : moe_cases(tier())) c.push_back(std::move(m));
  return c;
}

// The cases tests decide per case through runs_case(); this counts the same decisions over the
// whole list (ctest runs each case in its own process, so the count cannot be collected from the
// runs themselves) and fails when a non-reference backend that supports this machine would run
// none of them: the case tests would then pass while testing nothing but the reference.
TEST(Coverage, EverySupportingBackendRunsSharedCases) {
  const std::vector<Case> cases = all_cases();
  const std::vector<BackendTally> t = tally(backends(), this_device(), cases);
  std::printf("device: %s\nshared cases (%zu, MXQ_CASES=%s) per backend:\n%s",
              this_device().to_string().c_str(), cases.size(),
              tier() == Tier::kFull ? "full" : "quick", format_tally(t).c_str());
  int checked = 0;
  for (const BackendTally& b : t) checked += !b.reference && b.supported ? 1 : 0;
  EXPECT_GT(checked, 0) << "no non-reference backend supports this machine: the shared cases "
                           "compare cpu-reference with nothing";
  for (const std::string& f : coverage_failures(t)) ADD_FAILURE() << f;
}

// The check itself can fail: a backend that supports the device and refuses every case.
// Every registered backend declares the memory its run_* take (Backend::memory_kind is pure
// virtual): device memory for the CUDA backends, host memory for the others.
TEST(Coverage, EveryBackendDeclaresItsMemory) {
  ASSERT_FALSE(backends().empty());
  for (const Backend* b : backends()) {
    const bool cuda = b->name() == "cuda-mma" || b->name() == "cuda-hopper";
    EXPECT_EQ(b->memory_kind(), cuda ? MemoryKind::kCUDA : MemoryKind::kCPU) << b->name();
  }
}

class RefusesEverything final : public Backend {
 public:
  std::string_view name() const override { return "refuses-everything"; }
  MemoryKind memory_kind() const override { return MemoryKind::kCPU; }
  int priority() const override { return 1; }
  Verdict supports(const Device&) const override { return Verdict::yes(); }
  Verdict can_implement(const Problem&) const override { return Verdict::no("refuses all"); }
  bool declares_act_key(ActKey) const override { return true; }  // one reason: can_implement
};
class Unsupported final : public Backend {
 public:
  std::string_view name() const override { return "unsupported"; }
  MemoryKind memory_kind() const override { return MemoryKind::kCPU; }
  int priority() const override { return 1; }
  Verdict supports(const Device&) const override { return Verdict::no("needs a device"); }
  Verdict can_implement(const Problem&) const override { return Verdict::yes(); }
};

TEST(Coverage, CheckFailsForABackendThatRunsNothing) {
  const RefusesEverything refuses;
  const Unsupported unsupported;
  const std::vector<Case> cases = all_cases();
  const std::vector<BackendTally> t =
      tally({find_backend("cpu-reference"), &refuses, &unsupported}, this_device(), cases);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].ran, int(cases.size()));  // the reference runs everything, is not checked
  EXPECT_EQ(t[1].ran, 0);
  ASSERT_EQ(t[1].refused.size(), 1u);
  EXPECT_EQ(t[1].refused.begin()->first, "refuses all");
  EXPECT_EQ(t[1].refused.begin()->second, int(cases.size()));
  EXPECT_FALSE(t[2].supported);  // not supported here: not required to run anything
  const std::vector<std::string> f = coverage_failures(t);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].find("refuses-everything supports this device but runs none"), std::string::npos)
      << f[0];
  EXPECT_NE(f[0].find("refuses all"), std::string::npos) << f[0];
}

}  // namespace
}  // namespace mxq::cases
