// Internal to src/cpu/fast: pieces shared by the linear (cpu_backend.cc) and MoE (cpu_moe.cc)
// halves of the cpu backend.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "core/parallel.h"
#include "core/thread_pool.h"

#include "cpu/fast/cpu_backend.h"
#include "cpu/fast/mx_gemv.h"

namespace mxq::cpu::fast::internal {

inline int64_t round_up_32(int64_t k) { return (k + kBlockSize - 1) / kBlockSize * kBlockSize; }

// Matrix b of a batched canonical weight view.
inline MXMatrixRef matrix(const MXWeightView& w, int64_t b) {
  const int64_t kb = w.k / kBlockSize;
  return {w.elem, w.n, w.k, w.packed + b * w.n * packed_bytes(w.elem, w.k),
          w.scales + b * w.n * kb};
}

// A weight view plus, when its K padding held Inf/NaN codes, the sanitized copy it points to.
struct OwnedWeight {
  MXWeightView view;
  std::vector<uint8_t> copy;  // empty: `view` is the caller's memory
};
// K = the problem's dimension, w.k = K rounded up to 32 (checked before).
OwnedWeight sanitize_padding(const MXWeightView& w, int64_t k_valid);

// x [rows, k] under p.act (MX keys: with p.act_rule) -> FP32 [rows, kq] (columns k..kq zero).
Status quantize_activations(ActKey key, const DenseView& x, float input_scale, int64_t kq,
                            std::vector<float>& out, ScaleRule rule = ScaleRule::kFloor);

// Rows per work chunk of the weight-streaming loops: `min_rows_per_thread` when set, else
// enough rows for CpuBackendOptions::kMinBytesPerThread of weights.
int64_t min_rows_per_thread(const CpuBackendOptions& o, int64_t row_bytes);

// Calls fn(begin, end) over chunks of `chunk` rows covering [0, n), handed out dynamically to
// min(threads, chunks) threads (the caller is one of them; the others come from the worker
// pool of core/thread_pool.h, or are started for the call when the pool is busy). Dynamic
// rather than one contiguous part per thread: on a shared VM one core is often slowed for a
// while, and with fixed parts the call waits for it. Which thread runs a chunk never changes
// its results.
template <typename Fn>
void parallel_chunks(int64_t n, int threads, int64_t chunk, Fn&& fn) {
  if (n <= 0) return;
  const int64_t chunks = (n + chunk - 1) / chunk;
  const int t = int(std::min<int64_t>(mxq::detail::resolve_threads(threads), chunks));
  std::atomic<int64_t> next{0};
  const auto work = [&] {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1))
      fn(c * chunk, std::min(n, (c + 1) * chunk));
  };
  if (t <= 1) return work();
  mxq::detail::run_team(t - 1, mxq::detail::TaskRef(work));
}

// The MoE layer on arguments the entry checked (Backend::run_moe).
Status run_moe_impl(const CpuBackendOptions& o, const Problem& p, const MoEWeights& w,
                    const DenseView& x, const MoERouting& r, const DenseMutView& y);

}  // namespace mxq::cpu::fast::internal
