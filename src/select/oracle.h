// The oracle over an explicit backend list (select.h applies it to the built-in registry);
// separate so tests can drive it with fake backends.
#pragma once

#include <vector>

#include "mxq/select.h"

namespace mxq::detail {

StatusOr<Selection> select_from(const std::vector<const Backend*>& all, const Problem& p,
                                const Device& d, const SelectOptions& o);
std::string explain_from(const std::vector<const Backend*>& all, const Problem& p,
                         const Device& d, const SelectOptions& o);

// Name of the environment variable that overrides the backend for p's op.
const char* override_env(const Problem& p);

}  // namespace mxq::detail
