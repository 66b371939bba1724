// Shared by the translation units of mxq._core (the nanobind binding of mxq's C++ API): the
// includes, error helpers, the current-device guard and the bind_* entry points that
// module.cc calls, one per concern:
//   numerics.cc     element-level codes (the decode / encode test interface)
//   tensors.cc      whole-tensor quantize / dequantize (CPU, or CUDA with the CUDA part)
//   oracle.cc       problems, backends, explain / select
//   layers.cc       prepared Linear / MoE layers (their state: layers.h)
//   checkpoints.cc  checkpoints, model layers and the pipelines
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "arrays.h"
#include "mxq/layers.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "mxq/pipeline.h"
#include "mxq/quantize.h"
#include "mxq/select.h"
#if defined(MXQ_PY_WITH_CUDA)
#include "cuda/quant/quantize.h"  // the library's GPU quantize / dequantize (mxq_cuda_quant)
#endif

namespace mxq::py {

namespace nb = nanobind;

template <typename T>
T get(StatusOr<T> v) {
  return std::move(v).value();  // throws mxq::Error, translated below
}

[[noreturn]] inline void fail(std::string msg) { throw Error(invalid_argument(std::move(msg))); }

inline void* stream_ptr(uintptr_t s) { return reinterpret_cast<void*>(s); }

// Makes a CUDA array's GPU the current device for the call (kernels and backends run on the
// current device), restoring the previous one after; a no-op for CPU arrays. cudaGetDevice /
// cudaSetDevice neither allocate nor synchronise, so this is safe inside graph capture.
class DeviceGuard {
 public:
#if defined(MXQ_PY_WITH_CUDA)
  DeviceGuard(DevKind kind, int device) {
    if (kind == DevKind::kCUDA && cudaGetDevice(&prev_) == cudaSuccess && prev_ != device)
      set_ = cudaSetDevice(device) == cudaSuccess;
  }
  ~DeviceGuard() {
    if (set_) cudaSetDevice(prev_);
  }
#else
  DeviceGuard(DevKind, int) {}
#endif
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
#if defined(MXQ_PY_WITH_CUDA)
  int prev_ = 0;
  bool set_ = false;
#endif
};

#if !defined(MXQ_PY_WITH_CUDA)
[[noreturn]] inline void no_cuda(const std::string& what) {
  throw Error(unimplemented(what + ": this build of mxq has no CUDA support (built without nvcc); "
                                   "use CPU arrays or rebuild where nvcc is found"));
}
#endif

inline ElemType elem_of(const std::string& s) { return get(parse_elem_type(s)); }

inline void check_cpu(const Array& a, const char* what) {
  if (device_of(a, what) != DevKind::kCPU)
    fail(std::string(what) + " must be a CPU array for this function");
}

void bind_numerics(nb::module_& m);
void bind_tensors(nb::module_& m);
void bind_oracle(nb::module_& m);
void bind_layers(nb::module_& m);
void bind_shard(nb::module_& m);  // shard.cc
void bind_checkpoints(nb::module_& m);

}  // namespace mxq::py
