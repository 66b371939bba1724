// Host out-of-memory at the CPU backends' entry points (issue 19): their buffers are std::vector
// (and the thread pool's rethrown task exceptions), so an allocation that fails throws
// std::bad_alloc somewhere inside prepare_* / run_*. The entry points catch it and return this
// resource-exhausted Status instead, naming the backend, the call and the problem. The size of
// the request that failed is not known to them: the bytes are the call's working set as
// estimated from the problem (weights for prepare, activation / output buffers for run), and the
// message says so. The output of a run that fails this way is untouched: the backends allocate
// every buffer before they write the first byte of y.
#pragma once

#include <algorithm>
#include <cstdint>
#include <new>
#include <string>
#include <string_view>

#include "mxq/formats.h"
#include "mxq/problem.h"
#include "mxq/status.h"

namespace mxq::cpu {

// Estimated host bytes of one call (`prepare` or not) for `p`.
inline uint64_t estimated_host_bytes(const Problem& p, bool prepare) {
  const auto u = [](int64_t v) { return uint64_t(std::max<int64_t>(v, 0)); };
  const auto kq = [](int64_t k) { return (k + 31) / 32 * 32; };
  const auto weight = [&](int64_t rows, int64_t k) {
    return u(rows) * (u(packed_bytes(p.weight, kq(k))) + u(kq(k) / 32));
  };
  if (p.op == Op::kLinear)
    return prepare ? weight(p.n, p.k) : u(p.m) * (u(kq(p.k)) + u(p.n)) * 4;
  const int64_t e = p.moe.experts, h = p.n, i = p.k;  // MoE: n = hidden, k = intermediate
  if (prepare) return weight(e * 2 * i, h) + weight(e * h, i);
  return u(p.m) * u(p.moe.topk) * (u(kq(h)) + 3 * u(kq(i)) + u(h)) * 4;
}

// Called in the catch handler: when even the message cannot be allocated (the host is still out
// of memory), the Status says only "out of memory" (short enough to need no allocation), so the
// entry point still returns instead of throwing from its handler.
inline Status host_out_of_memory(std::string_view backend, const char* call,
                                 const Problem& p) noexcept {
  try {
    return resource_exhausted("host", "the buffers of " + std::string(backend) + " " + call +
                                          " for " + p.to_string() + " (the call's working set, " +
                                          "estimated)",
                              size_t(estimated_host_bytes(p, call[0] == 'p')), "std::bad_alloc");
  } catch (...) {
    return Status(StatusCode::kResourceExhausted, "out of memory");
  }
}

}  // namespace mxq::cpu
