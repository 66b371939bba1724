// CUDA runtime errors as mxq Status values (host code only): every CUDA call in the backends
// goes through MXQ_CUDA_TRY so a failure names the call and the runtime's reason.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "mxq/status.h"

namespace mxq::cuda {

inline Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status(StatusCode::kInternal, std::string(what) + ": " + cudaGetErrorName(e) + " (" +
                                          cudaGetErrorString(e) + ")");
}

}  // namespace mxq::cuda

#define MXQ_CUDA_TRY(expr)                                                     \
  do {                                                                         \
    if (const ::mxq::Status s_ = ::mxq::cuda::cuda_status((expr), #expr); !s_.ok()) \
      return s_;                                                               \
  } while (0)
