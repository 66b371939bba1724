// The public entry of a backend call (Backend::prepare_* / run_*, src/contract/backend.cc) checks
// the arguments once: a malformed call (wrong shape, wrong dtype, K not in whole 32-blocks) gets
// one error that names the backend, the tensor, the expected and the given value, with the same
// text on every backend, and never reaches the backend's own code (do_*).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mxq/backend.h"
#include "mxq/select.h"

namespace mxq {
namespace {

// Canonical weights [batch, n, k] (k a multiple of 32) with finite scales; `k_view` is the K the
// view claims (to make it malformed).
struct Weights {
  std::vector<uint8_t> packed, scales;
  MXWeightView view;
  Weights(int64_t batch, int64_t n, int64_t k, int64_t k_view = -1) {
    packed.assign(size_t(batch * n * k / 2), 0x21);  // E2M1 codes 1 and 2
    scales.assign(size_t(batch * n * k / 32), 127);  // 2^0
    view = {ElemType::kE2M1, batch, n, k_view < 0 ? k : k_view, packed.data(), scales.data()};
  }
};

// A backend that runs everything and counts how often its own code is reached.
class Counting final : public Backend {
 public:
  mutable int calls = 0;
  std::string_view name() const override { return "counting"; }
  MemoryKind memory_kind() const override { return MemoryKind::kCPU; }
  int priority() const override { return 0; }
  Verdict supports(const Device&) const override { return Verdict::yes(); }
  bool declares_act_key(ActKey) const override { return true; }
  Verdict can_implement(const Problem& p) const override {
    if (act_key_mx_elem(p.act) && p.k % 32 != 0)
      return Verdict::no("K = " + std::to_string(p.k) + " is not a multiple of 32");
    return Verdict::yes();
  }

