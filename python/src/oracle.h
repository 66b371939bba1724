// mxq._core: the backend choice of a prepared layer (oracle.cc): the C++ oracle
// (select_backend) asked with the memory kind of the layer's arrays.
#pragma once

#include "core.h"

namespace mxq::py {

// The device kind of the arrays a backend takes (Backend::memory_kind).
DevKind backend_kind(const Backend* b);
MemoryKind memory_of(DevKind kind);
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
