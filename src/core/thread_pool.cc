// The worker pool behind run_team (thread_pool.h).
//
// Protocol. The owner (the one caller that holds `busy_`) publishes a task: task_ and wanted_,
// then state_ = (generation << 32) with the closed bit and both counts clear, then gen_ =
// generation, and wakes parked workers. A worker that sees a new generation enters by a CAS on
// state_ that checks the generation, the closed bit and that fewer than wanted_ workers have
// entered, and counts itself as entered and inside; it runs the task and leaves by decrementing
// the inside count. The owner runs the task itself, then sets the closed bit (no one enters
// after that) and waits until nobody is inside. A worker that wakes for an old generation fails
// the CAS (the generation in state_ moved on) and goes back to waiting.
#include "thread_pool.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace mxq::detail {

namespace {

// More helpers than this in one call use this many (the task takes its work from shared
// state, so fewer threads only take longer).
constexpr int kMaxWorkers = 64;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

using Clock = std::chrono::steady_clock;

std::atomic<int> g_fail_thread_start{0};  // fail_nth_thread_start_for_testing

// Every thread run_team starts: the test hook, then std::thread (which throws system_error or
// bad_alloc when it cannot).
template <typename F>
std::thread start_thread(F&& f) {
  if (g_fail_thread_start.load(std::memory_order_relaxed) > 0 &&
      g_fail_thread_start.fetch_sub(1, std::memory_order_relaxed) == 1)
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                            "injected thread start failure");
  return std::thread(std::forward<F>(f));
}

class Pool {
 public:
  // Runs the call on the pool; false when it cannot (busy, or a forked child).
  bool try_run(int helpers, TaskRef task) {
    if (getpid() != pid_) return false;  // the workers live in the parent only
    if (busy_.exchange(true, std::memory_order_acquire)) return false;
    helpers = std::min(helpers, kMaxWorkers);
    try {
      while (int(workers_.size()) < helpers) {
        const uint32_t seen = gen_.load(std::memory_order_relaxed);
        workers_.reserve(workers_.size() + 1);  // a bad_alloc here leaves no thread unowned
        workers_.push_back(start_thread([this, seen] { worker_main(seen); }));
      }
    } catch (const std::system_error&) {  // no more threads: run with the workers there are
      helpers = int(workers_.size());
    } catch (const std::bad_alloc&) {     // no memory for one more: likewise
      helpers = int(workers_.size());
    }
    const uint32_t g = gen_.load(std::memory_order_relaxed) + 1;
    task_.store(&task, std::memory_order_relaxed);
    wanted_.store(helpers, std::memory_order_relaxed);
    state_.store(uint64_t(g) << 32, std::memory_order_release);
    gen_.store(g, std::memory_order_release);
    gen_.notify_all();

    task();

    uint64_t s = state_.fetch_or(kClosed, std::memory_order_acq_rel) | kClosed;
    // Workers inside are finishing their last chunk (tens of microseconds at most, unless
    // the VM took their core away): spin, then block.
    const Clock::time_point until = Clock::now() + std::chrono::microseconds(kSpinMicros);
    for (int i = 1; (s & kInsideMask) != 0; ++i) {
      if (i % 64 == 0 && Clock::now() > until) {
        state_.wait(s, std::memory_order_acquire);
      } else {
        cpu_relax();
      }
      s = state_.load(std::memory_order_acquire);
    }
    busy_.store(false, std::memory_order_release);
    return true;
  }

 private:
  // state_: generation (bits 32..63) | closed: no more workers enter (bit 31) | workers that
  // entered this generation (bits 16..30) | workers inside the task now (bits 0..15).
  static constexpr uint64_t kClosed = uint64_t(1) << 31;
  static constexpr uint64_t kEntered = uint64_t(1) << 16;
  static constexpr uint64_t kInsideMask = kEntered - 1;

  void worker_main(uint32_t seen) {
    for (;;) {
      uint32_t g = gen_.load(std::memory_order_acquire);
      if (g == seen) {
        const Clock::time_point until = Clock::now() + std::chrono::microseconds(kSpinMicros);
        for (int i = 1; (g = gen_.load(std::memory_order_acquire)) == seen; ++i) {
          cpu_relax();
          if (i % 64 == 0 && Clock::now() > until) {
            gen_.wait(seen, std::memory_order_acquire);  // park until the next task
            i = 0;
          }
        }
      }
      seen = g;
      uint64_t s = state_.load(std::memory_order_acquire);
      while (uint32_t(s >> 32) == g && (s & kClosed) == 0 &&
             int64_t((s & (kClosed - 1)) / kEntered) < wanted_.load(std::memory_order_relaxed)) {
        if (state_.compare_exchange_weak(s, s + kEntered + 1, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
          (*task_.load(std::memory_order_relaxed))();
          const uint64_t after = state_.fetch_sub(1, std::memory_order_acq_rel) - 1;
          if ((after & kClosed) != 0 && (after & kInsideMask) == 0) state_.notify_all();
          break;
        }
      }
    }
  }

  const pid_t pid_ = getpid();
  std::atomic<bool> busy_{false};
  std::atomic<uint32_t> gen_{0};
  std::atomic<uint64_t> state_{kClosed};
  std::atomic<const TaskRef*> task_{nullptr};
  std::atomic<int> wanted_{0};
  std::vector<std::thread> workers_;  // grown by the owner only
};

// Never destroyed: the workers park for the life of the process (and exit with it), so no
// thread is ever joined during static destruction.
Pool& pool() {
  static Pool* const p = new Pool;
  return *p;
}

}  // namespace

int fail_nth_thread_start_for_testing(int n) {
  return std::max(0, g_fail_thread_start.exchange(n, std::memory_order_relaxed));
}

void run_team(int helpers, TaskRef task) {
  if (helpers <= 0) return task();
  // Every call of the task catches what it throws; the first exception is kept and rethrown
  // here once every call has returned (the pool's closing handshake / join orders the store
  // before the load).
  std::atomic<bool> failed{false};
  std::exception_ptr first;
  auto guarded = [&] {
    try {
      task();
    } catch (...) {
      if (!failed.exchange(true, std::memory_order_acq_rel)) first = std::current_exception();
    }
  };
  const TaskRef g(guarded);
  if (!pool().try_run(helpers, g)) {
    std::vector<std::thread> threads;
    try {
      threads.reserve(size_t(helpers));
      for (int i = 0; i < helpers; ++i) threads.push_back(start_thread([g] { g(); }));
    } catch (const std::system_error&) {  // fewer threads: the task shares out the work
    } catch (const std::bad_alloc&) {
    }
    g();
    for (auto& t : threads) t.join();
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace mxq::detail
