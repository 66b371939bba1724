// Host allocation faults over the CPU backends (issue 19): a test-only replacement of the global
// operator new fails the n-th allocation made while a call is armed, on any thread (the caller
// or a pool worker running a chunk), for every n that prepare + run of a layer makes (linear and
// MoE, cpu and cpu-reference, the cpu backend on 4 threads with 1-row chunks so the workers
// allocate too); once with that one allocation failing, once with it and every later one failing
// (the host stays out of memory). Every injected failure must come back as a resource-exhausted
// Status naming the backend and the call (the entry points catch std::bad_alloc, and run_team
// carries a worker's to the caller), never another error, an escaping exception or a crash; it
// must leave y untouched and leak nothing (live allocation count back to where it was); and the
// following, unfaulted call must give the same bits as before. Thread start failures: the cpu
// backend on a new, larger team.
//
// Threaded calls are exact too: their allocations are per call or per chunk, and the chunks are
// fixed by the problem and the options whichever thread takes them, so every clean call makes
// the same number (checked) and every n is reached. Only which chunk's allocation is the n-th
// varies with the schedule, and every one must be handled alike.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/backends.h"
#include "cpu/fast/cpu_backend.h"
#include "cpu_test_util.h"

#include "common/host_alloc_hook.h"

namespace mxq {
namespace {

using namespace cputest;
using cpu::fast::CpuBackend;
using cpu::fast::CpuBackendOptions;

struct Outcome {
  bool ok = false;
  bool escaped = false;        // an exception escaped the backend
  bool fired = false;          // the injected failure was reached
  bool y_untouched = false;    // y still holds the fill pattern
  long allocs = 0;             // allocations prepare + run made (all threads)
  long leaked = 0;             // live allocations after the call minus before
  Status status;               // the failed Status, when one came back
  std::vector<uint8_t> y;      // the output bytes when ok
};

// One layer: prepare (returns its Status and keeps the prepared weights) and run.
struct Layer {
  std::function<StatusOr<std::unique_ptr<PreparedWeights>>()> prepare;
  std::function<Status(const PreparedWeights&)> run;
  Dense* y;
};

enum class Fault { kOne, kFromThenOn };  // the n-th allocation fails; or it and every later one

// prepare + run with the `fail_at`-th allocation failing (0: none). Only the backend's calls
// are inside the armed window. `leaked` is measured with the Status and the prepared weights
// gone and before any gtest assertion (a failed one keeps allocations of its own).
Outcome prepare_and_run(const Layer& l, long fail_at, Fault fault = Fault::kOne) {
  Outcome o;
  constexpr uint8_t kFill = 0xAB;
  std::fill(l.y->bytes.begin(), l.y->bytes.end(), kFill);
  StatusCode code = StatusCode::kOk;
  std::string message;
  message.reserve(4096);  // before the count: copying the message into it allocates nothing
  const long live0 = g_live.load();
  const long before = g_allocs.load();
  {
    Status s;
    g_sticky.store(fault == Fault::kFromThenOn);
    g_countdown.store(fail_at);
    try {
      auto prepared = l.prepare();
      s = prepared.ok() ? l.run(*prepared.value()) : prepared.status();
    } catch (...) {
      o.escaped = true;
    }
    o.fired = fail_at > 0 && g_countdown.load() == 0;
    g_countdown.store(0);
    g_failing.store(false);
    g_sticky.store(false);
    o.allocs = g_allocs.load() - before;
    o.ok = !o.escaped && s.ok();
    code = s.code();
    message.assign(s.message(), 0, message.capacity());
  }
  o.leaked = g_live.load() - live0;
  o.status = Status(code, std::move(message));
  o.y_untouched = std::all_of(l.y->bytes.begin(), l.y->bytes.end(),
                              [](uint8_t v) { return v == kFill; });
  if (o.ok) o.y = l.y->bytes;
  return o;
}

void check_fault(const Backend& b, const Layer& l, const Outcome& base, long n, Fault fault,
                 int& classified) {
  const Outcome f = prepare_and_run(l, n, fault);
  EXPECT_TRUE(f.fired) << "the injected failure was never reached";
  EXPECT_FALSE(f.escaped) << "an exception escaped the backend";
  EXPECT_EQ(f.leaked, 0) << "leaked after the injected failure";
  if (f.ok) {
    // A backend may absorb a failed allocation (a nothrow path with a fallback): then the
    // result must still be right.
    EXPECT_EQ(f.y, base.y) << "an allocation failed and the result is wrong";
  } else if (!f.escaped) {
    ++classified;
    EXPECT_EQ(f.status.code(), StatusCode::kResourceExhausted) << f.status.to_string();
    EXPECT_TRUE(f.y_untouched) << "a failed call wrote y";
    // Still out of memory when the message is built: the short one (host_memory.h).
    if (fault == Fault::kFromThenOn && f.status.message() == "out of memory") return;
    EXPECT_NE(f.status.message().find("out of host memory"), std::string::npos)
        << f.status.message();
    EXPECT_NE(f.status.message().find("the buffers of " + std::string(b.name()) + " "),
              std::string::npos)
        << "the error names the backend: " << f.status.message();
    EXPECT_TRUE(f.status.message().find(" prepare_") != std::string::npos ||
                f.status.message().find(" run_") != std::string::npos)
        << "the error names the call: " << f.status.message();
    if (n == base.allocs && fault == Fault::kOne)
      std::printf("%s\n", f.status.to_string().c_str());
  }
}

void fault_every_allocation(const Backend& b, const Layer& l) {
  // Warm-up (thread pool workers, lazily built tables), then the baseline and its allocations.
  ASSERT_TRUE(prepare_and_run(l, 0).ok);
  const Outcome base = prepare_and_run(l, 0);
  ASSERT_TRUE(base.ok) << base.status.to_string();
  ASSERT_GT(base.allocs, 0) << "prepare + run made no allocation: nothing to inject";
  for (int i = 0; i < 3; ++i) {
    const Outcome clean = prepare_and_run(l, 0);
    ASSERT_TRUE(clean.ok) << clean.status.to_string();
    EXPECT_EQ(clean.leaked, 0) << "a clean prepare + run leaked";
    EXPECT_EQ(clean.y, base.y);
    ASSERT_EQ(clean.allocs, base.allocs) << "clean calls make different numbers of allocations";
  }
  int classified = 0, classified_on = 0;
  for (long n = 1; n <= base.allocs; ++n) {
    SCOPED_TRACE("failing allocation " + std::to_string(n) + " of " + std::to_string(base.allocs));
    {
      SCOPED_TRACE("that one only");
      check_fault(b, l, base, n, Fault::kOne, classified);
    }
    {
      SCOPED_TRACE("and every later one");
      check_fault(b, l, base, n, Fault::kFromThenOn, classified_on);
    }
    const Outcome again = prepare_and_run(l, 0);
    ASSERT_TRUE(again.ok) << "the call after the failure: " << again.status.to_string();
    EXPECT_EQ(again.y, base.y) << "the call after the failure differs from the baseline";
    EXPECT_EQ(again.allocs, base.allocs);
  }
  std::printf("%s: %ld allocations failed one at a time, %d gave resource exhausted; "
              "from each on, %d\n",
              std::string(b.name()).c_str(), base.allocs, classified, classified_on);
  EXPECT_GT(classified, 0);
}

struct LinearCase {
  Problem p;
  Weight wt;
  Dense x, bias, y;
  LinearCase(ActKey act, int64_t m, int64_t n, int64_t k) {
    p = Problem::linear(ElemType::kE2M1, act, m, n, k, /*bias=*/true);
    p.out = DType::kBF16;
    wt = make_weight(ElemType::kE2M1, 1, n, k, 7, 0.1f);
    x = Dense(act_input_dtype(act), m, k, randn(size_t(m * k), 8));
    bias = Dense(DType::kF32, 1, n, randn(size_t(n), 9, 0.5f));
    y = Dense(p.out, m, n);
  }
  Layer layer(const Backend& b) {
    return {[this, &b] { return b.prepare_linear(p, LinearWeights{wt.view(), bias.view(), 0.05f}); },
            [this, &b](const PreparedWeights& w) { return b.run_linear(p, w, x.view(), y.mut()); },
            &y};
  }
};

struct MoECase {
  Problem p;
  Weight w13, w2;
  Dense x, logits, y;
  MoECase(ActKey act, int64_t m, int64_t h, int64_t inter, int64_t experts, int64_t topk) {
    p = Problem::moe_problem(ElemType::kE2M1, act, m, h, inter, experts, topk);
    p.out = DType::kBF16;
    w13 = make_weight(ElemType::kE2M1, experts, 2 * inter, h, 11, 0.1f);
    w2 = make_weight(ElemType::kE2M1, experts, h, inter, 12, 0.1f);
    x = Dense(act_input_dtype(act), m, h, randn(size_t(m * h), 13));
    logits = Dense(DType::kF32, m, experts, randn(size_t(m * experts), 14));
    y = Dense(p.out, m, h);
  }
  Layer layer(const Backend& b) {
    return {[this, &b] {
              MoEWeights w;
              w.w13 = w13.view();
              w.w2 = w2.view();
              return b.prepare_moe(p, w);
            },
            [this, &b](const PreparedWeights& w) {
              MoERouting r;
              r.router_logits = logits.view();
              return b.run_moe(p, w, x.view(), r, y.mut());
            },
            &y};
  }
};

// The cpu backend on 4 threads with 1-row chunks: tiny problems are split, workers allocate.
std::unique_ptr<Backend> threaded_cpu(int threads = 4) {
  CpuBackendOptions o;
  o.threads = threads;
  o.min_rows_per_thread = 1;
  return std::make_unique<CpuBackend>(o);
}

TEST(HostAllocationFaults, CpuReferenceLinear) {
  const auto b = make_cpu_reference_backend();
  for (ActKey a : {ActKey::kBF16, ActKey::kMXFP8Dynamic}) {
    SCOPED_TRACE(act_key_name(a));
    LinearCase c(a, 3, 40, 96);
    fault_every_allocation(*b, c.layer(*b));
  }
}

TEST(HostAllocationFaults, CpuLinear) {
  for (const auto& b : {make_cpu_backend(), threaded_cpu()}) {
    for (ActKey a : {ActKey::kBF16, ActKey::kMXFP8Dynamic}) {
      SCOPED_TRACE(act_key_name(a));
      LinearCase c(a, 3, 40, 96);
      fault_every_allocation(*b, c.layer(*b));
    }
  }
}

TEST(HostAllocationFaults, CpuReferenceMoE) {
  const auto b = make_cpu_reference_backend();
  MoECase c(ActKey::kBF16, 3, 64, 32, 4, 2);
  fault_every_allocation(*b, c.layer(*b));
}

TEST(HostAllocationFaults, CpuMoE) {
  for (const auto& b : {make_cpu_backend(), threaded_cpu()}) {
    for (ActKey a : {ActKey::kBF16, ActKey::kMXFP8Dynamic, ActKey::kFP8DynamicTensor}) {
      SCOPED_TRACE(act_key_name(a));
      MoECase c(a, 3, 64, 32, 4, 2);
      fault_every_allocation(*b, c.layer(*b));
    }
  }
}

// Thread starts failing (no more threads): the cpu backend on a team larger than any before in
// this process (the pool must start workers), the n-th start failing for each n: the call runs
// with the threads there are and gives the same bits; the next call works.
TEST(HostAllocationFaults, CpuThreadStartFailures) {
  LinearCase lc(ActKey::kBF16, 3, 40, 96);
  MoECase mc(ActKey::kBF16, 3, 64, 32, 4, 2);
  const auto ref = threaded_cpu(2);
  const Outcome lbase = prepare_and_run(lc.layer(*ref), 0), mbase = prepare_and_run(mc.layer(*ref), 0);
  ASSERT_TRUE(lbase.ok && mbase.ok);
  for (int n = 1; n <= 3; ++n) {
    SCOPED_TRACE("failing thread start " + std::to_string(n));
    const auto b = threaded_cpu(80 + 20 * n);  // pool workers are capped at 64: then fresh ones
    for (auto [layer, base] : {std::pair{lc.layer(*b), &lbase}, std::pair{mc.layer(*b), &mbase}}) {
      detail::fail_nth_thread_start_for_testing(n);
      const Outcome f = prepare_and_run(layer, 0);
      detail::fail_nth_thread_start_for_testing(0);
      ASSERT_TRUE(f.ok) << f.status.to_string();
      EXPECT_EQ(f.y, base->y);
      const Outcome again = prepare_and_run(layer, 0);
      ASSERT_TRUE(again.ok) << again.status.to_string();
      EXPECT_EQ(again.y, base->y);
    }
  }
}

TEST(HostAllocationFaults, ResourceExhaustedStatusNamesWhatAndHowMuch) {
  const Status s = resource_exhausted("device", "the repacked weights of layer 3", 268435456,
                                      "cudaMalloc: cudaErrorMemoryAllocation");
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.to_string(),
            "resource exhausted: out of device memory allocating 268435456 bytes for the "
            "repacked weights of layer 3: cudaMalloc: cudaErrorMemoryAllocation");
}

}  // namespace
}  // namespace mxq
