// Device memory for the backends' host code: an owning buffer, and the staging of caller
// memory that may live on the host or the device (the backends accept both; host memory is a
// documented slow convenience for tests and the CLI).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::cuda {

// A device allocation freed on scope exit (and on every error path).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  ~DeviceBuffer() { reset(); }
  // Frees what it held first. A failed cudaMalloc is a resource-exhausted Status naming `what`
  // and the bytes; its error is cleared at once so no later cudaGetLastError() (a launch check
  // of another layer) picks it up.
  Status allocate(size_t bytes, const char* what = "a device buffer");
  void reset();
  template <typename T = uint8_t>
  T* get() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Every device allocation's outcome in one place (DeviceBuffer, the stream-ordered buffers):
// a failed allocation's error is cleared at once; out of memory is a resource-exhausted
// Status naming `what` and the bytes (with the device's free / total), anything else the
// CUDA error of `api`.
Status device_allocation_status(cudaError_t e, const char* api, size_t bytes, const char* what);
// The test hook of fail_nth_device_allocation_for_testing: true for the allocation it fails.
bool injected_device_allocation_failure();

// Whether `p` is device (or managed) memory of the CUDA runtime; host pointers answer false.
bool is_device_pointer(const void* p);

// `bytes` at `p` (host or device) as a device pointer: `p` itself, or a synchronous copy in
// `tmp`.
Status to_device(const void* p, size_t bytes, DeviceBuffer& tmp, const void** out);

// `count` values of dtype `dtype` at `src` (host or device) converted exactly to FP32 into a
// new device buffer `out` (the backends' bias vectors). Synchronous.
Status upload_as_f32(const void* src, DType dtype, int64_t count, DeviceBuffer& out,
                     const char* what);

// Test-only fault injection: the n-th device allocation from now (1 = the next) fails as
// cudaMalloc's out-of-memory would (0 disarms): DeviceBuffer::allocate, StreamBuffer::allocate
// and StreamWorkspace::allocate alike. Process-wide; for single-threaded tests. Returns the
// countdown it replaces: 0 once the armed failure happened (or when none was armed), else how
// many allocations were still to come before it (arm a large n and read it back: the count).
int fail_nth_device_allocation_for_testing(int n);

// The device allocations mxq holds now (DeviceBuffer, StreamBuffer, StreamWorkspace; all
// threads): how many and their requested bytes. The tests' leak check: back to the same counts
// after a failed call. A stream-ordered buffer counts from its cudaMallocAsync until its
// cudaFreeAsync is enqueued.
struct DeviceAllocations {
  int64_t count = 0;
  int64_t bytes = 0;
};
DeviceAllocations live_device_allocations();
// For the allocation classes: a successful allocation of `bytes`, and its release.
void note_device_allocation(size_t bytes);
void note_device_free(size_t bytes);

}  // namespace mxq::cuda
