// run_team and parallel_for (src/core): every index is visited exactly once whatever the
// number of helpers, the pool serves one caller at a time and every other caller (another user
// thread, a task that calls parallel_for itself) still gets its work done.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <vector>

#include "core/parallel.h"
#include "core/thread_pool.h"

namespace mxq::detail {
namespace {

// parallel_for over n indices with `threads`; checks each index is visited once and returns
// how many distinct threads ran chunks.
size_t visit_all(int64_t n, int threads) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
  std::mutex mu;
  std::set<std::thread::id> ids;
  parallel_for(n, threads, 1, [&](int64_t b, int64_t e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    for (int64_t i = b; i < e; ++i) seen[size_t(i)].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[size_t(i)].load(), 1) << "index " << i;
  return ids.size();
}

// Whether a parallel_for with `threads` runs on more than one thread. Timing-proof: every chunk
// waits (up to 20 s) until a second thread has taken a chunk, so a caller on a loaded 2-core
// machine cannot finish the whole range before its helpers are scheduled; only a pool that
// never lets a helper in returns false.
bool runs_on_several_threads(int threads) {
  std::mutex mu;
  std::set<std::thread::id> ids;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  parallel_for(64, threads, 1, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (ids.size() >= 2) return;
      }
      if (std::chrono::steady_clock::now() > until) return;
      std::this_thread::yield();
    }
  });
  return ids.size() >= 2;
}

TEST(ThreadPool, EveryIndexOnceForAnyThreadCount) {
  for (int threads : {1, 2, 3, 8, 100}) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, n = " + std::to_string(n));
      const size_t used = visit_all(n, threads);
      EXPECT_GE(used, 1u);
      EXPECT_LE(used, size_t(threads));
    }
  }
}

TEST(ThreadPool, RunTeamCallsAtMostHelpersPlusOne) {
  for (int helpers : {0, 1, 5}) {
    std::atomic<int> calls{0}, inside{0}, most{0};
    auto task = [&] {
      calls.fetch_add(1);
      const int now = inside.fetch_add(1) + 1;
      for (int m = most.load(); now > m && !most.compare_exchange_weak(m, now);) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      inside.fetch_sub(1);
    };
    run_team(helpers, TaskRef(task));
    EXPECT_GE(calls.load(), 1);
    EXPECT_LE(calls.load(), helpers + 1);
    EXPECT_LE(most.load(), helpers + 1);
    EXPECT_EQ(inside.load(), 0);  // every call returned before run_team did
  }
}

// Several user threads at once, each also calling parallel_for from inside its chunks: the
// pool is busy for all but one caller at a time, the others start threads of their own.
TEST(ThreadPool, ConcurrentAndNestedCallersAllFinish) {
  constexpr int kCallers = 4, kCalls = 50;
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&] {
      for (int i = 0; i < kCalls; ++i) {
        parallel_for(8, 3, 1, [&](int64_t b, int64_t e) {
          for (int64_t j = b; j < e; ++j)
            parallel_for(10, 2, 1, [&](int64_t b2, int64_t e2) { total.fetch_add(e2 - b2); });
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), int64_t{kCallers} * kCalls * 8 * 10);
}

// Thread start failures (issue 19): fresh threads (a nested call: the pool is busy with the
// outer one) and pool workers (a helper count above any used before in this process) that
// cannot start leave the work to the threads there are; every index is still visited once and
// nothing throws.
TEST(ThreadPool, ThreadStartFailuresRunWithTheThreadsThereAre) {
  for (int n = 1; n <= 6; ++n) {
    SCOPED_TRACE("failing thread start " + std::to_string(n));
    std::atomic<int> inner_calls{0};
    fail_nth_thread_start_for_testing(n);
    parallel_for(2, 2, 1, [&](int64_t, int64_t) {
      EXPECT_NO_THROW(visit_all(200, 4));
      inner_calls.fetch_add(1);
    });
    EXPECT_EQ(fail_nth_thread_start_for_testing(0), 0) << "the injected failure was not reached";
    EXPECT_EQ(inner_calls.load(), 2);
  }
  // The pool grows to more workers than any earlier call asked for: its first start fails.
  fail_nth_thread_start_for_testing(1);
  EXPECT_NO_THROW(visit_all(5000, 70));
  fail_nth_thread_start_for_testing(0);
  visit_all(5000, 70);
  EXPECT_TRUE(runs_on_several_threads(70)) << "the next call runs on several threads again";
}

// A task that throws (a buffer's bad_alloc) on any thread: run_team rethrows on the caller
// after every call has returned, and the pool and the fresh-thread path work afterwards.
TEST(ThreadPool, TaskExceptionsReachTheCallerAndThePoolStaysUsable) {
  for (int64_t bad : {int64_t{0}, int64_t{999}, int64_t{-1}}) {  // first chunk, last, every
    SCOPED_TRACE("throwing at " + std::to_string(bad));
    std::atomic<int64_t> done{0};
    EXPECT_THROW(parallel_for(1000, 4, 1,
                              [&](int64_t b, int64_t e) {
                                if (bad < 0 || (b <= bad && bad < e)) throw std::bad_alloc();
                                done.fetch_add(e - b);
                              }),
                 std::bad_alloc);
    EXPECT_LT(done.load(), 1000);
    EXPECT_GT(visit_all(1000, 4), size_t(0));
    // The same from a nested call (fresh threads).
    parallel_for(2, 2, 1, [&](int64_t, int64_t) {
      EXPECT_THROW(parallel_for(100, 3, 1, [&](int64_t, int64_t) { throw std::bad_alloc(); }),
                   std::bad_alloc);
    });
  }
  EXPECT_TRUE(runs_on_several_threads(4)) << "the pool runs on several threads afterwards";
}

}  // namespace
}  // namespace mxq::detail
