// Minimal fork-join over an index range for the CPU tensor paths.
//
// Work is split into `threads` contiguous chunks (contiguous so each thread streams its own
// part of memory), run by the calling thread and pool workers (core/thread_pool.h); tiny
// ranges run inline because waking threads costs more than the work.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>

#include "thread_pool.h"

namespace mxq::detail {

inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : int(hw);
}

// Calls fn(begin, end) over disjoint chunks covering [0, n). `min_per_thread` bounds how
// finely the range is split.
template <typename Fn>
void parallel_for(int64_t n, int threads, int64_t min_per_thread, Fn&& fn) {
  if (n <= 0) return;
  const int64_t max_useful = std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_thread));
  const int t = int(std::min<int64_t>(resolve_threads(threads), max_useful));
  if (t <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  // Chunk i is [i * chunk, (i + 1) * chunk); whichever thread takes it, fn sees the same range.
  const int64_t chunk = (n + t - 1) / t;
  const int64_t chunks = (n + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1))
      fn(c * chunk, std::min(n, (c + 1) * chunk));
  };
  run_team(int(chunks) - 1, TaskRef(work));
}

}  // namespace mxq::detail
