// The host side both dense CUDA backends (cuda-mma, cuda-hopper) share around their GEMM
// launch in run_linear: the current device must be the one the weights were prepared on, and
// x / y are either device pointers (used as they are: asynchronous on the stream, no
// allocation, graph-capturable) or host pointers, staged through device buffers (synchronous;
// the tests' and the CLI's convenience path). Host code only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "cuda/common/cuda_check.h"
#include "cuda/common/device_memory.h"
#include "mxq/status.h"

namespace mxq::cuda {

// Invalid argument naming `backend` when the current device is not `prepared_device`.
inline Status check_prepared_device(std::string_view backend, int prepared_device) {
  int dev = 0;
  MXQ_CUDA_TRY(cudaGetDevice(&dev));
  if (dev != prepared_device)
    return invalid_argument(std::string(backend) + ": weights were prepared on GPU " +
                            std::to_string(prepared_device) + ", the current device is GPU " +
                            std::to_string(dev));
  return Status::Ok();
}

// Sets *gemm_x / *gemm_y (the GEMM arguments' x and y) to device memory holding x (x_bytes)
// and receiving y (y_bytes), then returns gemm(), which launches on `s` reading them.
// Both device pointers: they are used as they are and nothing is synchronised. Otherwise x is
// copied to a temporary device buffer when it is host memory, y gets a temporary device
// buffer when it is host memory and is copied back after the GEMM, and the stream is
// synchronised before the temporaries go.
template <class Gemm>
Status run_device_or_staged(const void* x, size_t x_bytes, void* y, size_t y_bytes,
                            const void** gemm_x, void** gemm_y, cudaStream_t s, Gemm&& gemm) {
  const bool x_dev = is_device_pointer(x), y_dev = is_device_pointer(y);
  if (x_dev && y_dev) {
    *gemm_x = x;
    *gemm_y = y;
    return std::forward<Gemm>(gemm)();
  }
  DeviceBuffer tx, ty;
  MXQ_RETURN_IF_ERROR(to_device(x, x_bytes, tx, gemm_x));
  if (y_dev) {
    *gemm_y = y;
  } else {
    MXQ_RETURN_IF_ERROR(ty.allocate(y_bytes, "the staged output"));
    *gemm_y = ty.get();
  }
  MXQ_RETURN_IF_ERROR(std::forward<Gemm>(gemm)());
  if (!y_dev) MXQ_CUDA_TRY(cudaMemcpyAsync(y, *gemm_y, y_bytes, cudaMemcpyDeviceToHost, s));
  MXQ_CUDA_TRY(cudaStreamSynchronize(s));
  return Status::Ok();
}

}  // namespace mxq::cuda