 protected:
  struct Prepared final : PreparedWeights {
    size_t bytes() const override { return 0; }
  };
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_linear(
      const Problem&, const LinearWeights&) const override {
    ++calls;
    return std::unique_ptr<PreparedWeights>(std::make_unique<Prepared>());
  }
  Status do_run_linear(const Problem&, const PreparedWeights&, const DenseView&,
                       const DenseMutView&, void*) const override {
    ++calls;
    return Status::Ok();
  }
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_moe(const Problem&,
                                                            const MoEWeights&) const override {
    ++calls;
    return std::unique_ptr<PreparedWeights>(std::make_unique<Prepared>());
  }
  Status do_run_moe(const Problem&, const PreparedWeights&, const DenseView&, const MoERouting&,
                    const DenseMutView&, void*) const override {
    ++calls;
    return Status::Ok();
  }
};

// Every built-in backend that runs the problem here, and the counting one.
std::vector<const Backend*> runners(const Problem& p, const Backend& counting) {
  std::vector<const Backend*> v{&counting};
  for (const Backend* b : backends())
    if (b->supports(this_device()) && b->check_problem(p)) v.push_back(b);
  return v;
}

void expect_one_error(const Status& s, StatusCode code, const std::string& want) {
  EXPECT_EQ(s.code(), code) << s.to_string();
  EXPECT_EQ(s.message(), want);  // the whole message: one error, not one wrapped in another
}

TEST(EntryChecks, MalformedLinearCallIsOneErrorFromTheEntry) {
  const int64_t m = 2, n = 32, k = 64;
  const Problem p = Problem::linear(ElemType::kE2M1, ActKey::kBF16, m, n, k);
  const Weights w(1, n, k), w40(1, n, 64, 40);
  std::vector<uint16_t> x(size_t(m * k), 0x3F80), y(size_t(m * n));
  std::vector<float> x32(size_t(m * k), 1.0f);
  const Counting counting;
  const std::vector<const Backend*> bs = runners(p, counting);
  ASSERT_GE(bs.size(), 3u);  // counting, cpu-reference and cpu at least
  for (const Backend* b : bs) {
    SCOPED_TRACE(std::string(b->name()));
    const std::string name(b->name());
    counting.calls = 0;
    // K not in whole 32-blocks: the weight view holds 40 columns (canonical views round K up).
    expect_one_error(b->prepare_linear(p, {w40.view, {}, 1.0f}).status(),
                     StatusCode::kInvalidArgument,
                     name + ": linear weight: expected shape [1, 32, 64], got [1, 32, 40] "
                            "(K must be a multiple of 32)");
    // An MX activation key on a K that is not a multiple of 32: the backend's refusal, once.
    Problem odd = Problem::linear(ElemType::kE2M1, ActKey::kMXFP4Dynamic, m, n, 40);
    const Weights w64(1, n, 64);
    const Status refused = b->prepare_linear(odd, {w64.view, {}, 1.0f}).status();
    EXPECT_EQ(refused.code(), StatusCode::kUnimplemented) << refused.to_string();
    EXPECT_EQ(refused.message().rfind(name + " cannot run " + odd.to_string() + ": ", 0), 0u)
        << refused.message();
    EXPECT_NE(refused.message().find("K = 40"), std::string::npos) << refused.message();
    EXPECT_EQ(counting.calls, 0) << "a malformed prepare reached the backend";

    auto prepared = b->prepare_linear(p, {w.view, {}, 1.0f});
    ASSERT_TRUE(prepared.ok()) << prepared.status().to_string();
    EXPECT_EQ(counting.calls, b == &counting ? 1 : 0);
    counting.calls = 0;
    // Wrong shape, wrong dtype (x, then y).
    expect_one_error(b->run_linear(p, *prepared.value(), {x.data(), DType::kBF16, m, k - 1},
                                   {y.data(), DType::kBF16, m, n}),
                     StatusCode::kInvalidArgument,
                     name + ": linear x: expected shape [2, 64], got [2, 63]");
    expect_one_error(b->run_linear(p, *prepared.value(), {x32.data(), DType::kF32, m, k},
                                   {y.data(), DType::kBF16, m, n}),
                     StatusCode::kInvalidArgument,
                     name + ": linear x: expected dtype bf16, got f32");
    expect_one_error(b->run_linear(p, *prepared.value(), {x.data(), DType::kBF16, m, k},
                                   {y.data(), DType::kF16, m, n}),
                     StatusCode::kInvalidArgument,
                     name + ": linear y: expected dtype bf16, got f16");
    // Weights prepared for another layer (only M may differ).
    Problem other = p;
    other.n = 16;
    expect_one_error(b->run_linear(other, *prepared.value(), {x.data(), DType::kBF16, m, k},
                                   {y.data(), DType::kBF16, m, 16}),
                     StatusCode::kInvalidArgument,
                     name + ": the prepared weights are for " + p.to_string() +
                         "; the call asks for " + other.to_string() + " (only M may differ)");
    EXPECT_EQ(counting.calls, 0) << "a malformed run reached the backend";
    // The same call well-formed, with another M, runs.
    Problem one = p;
    one.m = 1;
    EXPECT_TRUE(b->run_linear(one, *prepared.value(), {x.data(), DType::kBF16, 1, k},
                              {y.data(), DType::kBF16, 1, n}).ok());
    EXPECT_EQ(counting.calls, b == &counting ? 1 : 0);
  }
}

TEST(EntryChecks, MalformedMoECallIsOneErrorFromTheEntry) {
  const int64_t m = 2, h = 64, inter = 32, e = 4;
  const Problem p = Problem::moe_problem(ElemType::kE2M1, ActKey::kBF16, m, h, inter, e, 2);
  const Weights w13(e, 2 * inter, h), w2(e, h, inter), w2_40(e, h, 64, 40);
  std::vector<uint16_t> x(size_t(m * h), 0x3F80), y(size_t(m * h));
  std::vector<float> logits(size_t(m * e), 0.5f);
  const MoERouting r{{logits.data(), DType::kF32, m, e}, {}, nullptr};
  const Counting counting;
  const std::vector<const Backend*> bs = runners(p, counting);
  ASSERT_GE(bs.size(), 3u);
  for (const Backend* b : bs) {
    SCOPED_TRACE(std::string(b->name()));
    const std::string name(b->name());
    counting.calls = 0;
    MoEWeights mw;
    mw.w13 = w13.view;
    mw.w2 = w2_40.view;  // I = 32 claimed as 40 columns: not whole 32-blocks
    expect_one_error(b->prepare_moe(p, mw).status(), StatusCode::kInvalidArgument,
                     name + ": moe w2: expected shape [4, 64, 32], got [4, 64, 40] "
                            "(K must be a multiple of 32)");
    mw.w2 = w2.view;
    MoEWeights wrong = mw;
    wrong.w13.n = inter;  // gate only: [E, I, H] where [E, 2I, H] is expected
    expect_one_error(b->prepare_moe(p, wrong).status(), StatusCode::kInvalidArgument,
                     name + ": moe w13: expected shape [4, 64, 64], got [4, 32, 64]");
    EXPECT_EQ(counting.calls, 0) << "a malformed prepare reached the backend";

    auto prepared = b->prepare_moe(p, mw);
    ASSERT_TRUE(prepared.ok()) << prepared.status().to_string();
    counting.calls = 0;
    expect_one_error(b->run_moe(p, *prepared.value(), {x.data(), DType::kBF16, m, h - 1}, r,
                                {y.data(), DType::kBF16, m, h}),
                     StatusCode::kInvalidArgument,
                     name + ": moe x: expected shape [2, 64], got [2, 63]");
    expect_one_error(b->run_moe(p, *prepared.value(), {x.data(), DType::kF16, m, h}, r,
                                {y.data(), DType::kBF16, m, h}),
                     StatusCode::kInvalidArgument,
                     name + ": moe x: expected dtype bf16, got f16");
    MoERouting short_logits = r;
    short_logits.router_logits.cols = e - 1;
    expect_one_error(b->run_moe(p, *prepared.value(), {x.data(), DType::kBF16, m, h},
                                short_logits, {y.data(), DType::kBF16, m, h}),
                     StatusCode::kInvalidArgument,
                     name + ": moe router_logits: expected [2, 4], got [2, 3]");
    MoERouting int_logits = r;
    int_logits.router_logits.dtype = DType(7);  // no such dtype
    EXPECT_FALSE(b->run_moe(p, *prepared.value(), {x.data(), DType::kBF16, m, h}, int_logits,
                            {y.data(), DType::kBF16, m, h}).ok());
    const std::vector<int32_t> map(size_t(e), 0);
    MoERouting mapped = r;
    mapped.expert_map = map.data();
    expect_one_error(b->run_moe(p, *prepared.value(), {x.data(), DType::kBF16, m, h}, mapped,
                                {y.data(), DType::kBF16, m, h}),
                     StatusCode::kInvalidArgument,
                     name + ": moe expert_map: given, but the problem has none");
    EXPECT_EQ(counting.calls, 0) << "a malformed run reached the backend";
    EXPECT_TRUE(b->run_moe(p, *prepared.value(), {x.data(), DType::kBF16, m, h}, r,
                           {y.data(), DType::kBF16, m, h}).ok());
    EXPECT_EQ(counting.calls, b == &counting ? 1 : 0);
  }
}

// Each bad argument of a linear call, one at a time: one error from the entry, the whole message
// (naming the backend, the tensor, the expected and the given value), before any backend code.
TEST(EntryChecks, EachBadLinearArgumentIsOneErrorFromTheEntry) {
  const int64_t m = 2, n = 32, k = 64;
  const Problem p = Problem::linear(ElemType::kE2M1, ActKey::kBF16, m, n, k);
  Problem pb = p;
  pb.bias = true;
  const Weights w(1, n, k);
  std::vector<float> bias(size_t(n), 0.0f);
  std::vector<uint16_t> x(size_t(m * k), 0x3F80), y(size_t(m * n));
  const Counting counting;
  for (const Backend* b : runners(p, counting)) {
    SCOPED_TRACE(std::string(b->name()));
    const std::string name(b->name());
    counting.calls = 0;
    const auto prep = [&](const Problem& q, const LinearWeights& lw) {
      return b->prepare_linear(q, lw).status();
    };
    // The problem itself: Problem::validate, the op.
    Problem zero = p;
    zero.n = 0;
    expect_one_error(prep(zero, {w.view, {}, 1.0f}), StatusCode::kInvalidArgument,
                     name + ": " + zero.to_string() + ": M, N and K must be positive");
    const Problem moe = Problem::moe_problem(ElemType::kE2M1, ActKey::kBF16, m, n, k, 4, 2);
    expect_one_error(prep(moe, {w.view, {}, 1.0f}), StatusCode::kInvalidArgument,
                     name + " prepare_linear: expected a linear problem, got " + moe.to_string());
    // The weight view: format, presence.
    MXWeightView e4m3 = w.view;
    e4m3.elem = ElemType::kE4M3;
    expect_one_error(prep(p, {e4m3, {}, 1.0f}), StatusCode::kInvalidArgument,
                     name + ": linear weight: expected mxfp4 elements, got mxfp8");
    MXWeightView null = w.view;
    null.scales = nullptr;
    expect_one_error(prep(p, {null, {}, 1.0f}), StatusCode::kInvalidArgument,
                     name + ": linear weight: missing (null packed or scales pointer)");
    // The bias: given iff the problem has one, [1, N].
    expect_one_error(prep(p, {w.view, {bias.data(), DType::kF32, 1, n}, 1.0f}),
                     StatusCode::kInvalidArgument,
                     name + ": linear bias: given, but the problem has no bias (" + p.to_string() +
                         ")");
    expect_one_error(prep(pb, {w.view, {}, 1.0f}), StatusCode::kInvalidArgument,
                     name + ": linear bias: missing: the problem has a bias (" + pb.to_string() +
                         "), pass [1, 32]");
    expect_one_error(prep(pb, {w.view, {bias.data(), DType::kF32, 1, n - 1}, 1.0f}),
                     StatusCode::kInvalidArgument,
                     name + ": linear bias: expected shape [1, 32], got [1, 31]");
    EXPECT_EQ(counting.calls, 0) << "a malformed prepare reached the backend";

    auto prepared = b->prepare_linear(p, {w.view, {}, 1.0f});
    ASSERT_TRUE(prepared.ok()) << prepared.status().to_string();
    counting.calls = 0;
    expect_one_error(b->run_linear(p, *prepared.value(), {nullptr, DType::kBF16, m, k},
                                   {y.data(), DType::kBF16, m, n}),
                     StatusCode::kInvalidArgument, name + ": linear x: missing (null data)");
    expect_one_error(b->run_linear(p, *prepared.value(), {x.data(), DType::kBF16, m, k},
                                   {y.data(), DType::kBF16, m + 1, n}),
                     StatusCode::kInvalidArgument,
                     name + ": linear y: expected shape [2, 32], got [3, 32]");
    EXPECT_EQ(counting.calls, 0) << "a malformed run reached the backend";
  }
  // fp8-static-tensor needs a positive finite input scale (every backend declaring the key).
  const Problem f8 = Problem::linear(ElemType::kE2M1, ActKey::kFP8StaticTensor, m, n, k);
  for (const Backend* b : runners(f8, counting)) {
    SCOPED_TRACE(std::string(b->name()));
    counting.calls = 0;
    expect_one_error(b->prepare_linear(f8, {w.view, {}, 0.0f}).status(),
                     StatusCode::kInvalidArgument,
                     std::string(b->name()) + ": linear input_scale: fp8-static-tensor needs a "
                                              "positive finite scale, got 0.000000");
    EXPECT_EQ(counting.calls, 0) << "a malformed prepare reached the backend";
  }
}

// Each bad argument of an MoE call: the routing parameters (Problem::validate, whose rules are
// contract::moe_routing_error, shared with the CPU and GPU routing functions below the entry),
// the weights, the routing views.
TEST(EntryChecks, EachBadMoEArgumentIsOneErrorFromTheEntry) {
  const int64_t m = 2, h = 64, inter = 32, e = 4;
  const Problem p = Problem::moe_problem(ElemType::kE2M1, ActKey::kBF16, m, h, inter, e, 2);
  Problem grouped = p;
  grouped.moe.routing = Routing::kSigmoidGroupedTopK;
  grouped.moe.n_group = 2;
  grouped.moe.topk_group = 1;
  grouped.moe.correction_bias = true;
  Problem mapped = p;
  mapped.moe.expert_map = true;
  const Weights w13(e, 2 * inter, h), w2(e, h, inter), w1(e, inter, h);
  MoEWeights mw;
  mw.w13 = w13.view;
  mw.w2 = w2.view;
  std::vector<uint16_t> x(size_t(m * h), 0x3F80), y(size_t(m * h));
  std::vector<float> logits(size_t(m * e), 0.5f), cb(size_t(e), 0.0f), b2(size_t(e * h), 0.0f);
  std::vector<uint16_t> cb16(size_t(e), 0);
  const std::vector<int32_t> map = {0, 1, 2, 3};
  const MoERouting r{{logits.data(), DType::kF32, m, e}, {}, nullptr};
  const Counting counting;
  for (const Backend* b : runners(grouped, counting)) {
    SCOPED_TRACE(std::string(b->name()));
    const std::string name(b->name());
    counting.calls = 0;
    const auto prep = [&](const Problem& q, const MoEWeights& w) {
      return b->prepare_moe(q, w).status();
    };
    // The routing parameters, once, with their values.
    Problem many = p;
    many.moe.topk = 5;
    expect_one_error(prep(many, mw), StatusCode::kInvalidArgument,
                     name + ": " + many.to_string() +
                         ": need 1 <= topk <= experts, got topk 5, experts 4");
    Problem groups = grouped;
    groups.moe.n_group = 3;
    expect_one_error(prep(groups, mw), StatusCode::kInvalidArgument,
                     name + ": " + groups.to_string() +
                         ": grouped top-k needs n_group dividing experts and 1 <= topk_group <= "
                         "n_group, got n_group 3, topk_group 1, experts 4");
    Problem narrow = grouped;
    narrow.moe.topk = 3;
    expect_one_error(prep(narrow, mw), StatusCode::kInvalidArgument,
                     name + ": " + narrow.to_string() +
                         ": topk exceeds the experts in topk_group groups, got topk 3, "
                         "topk_group 1 of 2 groups of 2 experts");
    // The weights: expert count, layout, bias.
    MoEWeights fewer = mw;
    fewer.w2.batch = e - 1;
    expect_one_error(prep(p, fewer), StatusCode::kInvalidArgument,
                     name + ": moe w2: expected 4 experts (no expert map), got 3");
    MoEWeights both = mw;
    both.w1 = w1.view;
    expect_one_error(prep(p, both), StatusCode::kInvalidArgument,
                     name + ": moe w1/w3: given, but the chunked layout takes the fused w13 (and "
                            "bias13)");
    MoEWeights biased = mw;
    biased.bias2 = {b2.data(), DType::kF32, e, h};
    expect_one_error(prep(p, biased), StatusCode::kInvalidArgument,
                     name + ": moe bias: given, but the problem has no bias (" + p.to_string() +
                         ")");
    Problem pb = p;
    pb.bias = true;
    expect_one_error(prep(pb, mw), StatusCode::kInvalidArgument,
                     name + ": moe bias: the problem has a bias, but no bias view was given");
    EXPECT_EQ(counting.calls, 0) << "a malformed prepare reached the backend";

    // The routing views of a call.
    auto pg = b->prepare_moe(grouped, mw);
    ASSERT_TRUE(pg.ok()) << pg.status().to_string();
    auto pm = b->prepare_moe(mapped, mw);
    ASSERT_TRUE(pm.ok()) << pm.status().to_string();
    counting.calls = 0;
    const auto run = [&](const Problem& q, const PreparedWeights& w, const MoERouting& rr) {
      return b->run_moe(q, w, {x.data(), DType::kBF16, m, h}, rr, {y.data(), DType::kBF16, m, h});
    };
    expect_one_error(run(grouped, *pg.value(), r), StatusCode::kInvalidArgument,
                     name + ": moe correction_bias: the problem has correction_bias=true "
                            "(sigmoid-grouped-topk), but none was given: pass f32 [1, 4]");
    MoERouting with_cb = r;
    with_cb.correction_bias = {cb16.data(), DType::kBF16, 1, e};
    expect_one_error(run(grouped, *pg.value(), with_cb), StatusCode::kInvalidArgument,
                     name + ": moe correction_bias: expected f32 [1, 4], got bf16 [1, 4]");
    expect_one_error(run(mapped, *pm.value(), r), StatusCode::kInvalidArgument,
                     name + ": moe expert_map: the problem has expert_map=true, but none was "
                            "given: pass int32 [4]");
    MoERouting no_logits = r;
    no_logits.router_logits.data = nullptr;
    no_logits.correction_bias = {cb.data(), DType::kF32, 1, e};
    expect_one_error(run(grouped, *pg.value(), no_logits), StatusCode::kInvalidArgument,
                     name + ": moe router_logits: missing (null data)");
    MoERouting i8_logits = r;
    i8_logits.router_logits.dtype = DType(7);
    i8_logits.correction_bias = {cb.data(), DType::kF32, 1, e};
    const Status s = run(grouped, *pg.value(), i8_logits);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_EQ(s.message().rfind(name + ": moe router_logits: expected dtype f32, bf16 or f16, got ",
                                0), 0u) << s.message();
    EXPECT_EQ(counting.calls, 0) << "a malformed run reached the backend";
    // Well-formed, both run.
    MoERouting good = r;
    good.correction_bias = {cb.data(), DType::kF32, 1, e};
    EXPECT_TRUE(run(grouped, *pg.value(), good).ok());
    MoERouting good_map = r;
    good_map.expert_map = map.data();
    EXPECT_TRUE(run(mapped, *pm.value(), good_map).ok());
  }
}

// Prepared weights of one backend given to another, or of a linear layer to run_moe.
TEST(EntryChecks, PreparedWeightsBelongToTheirBackendAndOp) {
  const Backend* ref = find_backend("cpu-reference");
  const Backend* cpu = find_backend("cpu");
  ASSERT_NE(ref, nullptr);
  ASSERT_NE(cpu, nullptr);
  const Problem p = Problem::linear(ElemType::kE2M1, ActKey::kBF16, 1, 32, 64);
  const Weights w(1, 32, 64);
  auto prepared = ref->prepare_linear(p, {w.view, {}, 1.0f});
  ASSERT_TRUE(prepared.ok());
  EXPECT_EQ(prepared.value()->prepared_by(), ref);
  std::vector<uint16_t> x(64, 0x3F80), y(32);
  expect_one_error(cpu->run_linear(p, *prepared.value(), {x.data(), DType::kBF16, 1, 64},
                                   {y.data(), DType::kBF16, 1, 32}),
                   StatusCode::kInvalidArgument,
                   "cpu: the prepared weights do not come from cpu prepare_linear (they come from "
                   "cpu-reference for " + p.to_string() + ")");
}

}  // namespace
}  // namespace mxq
