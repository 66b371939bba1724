// The oracle's rules, driven by fake backends so each rule is isolated: capability gating,
// activation-key gating, shape gating, overrides (API and env) that work or cannot run, strict
// mode, fallback, explain output, the memory kind of the call's arrays.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <optional>

#include "select/oracle.h"

namespace mxq {
namespace {

class FakeBackend : public Backend {
 public:
  FakeBackend(std::string name, int prio, bool reference,
              std::function<Verdict(const Device&)> sup,
              std::function<Verdict(const Problem&)> impl)
      : name_(std::move(name)), prio_(prio), ref_(reference), sup_(std::move(sup)),
        impl_(std::move(impl)) {}
  std::string_view name() const override { return name_; }
  int priority() const override { return prio_; }
  bool is_reference() const override { return ref_; }
  Verdict supports(const Device& d) const override { return sup_(d); }
  Verdict can_implement(const Problem& p) const override { return impl_(p); }
  // Fakes declare every activation key unless told otherwise (declared_16bit_only).
  bool declares_act_key(ActKey a) const override {
    return declared_16bit_only ? Backend::declares_act_key(a) : true;
  }
  bool declared_16bit_only = false;
  // The memory the fake takes (host unless set).
  std::optional<MemoryKind> mem;
  MemoryKind memory_kind() const override { return mem ? *mem : MemoryKind::kCPU; }

 private:
  std::string name_;
  int prio_;
  bool ref_;
  std::function<Verdict(const Device&)> sup_;
  std::function<Verdict(const Problem&)> impl_;
};

Verdict any_device(const Device&) { return Verdict::yes(); }
Verdict needs_gpu(const Device& d) {
  return d.gpus.empty() ? Verdict::no("no CUDA device (needs sm_80+)") : Verdict::yes();
}
Verdict bf16_only(const Problem& p) {
  return p.act == ActKey::kBF16 ? Verdict::yes()
                                : Verdict::no(std::string("activation key ") + act_key_name(p.act) +
                                              " not supported (bf16 only)");
}
Verdict k_multiple_of_128(const Problem& p) {
  return p.k % 128 == 0 ? Verdict::yes() : Verdict::no("K = " + std::to_string(p.k) +
                                                          " is not a multiple of 128");
}
Verdict anything(const Problem&) { return Verdict::yes(); }

struct Fixture : ::testing::Test {
  Fixture()
      : gpu("fake-gpu", 100, false, needs_gpu, bf16_only),
        cpu("fake-cpu", 10, false, any_device, k_multiple_of_128),
        ref("fake-ref", 0, true, any_device, anything),
        all{&ref, &cpu, &gpu} {  // registration order differs from rank order on purpose
    with_gpu.gpus.push_back({0, "Fake H100", 9, 0, size_t(80) << 30, 132});
    ::unsetenv("MXQ_LINEAR_BACKEND");
    ::unsetenv("MXQ_MOE_BACKEND");
  }
  ~Fixture() override {
    ::unsetenv("MXQ_LINEAR_BACKEND");
    ::unsetenv("MXQ_MOE_BACKEND");
  }
  FakeBackend gpu, cpu, ref;
  std::vector<const Backend*> all;
  Device no_gpu, with_gpu;
  SelectOptions quiet() {
    SelectOptions o;
    o.warn = false;
    return o;
  }
};

const Problem kBf16 = Problem::linear(ElemType::kE2M1, ActKey::kBF16, 1, 4096, 4096);

TEST_F(Fixture, CapabilityGatingPicksHighestPriorityThatRuns) {
  auto s = detail::select_from(all, kBf16, with_gpu, quiet());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().backend, &gpu);
  EXPECT_EQ(s.value().how, "automatic");
  auto t = detail::select_from(all, kBf16, no_gpu, quiet());
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t.value().backend, &cpu);
  EXPECT_FALSE(t.value().fallback);
  // Candidates are listed in rank order with the GPU's device reason.
  ASSERT_EQ(t.value().candidates.size(), 3u);
  EXPECT_EQ(t.value().candidates[0].backend, &gpu);
  EXPECT_EQ(t.value().candidates[0].reason, "device: no CUDA device (needs sm_80+)");
}

