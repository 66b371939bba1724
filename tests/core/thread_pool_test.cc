// run_team and parallel_for (src/core): every index is visited exactly once whatever the
// number of helpers, the pool serves one caller at a time and every other caller (another user
// thread, a task that calls parallel_for itself) still gets its work done.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
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

}  // namespace
}  // namespace mxq::detail
