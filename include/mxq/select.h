// The registry and the oracle: which backend runs a problem on this machine, and why.
#pragma once

#include <string>
#include <vector>

#include "mxq/backend.h"

namespace mxq {

// Every backend built into this library, in registration order (cpu-reference, cpu, and the
// CUDA backends when the CUDA part is built). Registration is explicit (src/select/builtin.cc):
// self-registering statics vanish from static libraries.
const std::vector<const Backend*>& backends();
const Backend* find_backend(std::string_view name);

struct SelectOptions {
  std::string override_backend;  // wins over everything; empty: env MXQ_LINEAR_BACKEND /
                                 // MXQ_MOE_BACKEND, then automatic
  bool use_env = true;
  bool strict = false;           // automatic fallback to a reference backend is an error
  bool warn = true;              // print the one-time fallback warning on stderr
};

struct Candidate {
  const Backend* backend = nullptr;
  bool eligible = false;
  std::string reason;  // why rejected ("" when eligible)
};

struct Selection {
  const Backend* backend = nullptr;
  std::string how;                   // "override (MXQ_LINEAR_BACKEND)", "automatic", ...
  bool fallback = false;             // automatic choice fell back to a reference backend
  std::vector<Candidate> candidates;  // every backend in rank order, with its verdict
};

// Chooses the backend for `p` on `d`. An override that cannot run is an error naming the
// reason; automatic selection takes the highest-priority eligible backend.
StatusOr<Selection> select_backend(const Problem& p, const Device& d, const SelectOptions& o = {});

// Human-readable table: the problem, the device, every backend with ok / its reason, the choice.
std::string explain(const Problem& p, const Device& d, const SelectOptions& o = {});

}  // namespace mxq
