// What `mxq bench` needs of the CUDA runtime (cli/bench_gpu.cc, built only with the CUDA
// part): device buffers for a backend's per-call inputs and outputs (so the timed calls take the
// backends' asynchronous device path, not the staged host convenience path), event timing, and
// the device's measured copy bandwidth. Errors throw mxq::Error naming the CUDA error.
#pragma once

#include <cstddef>

namespace mxq::cli::gpu {

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes);                  // cudaMalloc (resource exhausted on failure)
  Buffer(const void* host, size_t bytes);         // cudaMalloc + copy from the host
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept;
  ~Buffer();
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Times work on the default stream with CUDA events.
class Timer {
 public:
  Timer();
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start();
  double stop();  // seconds since start(); synchronises on the stop event

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

void synchronize();  // the current device; a pending asynchronous error is thrown here
// Device-to-device cudaMemcpy of `bytes` (best of `reps`): bytes read + written per second.
double copy_bandwidth(size_t bytes, int reps);
// "cuda:0 NVIDIA H200": the device the backends run on.
const char* current_device_name();

}  // namespace mxq::cli::gpu
