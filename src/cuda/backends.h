// Factories of the CUDA backends (the registry in src/select/registry.cc constructs them when
// mxq is built with its CUDA part).
#pragma once

#include <memory>
#include <vector>

#include "mxq/backend.h"

namespace mxq {

std::vector<std::unique_ptr<Backend>> make_cuda_backends();
std::unique_ptr<Backend> make_cuda_mma_backend();
// sm_90a builds only (MXQ_WITH_HOPPER): hopper/hopper_backend.cc.
std::unique_ptr<Backend> make_cuda_hopper_backend();

}  // namespace mxq
