// CUDA runtime errors as mxq Status values (host code only): every CUDA call in the backends
// goes through MXQ_CUDA_TRY so a failure names the call and the runtime's reason.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "mxq/status.h"

namespace mxq::cuda {

// Out-of-memory errors are resource exhausted (the caller can free memory and retry); every
// other runtime error is internal.
inline Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  const StatusCode code = e == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted
                                                         : StatusCode::kInternal;
  return Status(code, std::string(what) + ": " + cudaGetErrorName(e) + " (" +
                          cudaGetErrorString(e) + ")");
}

// The error of the kernel launch just made, naming the kernel and the problem. Allocations
// clear their own errors (DeviceBuffer::allocate), so cudaGetLastError() here is this launch's.
inline Status launch_status(const char* kernel, const std::string& problem) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::Ok();
  return cuda_status(e, (std::string("launch of ") + kernel + " for " + problem).c_str());
}

}  // namespace mxq::cuda

#define MXQ_CUDA_TRY(expr)                                                     \
  do {                                                                         \
    if (const ::mxq::Status s_ = ::mxq::cuda::cuda_status((expr), #expr); !s_.ok()) \
      return s_;                                                               \
  } while (0)
