// Stream-ordered scratch memory for the backends' run paths (host code only): allocated with
// cudaMallocAsync on the run's stream and freed with cudaFreeAsync on scope exit, so a run
// neither synchronises nor calls cudaMalloc and stays graph-capturable.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cuda/common/cuda_check.h"
#include "cuda/common/device_memory.h"
#include "mxq/status.h"

namespace mxq::cuda {

// The default memory pool of the current device returns freed memory to the system at every
// synchronisation unless told to keep it (release threshold 0), which made each call map and
// unmap its workspace again (H100: ~80 us per eager MoE call at M = 16). Keep up to 1 GiB
// cached; set once per device, only when the threshold is still the default 0, so an engine's
// own setting wins.
inline Status keep_pool_memory() {
  static bool done[64] = {};
  int dev = 0;
  MXQ_CUDA_TRY(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64 || done[dev]) return Status::Ok();
  cudaMemPool_t pool;
  MXQ_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool, dev));
  uint64_t threshold = 0;
  MXQ_CUDA_TRY(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  if (threshold == 0) {
    threshold = uint64_t(1) << 30;
    MXQ_CUDA_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
  done[dev] = true;
  return Status::Ok();
}

// A workspace carved from one stream-ordered allocation, freed on the stream on scope exit.
class StreamWorkspace {
 public:
  explicit StreamWorkspace(cudaStream_t s) : stream_(s) {}
  StreamWorkspace(const StreamWorkspace&) = delete;
  StreamWorkspace& operator=(const StreamWorkspace&) = delete;
  ~StreamWorkspace() {
    if (base_ != nullptr) {
      cudaFreeAsync(base_, stream_);
      note_device_free(size_);
    }
  }
  // Reserves `bytes` (256-byte aligned) and returns its offset; call before allocate().
  size_t reserve(size_t bytes) {
    const size_t at = size_;
    size_ += (bytes + 255) / 256 * 256;
    return at;
  }
  // Out of memory is a resource-exhausted Status naming `what` and the bytes, its error
  // cleared (device_memory.h; the test hook fails it too).
  Status allocate(const char* what = "a run's stream-ordered workspace") {
    MXQ_RETURN_IF_ERROR(keep_pool_memory());
    const cudaError_t e = injected_device_allocation_failure()
                              ? cudaErrorMemoryAllocation
                              : cudaMallocAsync(&base_, std::max<size_t>(size_, 256), stream_);
    if (e != cudaSuccess) {
      base_ = nullptr;
      return device_allocation_status(e, "cudaMallocAsync", size_, what);
    }
    note_device_allocation(size_);
    return Status::Ok();
  }
  template <typename T>
  T* at(size_t offset) const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(base_) + offset);
  }
  cudaStream_t stream() const { return stream_; }

 private:
  cudaStream_t stream_;
  void* base_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mxq::cuda