TEST_F(Fixture, ActivationKeyGating) {
  Problem p = kBf16;
  p.act = ActKey::kMXFP8Dynamic;
  auto s = detail::select_from(all, p, with_gpu, quiet());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().backend, &cpu);
  EXPECT_NE(s.value().candidates[0].reason.find("mxfp8-dynamic"), std::string::npos);
}

// A backend whose can_implement would accept a quantized activation key but which does not
// declare it (the default: bf16 and fp16 only) is refused by the oracle with a reason naming
// the key, and explain shows it; the same backend is chosen for bf16.
TEST_F(Fixture, UndeclaredActivationKeyIsRefusedWhateverCanImplementSays) {
  FakeBackend loose("fake-16bit", 200, false, any_device, anything);
  loose.declared_16bit_only = true;
  std::vector<const Backend*> with_loose{&ref, &cpu, &gpu, &loose};
  for (ActKey a : kAllActKeys) {
    Problem p = kBf16;
    p.act = a;
    p.out = act_input_dtype(a);
    auto s = detail::select_from(with_loose, p, with_gpu, quiet());
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    const bool sixteen = a == ActKey::kBF16 || a == ActKey::kFP16;
    EXPECT_EQ(s.value().backend == &loose, sixteen) << act_key_name(a);
    if (sixteen) continue;
    EXPECT_EQ(s.value().candidates[0].backend, &loose);
    const std::string& why = s.value().candidates[0].reason;
    EXPECT_NE(why.find(std::string("activation key ") + act_key_name(a) + " is not declared by fake-16bit"),
              std::string::npos) << why;
    EXPECT_NE(why.find("it runs bf16, fp16"), std::string::npos) << why;
    // An override naming it is an error carrying the same reason.
    SelectOptions o = quiet();
    o.override_backend = "fake-16bit";
    auto ov = detail::select_from(with_loose, p, with_gpu, o);
    ASSERT_FALSE(ov.ok());
    EXPECT_NE(ov.status().message().find("is not declared by fake-16bit"), std::string::npos)
        << ov.status().message();
    const std::string e = detail::explain_from(with_loose, p, with_gpu, quiet());
    EXPECT_NE(e.find("fake-16bit     prio 200  rejected: activation key"), std::string::npos) << e;
  }
  // The contract's check, as callers outside the oracle use it.
  Problem p = kBf16;
  p.act = ActKey::kMXFP4Dynamic;
  EXPECT_TRUE(loose.can_implement(p).ok);
  EXPECT_FALSE(loose.check_problem(p).ok);
  EXPECT_TRUE(loose.check_problem(kBf16).ok);
}

TEST_F(Fixture, ShapeGatingAndFallbackToReference) {
  Problem p = kBf16;
  p.k = 2880;  // not a multiple of 64
  auto s = detail::select_from(all, p, no_gpu, quiet());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().backend, &ref);
  EXPECT_TRUE(s.value().fallback);
  EXPECT_EQ(s.value().how, "automatic (fallback to reference)");
  EXPECT_EQ(s.value().candidates[1].reason, "K = 2880 is not a multiple of 128");
}

TEST_F(Fixture, StrictModeRefusesFallbackAndNamesWhy) {
  Problem p = kBf16;
  p.k = 2880;
  SelectOptions o = quiet();
  o.strict = true;
  auto s = detail::select_from(all, p, no_gpu, o);
  ASSERT_FALSE(s.ok());
  const std::string m = s.status().message();
  EXPECT_NE(m.find("strict mode"), std::string::npos) << m;
  EXPECT_NE(m.find("fake-ref"), std::string::npos) << m;
  EXPECT_NE(m.find("fake-cpu: K = 2880 is not a multiple of 128"), std::string::npos) << m;
  EXPECT_NE(m.find("fake-gpu: device: no CUDA device"), std::string::npos) << m;
  // Strict mode does not affect a non-fallback choice.
  EXPECT_TRUE(detail::select_from(all, kBf16, no_gpu, o).ok());
}

