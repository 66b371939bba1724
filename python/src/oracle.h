// mxq._core: the backend choice of a prepared layer (oracle.cc), by the device kind of its
// arrays, with overrides and the reference-fallback warning.
#pragma once

#include "core.h"

namespace mxq::py {

// Backends whose names start with "cuda" take device pointers; all others host pointers.
DevKind backend_kind(const Backend* b);
std::vector<std::string> backend_names();
// 'cpu', 'cuda' or 'cuda:N' -> the device kind; anything else is an error naming it.
DevKind parse_device(const std::string& d);

struct Choice {
  const Backend* backend = nullptr;
  std::string how;
};

Choice choose(const Problem& p, DevKind kind, const std::string& override_backend, bool strict,
              bool use_env);

}  // namespace mxq::py
