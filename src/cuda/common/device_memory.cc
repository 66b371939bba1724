#include "cuda/common/device_memory.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "cuda/common/cuda_check.h"
#include "mxq/numerics.h"

namespace mxq::cuda {

namespace {
std::atomic<int> g_fail_nth{0};
std::atomic<int64_t> g_live_count{0}, g_live_bytes{0};
}  // namespace

DeviceAllocations live_device_allocations() {
  return {g_live_count.load(std::memory_order_relaxed),
          g_live_bytes.load(std::memory_order_relaxed)};
}
void note_device_allocation(size_t bytes) {
  g_live_count.fetch_add(1, std::memory_order_relaxed);
  g_live_bytes.fetch_add(int64_t(bytes), std::memory_order_relaxed);
}
void note_device_free(size_t bytes) {
  g_live_count.fetch_sub(1, std::memory_order_relaxed);
  g_live_bytes.fetch_sub(int64_t(bytes), std::memory_order_relaxed);
}

int fail_nth_device_allocation_for_testing(int n) { return g_fail_nth.exchange(n); }

bool injected_device_allocation_failure() {
  return g_fail_nth.load(std::memory_order_relaxed) > 0 && g_fail_nth.fetch_sub(1) == 1;
}

Status device_allocation_status(cudaError_t e, const char* api, size_t bytes, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  // A failed allocation is also recorded as the thread's last error: clear it here, or the
  // next launch check (cudaGetLastError after a kernel) reports this allocation's failure.
  (void)cudaGetLastError();
  if (e == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    std::string detail = std::string(api) + ": cudaErrorMemoryAllocation";
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      detail += " (" + std::to_string(free_b) + " of " + std::to_string(total_b) + " bytes free)";
    } else {
      (void)cudaGetLastError();
    }
    return resource_exhausted("device", what, bytes, detail);
  }
  return cuda_status(e, api);
}

Status DeviceBuffer::allocate(size_t bytes, const char* what) {
  reset();
  // Injected (tests): nothing allocated, nothing to clear.
  const cudaError_t e = injected_device_allocation_failure()
                            ? cudaErrorMemoryAllocation
                            : cudaMalloc(&p_, std::max<size_t>(bytes, 1));
  if (e != cudaSuccess) {
    p_ = nullptr;
    return device_allocation_status(e, "cudaMalloc", bytes, what);
  }
  bytes_ = bytes;
  note_device_allocation(bytes);
  return Status::Ok();
}

void DeviceBuffer::reset() {
  if (p_ != nullptr) {
    cudaFree(p_);
    note_device_free(bytes_);
  }
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
  MXQ_RETURN_IF_ERROR(tmp.allocate(bytes, "a device copy of a host argument"));
  MXQ_CUDA_TRY(cudaMemcpy(tmp.get(), p, bytes, cudaMemcpyHostToDevice));
  *out = tmp.get();
  return Status::Ok();
}

Status upload_as_f32(const void* src, DType dtype, int64_t count, DeviceBuffer& out,
                     const char* what) {
  std::vector<uint8_t> host;
  if (is_device_pointer(src)) {
    host.resize(size_t(count) * size_t(dtype_bytes(dtype)));
    MXQ_CUDA_TRY(cudaMemcpy(host.data(), src, host.size(), cudaMemcpyDeviceToHost));
    src = host.data();
  }
  std::vector<float> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[size_t(i)] = float(num::load_dense(src, dtype, i));
  MXQ_RETURN_IF_ERROR(out.allocate(v.size() * sizeof(float), what));
  MXQ_CUDA_TRY(cudaMemcpy(out.get(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
  return Status::Ok();
}

}  // namespace mxq::cuda
