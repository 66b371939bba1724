// Runs one task on several threads at once, for the fork-join loops of the CPU paths
// (core/parallel.h, cpu/fast/cpu_backend_internal.h).
//
// Threads come from a process-wide pool of persistent workers: starting a thread costs ~20 us
// on the 2-vCPU CI VM, 2-3% of a 4096 x 4096 MXFP4 GEMV. A worker that finishes spins for
// kSpinMicros waiting for the next task (back-to-back layer calls find it awake), then parks
// on a futex (std::atomic::wait) and costs nothing.
//
// The pool serves one caller at a time. When it is busy (another user thread is running a
// task on it, or the task itself calls run_team), or in a child process after fork(), run_team
// starts fresh threads for that call instead, as it did before the pool: always correct,
// only slower.
#pragma once

#include <concepts>
#include <type_traits>

namespace mxq::detail {

// A non-owning reference to a callable void() (the callable must outlive the call).
class TaskRef {
 public:
  template <typename F>
    requires(!std::same_as<std::remove_cv_t<F>, TaskRef>)
  explicit TaskRef(F& f)
      : obj_(&f), call_([](const void* o) { (*static_cast<F*>(const_cast<void*>(o)))(); }) {}
  void operator()() const { call_(obj_); }

 private:
  const void* obj_;  // an F (possibly const), cast back to F* by call_
  void (*call_)(const void*);
};

// Calls task() on the calling thread and concurrently on up to `helpers` other threads, and
// returns once every call has returned. Pool workers that are late (still waking up when the
// calling thread's own call has returned) are not let in, so the task must take its work from
// shared state (an atomic counter of chunks) and not assume a number of concurrent calls:
// between 1 and helpers + 1 calls run. A thread that cannot be started (std::thread's
// system_error, or bad_alloc) is not an error: the call runs with the threads there are, at
// worst on the calling thread alone. An exception thrown by a call of the task (std::bad_alloc
// of a buffer it allocates) is caught on whichever thread it happens; run_team waits for the
// other calls, then rethrows the first one on the calling thread (the pool stays usable).
void run_team(int helpers, TaskRef task);

// Test-only fault injection: the n-th thread start of run_team from now (1 = the next; a pool
// worker or a fresh thread) fails as std::thread's constructor does when the system has no more
// threads (0 disarms). Process-wide. Returns how many starts the previous arming still had to
// wait for (0: it fired, or nothing was armed).
int fail_nth_thread_start_for_testing(int n);

// How long an idle pool worker spins before it parks.
inline constexpr int kSpinMicros = 100;

}  // namespace mxq::detail
