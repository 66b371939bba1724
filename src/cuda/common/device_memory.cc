#include "cuda/common/device_memory.h"

#include <algorithm>

#include "cuda/common/cuda_check.h"

namespace mxq::cuda {

Status DeviceBuffer::allocate(size_t bytes) {
  reset();
  MXQ_CUDA_TRY(cudaMalloc(&p_, std::max<size_t>(bytes, 1)));
  bytes_ = bytes;
  return Status::Ok();
}

void DeviceBuffer::reset() {
  if (p_ != nullptr) cudaFree(p_);
  p_ = nullptr;
  bytes_ = 0;
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();  // clear the error of an unregistered host pointer
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

Status to_device(const void* p, size_t bytes, DeviceBuffer& tmp, const void** out) {
  if (is_device_pointer(p)) {
    *out = p;
    return Status::Ok();
  }
  MXQ_RETURN_IF_ERROR(tmp.allocate(bytes));
  MXQ_CUDA_TRY(cudaMemcpy(tmp.get(), p, bytes, cudaMemcpyHostToDevice));
  *out = tmp.get();
  return Status::Ok();
}

}  // namespace mxq::cuda
