// Factories of the CPU backends (the registry in src/select/registry.cc constructs them).
#pragma once

#include <memory>

#include "mxq/backend.h"

namespace mxq {

std::unique_ptr<Backend> make_cpu_reference_backend();
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace mxq
