// Minimal fork-join over an index range for the CPU tensor paths.
//
// Work is split into `threads` contiguous chunks (contiguous so each thread streams its own
// part of memory); tiny ranges run inline because spawning costs more than the work.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

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
  std::vector<std::thread> pool;
  pool.reserve(size_t(t - 1));
  const int64_t chunk = (n + t - 1) / t;
  for (int i = 1; i < t; ++i) {
    const int64_t b = i * chunk, e = std::min(n, b + chunk);
    if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  fn(int64_t{0}, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

}  // namespace mxq::detail