TEST_F(Fixture, OverrideByApiAndEnvWins) {
  SelectOptions o = quiet();
  o.override_backend = "fake-ref";
  auto s = detail::select_from(all, kBf16, with_gpu, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.value().backend, &ref);
  EXPECT_EQ(s.value().how, "API override");
  EXPECT_FALSE(s.value().fallback);  // asked for: not a fallback
  ::setenv("MXQ_LINEAR_BACKEND", "fake-cpu", 1);
  auto e = detail::select_from(all, kBf16, with_gpu, quiet());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e.value().backend, &cpu);
  EXPECT_EQ(e.value().how, "override (MXQ_LINEAR_BACKEND)");
  // The MoE variable does not affect linear problems, and vice versa.
  ::unsetenv("MXQ_LINEAR_BACKEND");
  ::setenv("MXQ_MOE_BACKEND", "fake-ref", 1);
  EXPECT_EQ(detail::select_from(all, kBf16, with_gpu, quiet()).value().backend, &gpu);
  Problem moe = Problem::moe_problem(ElemType::kE2M1, ActKey::kBF16, 4, 256, 128, 8, 2);
  EXPECT_EQ(detail::select_from(all, moe, with_gpu, quiet()).value().backend, &ref);
  // API beats env.
  o.override_backend = "fake-gpu";
  EXPECT_EQ(detail::select_from(all, moe, with_gpu, o).value().backend, &gpu);
}

TEST_F(Fixture, OverrideThatCannotRunIsAnErrorWithTheReason) {
  SelectOptions o = quiet();
  o.override_backend = "fake-gpu";
  auto s = detail::select_from(all, kBf16, no_gpu, o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.status().message().find("backend 'fake-gpu' cannot run linear mxfp4 x bf16"),
            std::string::npos)
      << s.status().message();
  EXPECT_NE(s.status().message().find("no CUDA device (needs sm_80+)"), std::string::npos);
  ::setenv("MXQ_LINEAR_BACKEND", "nonexistent", 1);
  auto u = detail::select_from(all, kBf16, no_gpu, quiet());
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("MXQ_LINEAR_BACKEND"), std::string::npos);
  EXPECT_NE(u.status().message().find("unknown backend 'nonexistent'"), std::string::npos);
  EXPECT_NE(u.status().message().find("fake-gpu, fake-cpu, fake-ref"), std::string::npos);
}

TEST_F(Fixture, NoBackendAtAll) {
  std::vector<const Backend*> only_gpu{&gpu};
  auto s = detail::select_from(only_gpu, kBf16, no_gpu, quiet());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("no backend can run"), std::string::npos);
}

TEST_F(Fixture, InvalidProblemIsRejectedBeforeSelection) {
  Problem p = Problem::moe_problem(ElemType::kE2M1, ActKey::kBF16, 4, 256, 128, 8, 9);
  auto s = detail::select_from(all, p, no_gpu, quiet());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("topk <= experts"), std::string::npos);
}

TEST_F(Fixture, ExplainListsEveryBackendItsVerdictAndTheChoice) {
  Problem p = kBf16;
  p.k = 2880;
  const std::string e = detail::explain_from(all, p, no_gpu, quiet());
  EXPECT_NE(e.find("problem  linear mxfp4 x bf16 -> bf16, M=1 N=4096 K=2880"), std::string::npos) << e;
  EXPECT_NE(e.find("fake-gpu       prio 100  rejected: device: no CUDA device"), std::string::npos) << e;
  EXPECT_NE(e.find("fake-cpu       prio  10  rejected: K = 2880"), std::string::npos) << e;
  EXPECT_NE(e.find("fake-ref       prio   0  ok   <- chosen"), std::string::npos) << e;
  EXPECT_NE(e.find("choice   fake-ref (automatic (fallback to reference))"), std::string::npos) << e;
  SelectOptions strict = quiet();
  strict.strict = true;
  EXPECT_NE(detail::explain_from(all, p, no_gpu, strict).find("strict mode would refuse"),
            std::string::npos);
}

