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
  // The memory the call's arrays live in. Not kAny: only backends taking that memory are
  // candidates; an environment override naming a backend of the other memory does not apply to
  // this call, an explicit override naming one is an error.
  MemoryKind memory = MemoryKind::kAny;
  // How an explicit override is named in Selection::how and in errors ("" -> "API override");
  // the Python package says "override (backend=)".
  std::string override_source;
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
  // every backend taking SelectOptions::memory (all for kAny), in rank order, with its verdict
  std::vector<Candidate> candidates;
};

// Chooses the backend for `p` on `d`. An override that cannot run is an error naming the
// reason; automatic selection takes the highest-priority eligible backend. Errors: unknown
// override or one taking other memory (kInvalidArgument); an override that cannot run, no
// backend taking o.memory in this build ("this build has no CUDA backend for ..."), none
// eligible, a fallback in strict mode (kUnimplemented).
StatusOr<Selection> select_backend(const Problem& p, const Device& d, const SelectOptions& o = {});

// Human-readable table: the problem, the device, every backend with ok / its reason, the choice.
std::string explain(const Problem& p, const Device& d, const SelectOptions& o = {});

}  // namespace mxq
