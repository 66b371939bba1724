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
