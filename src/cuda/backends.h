// Factories of the CUDA backends (the registry in src/select/registry.cc constructs them when
// mxq is built with its CUDA part).
#pragma once

#include <memory>
#include <vector>

#include "mxq/backend.h"

namespace mxq {

std::vector<std::unique_ptr<Backend>> make_cuda_backends();

}  // namespace mxq