// SelectOptions::memory (the Python package passes its arrays' device): only backends taking
// that memory are candidates, for every rule.
struct MemoryFixture : Fixture {
  MemoryFixture() {
    gpu.mem = MemoryKind::kCUDA;
    cpu.mem = MemoryKind::kCPU;
    ref.mem = MemoryKind::kCPU;
  }
  SelectOptions on(MemoryKind m) {
    SelectOptions o = quiet();
    o.memory = m;
    return o;
  }
};

// A backend's name decides nothing about its memory (a fake named cuda-* that declares host
// memory takes host memory); the built-in backends' declarations: backend_cases_test.cc.
TEST_F(MemoryFixture, MemoryKindIsDeclaredNotInferredFromTheName) {
  FakeBackend c("cuda-fake", 1, false, any_device, anything);
  c.mem = MemoryKind::kCPU;
  EXPECT_EQ(c.memory_kind(), MemoryKind::kCPU);
  EXPECT_EQ(detail::select_from({&c}, kBf16, with_gpu, on(MemoryKind::kCPU)).value().backend, &c);
  EXPECT_STREQ(memory_kind_name(MemoryKind::kCUDA), "cuda");
  EXPECT_STREQ(memory_kind_name(MemoryKind::kCPU), "cpu");
}

TEST_F(MemoryFixture, OnlyBackendsTakingTheMemoryAreCandidates) {
  auto h = detail::select_from(all, kBf16, with_gpu, on(MemoryKind::kCPU));
  ASSERT_TRUE(h.ok()) << h.status().to_string();
  EXPECT_EQ(h.value().backend, &cpu);  // the GPU backend outranks it, but takes device memory
  ASSERT_EQ(h.value().candidates.size(), 2u);
  auto d = detail::select_from(all, kBf16, with_gpu, on(MemoryKind::kCUDA));
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d.value().backend, &gpu);
  ASSERT_EQ(d.value().candidates.size(), 1u);
  EXPECT_EQ(detail::select_from(all, kBf16, with_gpu, on(MemoryKind::kAny)).value().candidates.size(), 3u);
  // CUDA arrays on a machine without a GPU: none of the CPU backends is offered instead.
  auto n = detail::select_from(all, kBf16, no_gpu, on(MemoryKind::kCUDA));
  EXPECT_EQ(n.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(n.status().message().find("no cuda backend can run linear mxfp4 x bf16"), std::string::npos)
      << n.status().message();
  EXPECT_NE(n.status().message().find("fake-gpu: device: no CUDA device"), std::string::npos);
  // A build without any backend taking CUDA memory.
  std::vector<const Backend*> host_only{&ref, &cpu};
  auto b = detail::select_from(host_only, kBf16, with_gpu, on(MemoryKind::kCUDA));
  EXPECT_EQ(b.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(b.status().message().find("this build has no CUDA backend for linear mxfp4 x bf16"),
            std::string::npos) << b.status().message();
  EXPECT_NE(b.status().message().find("(built-in backends: fake-cpu, fake-ref)"), std::string::npos)
      << b.status().message();
}

TEST_F(MemoryFixture, FallbackAndStrictCountOnlyBackendsOfThatMemory) {
  Problem p = kBf16;
  p.k = 2880;  // fake-cpu refuses; fake-gpu would run it, on device memory
  auto s = detail::select_from(all, p, with_gpu, on(MemoryKind::kCPU));
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s.value().backend, &ref);
  EXPECT_TRUE(s.value().fallback);
  EXPECT_EQ(s.value().how, "automatic (fallback to reference)");
  SelectOptions o = on(MemoryKind::kCPU);
  o.strict = true;
  auto t = detail::select_from(all, p, with_gpu, o);
  ASSERT_FALSE(t.ok());
  const std::string m = t.status().message();
  EXPECT_NE(m.find("strict mode"), std::string::npos) << m;
  EXPECT_NE(m.find("fake-cpu: K = 2880"), std::string::npos) << m;
  EXPECT_EQ(m.find("fake-gpu"), std::string::npos) << m;
  // Only reference backends take that memory: not a fallback (nothing faster could run there).
  std::vector<const Backend*> ref_and_gpu{&ref, &gpu};
  auto r = detail::select_from(ref_and_gpu, p, with_gpu, on(MemoryKind::kCPU));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value().fallback);
  const std::string e = detail::explain_from(all, p, with_gpu, on(MemoryKind::kCPU));
  EXPECT_EQ(e.find("fake-gpu"), std::string::npos) << e;
  EXPECT_NE(e.find("fake-ref       prio   0  ok   <- chosen"), std::string::npos) << e;
}

