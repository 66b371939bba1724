// MXQ_DEBUG_ASSERT(cond, what): a backend's own assumption about arguments that the public entry
// (Backend::prepare_* / run_*, src/contract/backend.cc) has already checked. Debug builds (no
// NDEBUG: the asan preset, Debug) abort with the condition, `what` and the place; release
// builds compile it away. Not for anything a caller can get wrong past the entry: those are
// Status errors at the entry (docs/architecture.md, "Where arguments are checked").
// C++17-clean (included by CUDA host code).
#pragma once

namespace mxq::contract {
[[noreturn]] void debug_assert_failed(const char* cond, const char* what, const char* file,
                                      int line);
}  // namespace mxq::contract

#ifdef NDEBUG
#define MXQ_DEBUG_ASSERT(cond, what) ((void)0)
#else
#define MXQ_DEBUG_ASSERT(cond, what) \
  ((cond) ? (void)0 : ::mxq::contract::debug_assert_failed(#cond, what, __FILE__, __LINE__))
#endif
