// Programmatic dependent launch (PDL, sm_90+) for the kernels of one call's launch chain:
// each kernel of a chain (a linear layer's activation quantize and GEMM; a MoE layer's route,
// dispatch, gather, two grouped GEMMs and combine) is launched with programmatic stream
// serialization, so it may start -- its CTAs resident, barriers initialised, weights
// prefetched into L2 -- while its predecessor still runs, and waits (`pdl::wait`) before it
// touches anything that predecessor writes or reads.
//
// The rules every kernel launched through `pdl::launch` keeps (and why):
//  - it calls `pdl::wait()` before its first global load of data another kernel produced and
//    before its first global store (the predecessor may still read the buffer: a WAR hazard);
//    only reads of data no kernel of the stream writes (weights) may come before it;
//  - at least one thread of the grid calls `pdl::wait()` unconditionally: wait returns only
//    when the predecessor has completed, so the grid cannot complete before it, and a
//    successor's wait on this grid then covers every grid before it too (the chain is
//    transitive only because of this);
//  - it calls `pdl::launch_dependents()` early (all kernels here: at their start), which lets
//    the successor's CTAs be scheduled once every CTA of this grid has issued it or exited; a
//    not-yet-resident CTA has issued nothing, so the successor cannot take the SMs a CTA of
//    this grid still needs.
// Kernels launched without the attribute (the plain `<<<>>>` ones) are fully serialised as
// usual, and both instructions are then immediate, so a chain may mix the two.
//
// MXQ_PDL=0 in the environment (read once) or `pdl::set_enabled(false)` launches everything
// without the attribute (A/B runs; the tests compare both bitwise). Devices below sm_90 never
// get it; the sm_80 images compile both instructions to nothing.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <utility>

namespace mxq::cuda::pdl {

#if defined(__CUDACC__)  // (the host side below is also for host C++: tests, backends)
__device__ __forceinline__ void wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
#endif

namespace detail {
// -1: not decided yet (MXQ_PDL read on first use), else 0 / 1.
inline std::atomic<int>& switch_state() {
  static std::atomic<int> s{-1};
  return s;
}
constexpr int kMaxDevices = 64;
// Per device: 0 unknown, 1 below sm_90, 2 sm_90 or newer.
inline std::atomic<int>* device_kind() {
  static std::atomic<int> k[kMaxDevices] = {};
  return k;
}
}  // namespace detail

// The process-wide switch (tests and A/B runs).
inline void set_enabled(bool on) { detail::switch_state().store(on ? 1 : 0); }
inline bool enabled() {
  int s = detail::switch_state().load(std::memory_order_relaxed);
  if (s < 0) {
    const char* v = std::getenv("MXQ_PDL");
    s = (v != nullptr && v[0] == '0') ? 0 : 1;
    int expected = -1;
    detail::switch_state().compare_exchange_strong(expected, s);
    s = detail::switch_state().load();
  }
  return s == 1;
}

// Whether launches on the current device get the attribute: the switch, and sm_90 or newer.
inline bool enabled_on_current_device() {
  if (!enabled()) return false;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= detail::kMaxDevices) return false;
  std::atomic<int>& kind = detail::device_kind()[dev];
  int k = kind.load(std::memory_order_relaxed);
  if (k == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
      return false;
    k = major >= 9 ? 2 : 1;
    kind.store(k, std::memory_order_relaxed);
  }
  return k == 2;
}

// Adds the programmatic-serialization attribute to `c` when the current device takes it.
// `attr` is the storage of c's attributes (c.attrs, if it has any) with room for one more.
inline void add_attribute(cudaLaunchConfig_t& c, cudaLaunchAttribute* attr) {
  if (!enabled_on_current_device()) return;
  c.attrs = attr;
  attr[c.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[c.numAttrs].val.programmaticStreamSerializationAllowed = 1;
  ++c.numAttrs;
}

// `kernel<<<grid, block, smem, stream>>>(args...)` with the attribute where it applies.
template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t c = {};
  c.gridDim = grid;
  c.blockDim = block;
  c.dynamicSmemBytes = smem;
  c.stream = stream;
  cudaLaunchAttribute attr[1];
  add_attribute(c, attr);
  return cudaLaunchKernelEx(&c, kernel, std::forward<Args>(args)...);
}

}  // namespace mxq::cuda::pdl