TEST_F(MemoryFixture, OverridesAndTheMemory) {
  SelectOptions o = on(MemoryKind::kCUDA);
  o.override_backend = "fake-cpu";
  o.override_source = "override (backend=)";
  auto s = detail::select_from(all, kBf16, with_gpu, o);
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("override (backend=): backend 'fake-cpu' runs on cpu arrays, "
                                      "but the arrays are cuda arrays"),
            std::string::npos) << s.status().message();
  o.override_backend = "fake-gpu";
  auto g = detail::select_from(all, kBf16, with_gpu, o);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g.value().how, "override (backend=)");
  o.override_backend = "nope";
  auto u = detail::select_from(all, kBf16, with_gpu, o);
  EXPECT_EQ(u.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(u.status().message().find("unknown backend 'nope' (built-in backends: fake-gpu, fake-cpu, fake-ref)"),
            std::string::npos) << u.status().message();
  // An environment override naming a backend of the other memory is for the other calls.
  ::setenv("MXQ_LINEAR_BACKEND", "fake-ref", 1);
  auto e = detail::select_from(all, kBf16, with_gpu, on(MemoryKind::kCUDA));
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_EQ(e.value().backend, &gpu);
  EXPECT_EQ(e.value().how, "automatic");
  auto h = detail::select_from(all, kBf16, with_gpu, on(MemoryKind::kCPU));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h.value().backend, &ref);
  EXPECT_EQ(h.value().how, "override (MXQ_LINEAR_BACKEND)");
  // An unknown name in the environment is an error whatever the memory.
  ::setenv("MXQ_LINEAR_BACKEND", "nonexistent", 1);
  EXPECT_EQ(detail::select_from(all, kBf16, with_gpu, on(MemoryKind::kCUDA)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ProblemText, PrintsEveryMoEField) {
  Problem p = Problem::moe_problem(ElemType::kE4M3, ActKey::kMXFP8Dynamic, 16, 7168, 2048, 256, 8);
  p.moe.routing = Routing::kSigmoidGroupedTopK;
  p.moe.n_group = 8;
  p.moe.topk_group = 4;
  p.moe.layout = io::GateUpLayout::kSeparate;
  p.moe.expert_map = true;
  EXPECT_EQ(p.to_string(),
            "moe mxfp8 x mxfp8-dynamic -> bf16, M=16 H=7168 I=2048 E=256 top8, silu, separate, "
            "sigmoid-grouped-topk (groups 4/8), expert map");
  EXPECT_TRUE(p.validate().ok());
  p.moe.n_group = 7;
  EXPECT_FALSE(p.validate().ok());
}

}  // namespace
}  // namespace mxq
