// Host allocation faults over the CPU backends (issue 19): a test-only replacement of the global
// operator new fails the n-th allocation made on the test's thread, for every n that prepare +
// run of a layer makes. Every injected failure must surface as std::bad_alloc (what the front
// ends classify as out of memory: CLI exit code 3, Python MemoryError) or a resource-exhausted
// Status, never another error or a crash; it must leak nothing (live allocation count back to
// where it was); and the following, unfaulted call must give the same bits as before.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "cpu/backends.h"
#include "cpu_test_util.h"

namespace {
thread_local long t_countdown = 0;  // > 0: the t_countdown-th allocation from now fails
thread_local long t_allocs = 0;     // allocations made on this thread
std::atomic<long> g_live{0};        // allocations not yet freed, all threads

void* counted_alloc(std::size_t n, std::size_t align, bool nothrow) {
  if (t_countdown > 0 && --t_countdown == 0) {
    if (nothrow) return nullptr;
    throw std::bad_alloc();
  }
  ++t_allocs;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n ? n : 1);
  } else if (posix_memalign(&p, align, n ? n : 1) != 0) {
    p = nullptr;
  }
  if (p == nullptr) {
    if (nothrow) return nullptr;
    throw std::bad_alloc();
  }
  g_live.fetch_add(1, std::memory_order_relaxed);
  return p;
}
void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  g_live.fetch_sub(1, std::memory_order_relaxed);
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 0, false); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0, false); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, 0, true); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, 0, true); } catch (...) { return nullptr; }
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a), false);
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a), false);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, static_cast<std::size_t>(a), true); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n, static_cast<std::size_t>(a), true); } catch (...) { return nullptr; }
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }

namespace mxq {
namespace {

using namespace cputest;

struct Outcome {
  bool ok = false;
  bool bad_alloc = false;
  bool fired = false;          // the injected failure was reached
  long allocs = 0;             // allocations prepare + run made on this thread
  Status status;               // the failed Status, when one came back
  std::vector<uint8_t> y;      // the output bytes when ok
};

// prepare + run of one linear layer with the `fail_at`-th allocation failing (0: none). Only
// the backend's calls are inside the armed window; every exception but std::bad_alloc escapes
// and fails the test.
Outcome prepare_and_run(const Backend& b, const Problem& p, const LinearWeights& w,
                        const Dense& x, Dense& y, long fail_at) {
  Outcome o;
  std::fill(y.bytes.begin(), y.bytes.end(), uint8_t(0xAB));
  const long before = t_allocs;
  t_countdown = fail_at;
  try {
    auto prepared = b.prepare_linear(p, w);
    if (!prepared.ok()) {
      o.status = prepared.status();
    } else {
      o.status = b.run_linear(p, *prepared.value(), x.view(), y.mut());
      o.ok = o.status.ok();
    }
  } catch (const std::bad_alloc&) {
    o.bad_alloc = true;
  }
  o.fired = fail_at > 0 && t_countdown == 0;
  t_countdown = 0;
  o.allocs = t_allocs - before;
  if (o.ok) o.y = y.bytes;
  return o;
}

void fault_every_allocation(const Backend& b, ActKey act) {
  SCOPED_TRACE(std::string(b.name()) + " " + std::to_string(int(act)));
  const int64_t m = 3, n = 40, k = 96;
  Problem p = Problem::linear(ElemType::kE2M1, act, m, n, k, /*bias=*/true);
  p.out = DType::kBF16;
  const Weight wt = make_weight(ElemType::kE2M1, 1, n, k, 7, 0.1f);
  const Dense x(act_input_dtype(act), m, k, randn(size_t(m * k), 8));
  const Dense bias(DType::kF32, 1, n, randn(size_t(n), 9, 0.5f));
  const LinearWeights w{wt.view(), bias.view(), 0.05f};
  Dense y(p.out, m, n);
  // Warm-up (thread pools, lazily built tables), then the baseline and its allocation count.
  ASSERT_TRUE(prepare_and_run(b, p, w, x, y, 0).ok);
  const Outcome base = prepare_and_run(b, p, w, x, y, 0);
  ASSERT_TRUE(base.ok) << base.status.to_string();
  ASSERT_GT(base.allocs, 0) << "prepare + run made no allocation on this thread: nothing to inject";
  {
    const long live0 = g_live.load();
    { const Outcome clean = prepare_and_run(b, p, w, x, y, 0); EXPECT_TRUE(clean.ok); }
    EXPECT_EQ(g_live.load(), live0) << "a clean prepare + run leaked";
  }
  for (long i = 1; i <= base.allocs; ++i) {
    SCOPED_TRACE("failing allocation " + std::to_string(i) + " of " + std::to_string(base.allocs));
    const long live0 = g_live.load();
    {
      const Outcome f = prepare_and_run(b, p, w, x, y, i);
      EXPECT_TRUE(f.fired) << "the injected failure was never reached";
      if (f.ok) {
        // A backend may absorb a failed allocation (a nothrow path with a fallback): then the
        // result must still be right.
        EXPECT_EQ(f.y, base.y) << "an allocation failed and the result is wrong";
      } else if (!f.bad_alloc) {
        EXPECT_EQ(f.status.code(), StatusCode::kResourceExhausted) << f.status.to_string();
      }
    }
    EXPECT_EQ(g_live.load(), live0) << "leaked after the injected failure";
    const Outcome again = prepare_and_run(b, p, w, x, y, 0);
    ASSERT_TRUE(again.ok) << "the call after the failure: " << again.status.to_string();
    EXPECT_EQ(again.y, base.y) << "the call after the failure differs from the baseline";
  }
}

TEST(HostAllocationFaults, CpuReferenceLinear) {
  const auto b = make_cpu_reference_backend();
  for (ActKey a : {ActKey::kBF16, ActKey::kMXFP8Dynamic}) fault_every_allocation(*b, a);
}

TEST(HostAllocationFaults, CpuLinear) {
  const auto b = make_cpu_backend();
  for (ActKey a : {ActKey::kBF16, ActKey::kMXFP8Dynamic}) fault_every_allocation(*b, a);
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
