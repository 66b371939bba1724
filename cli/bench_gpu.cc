// The CUDA runtime side of `mxq bench` (see bench_gpu.h). Built only with the CUDA part.
#include "bench_gpu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "mxq/status.h"

namespace mxq::cli::gpu {
namespace {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  const std::string msg = std::string(what) + ": " + cudaGetErrorString(e);
  (void)cudaGetLastError();  // clear it so that no later check reports it again
  if (e == cudaErrorMemoryAllocation)
    throw Error(Status(StatusCode::kResourceExhausted, "resource exhausted: " + msg));
  throw Error(Status(StatusCode::kInternal, msg));
}

}  // namespace

Buffer::Buffer(size_t bytes) : bytes_(bytes) {
  check(cudaMalloc(&p_, std::max<size_t>(bytes, 1)), "cudaMalloc (bench buffer)");
}

Buffer::Buffer(const void* host, size_t bytes) : Buffer(bytes) {
  if (bytes > 0) check(cudaMemcpy(p_, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (p_ != nullptr) cudaFree(p_);
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

Buffer::~Buffer() {
  if (p_ != nullptr) cudaFree(p_);
}

Timer::Timer() {
  cudaEvent_t a = nullptr, b = nullptr;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  start_ = a;
  stop_ = b;
}

Timer::~Timer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void Timer::start() { check(cudaEventRecord(static_cast<cudaEvent_t>(start_), nullptr), "cudaEventRecord"); }

double Timer::stop() {
  auto* b = static_cast<cudaEvent_t>(stop_);
  check(cudaEventRecord(b, nullptr), "cudaEventRecord");
  check(cudaEventSynchronize(b), "cudaEventSynchronize (a timed call failed)");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), b), "cudaEventElapsedTime");
  return double(ms) * 1e-3;
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

double copy_bandwidth(size_t bytes, int reps) {
  Buffer a(bytes), b(bytes);
  check(cudaMemset(a.get(), 1, bytes), "cudaMemset");
  Timer t;
  double best = 0;
  for (int i = 0; i < reps + 1; ++i) {  // the first copy is a warm-up
    t.start();
    check(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, nullptr), "cudaMemcpyAsync");
    const double s = t.stop();
    if (i > 0 && s > 0) best = std::max(best, 2.0 * double(bytes) / s);
  }
  return best;
}

const char* current_device_name() {
  static std::string name = [] {
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
    return "cuda:" + std::to_string(dev) + " " + prop.name;
  }();
  return name.c_str();
}

}  // namespace mxq::cli::gpu
