// A C ABI over the cuda-mma backend for bench/cuda_gemm_bench.py (ctypes): prepare a linear
// layer from canonical MX weights, run it on device pointers on a given stream, describe the
// launch. Benchmark plumbing only; the Python package is the user-facing binding.
#include <cstring>
#include <memory>
#include <string>

#include "cuda/gemm/mx_gemm.h"
#include "mxq/select.h"

namespace {

struct Layer {
  const mxq::Backend* backend = nullptr;
  mxq::Problem problem;
  std::unique_ptr<mxq::PreparedWeights> weights;
};

int fail(const std::string& msg, char* err, int len) {
  if (err != nullptr && len > 0) {
    std::strncpy(err, msg.c_str(), size_t(len - 1));
    err[len - 1] = 0;
  }
  return 1;
}

mxq::ElemType elem_of(int e) { return e == 0 ? mxq::ElemType::kE2M1 : mxq::ElemType::kE4M3; }
mxq::ActKey act_of(int a) { return a == 0 ? mxq::ActKey::kBF16 : mxq::ActKey::kFP16; }

}  // namespace

extern "C" {

// elem: 0 = E2M1 (MXFP4), 1 = E4M3 (MXFP8); act: 0 = BF16, 1 = FP16 (output dtype = act).
// packed [n, k * bits / 8], scales [n, k / 32], host or device memory.
int mxq_shim_prepare(int elem, int act, int64_t n, int64_t k, const uint8_t* packed,
                     const uint8_t* scales, void** handle, char* err, int errlen) {
  auto layer = std::make_unique<Layer>();
  layer->backend = mxq::find_backend("cuda-mma");
  if (layer->backend == nullptr) return fail("no cuda-mma backend in this build", err, errlen);
  if (mxq::Verdict v = layer->backend->supports(mxq::this_device()); !v)
    return fail("cuda-mma does not support this machine: " + v.reason, err, errlen);
  layer->problem = mxq::Problem::linear(elem_of(elem), act_of(act), 1, n, k);
  const mxq::LinearWeights lw{{elem_of(elem), 1, n, k, packed, scales}, {}, 1.0f};
  auto prep = layer->backend->prepare_linear(layer->problem, lw);
  if (!prep.ok()) return fail(prep.status().to_string(), err, errlen);
  layer->weights = std::move(prep.value());
  *handle = layer.release();
  return 0;
}

// x [m, k] and y [m, n] in device memory, dtype = act; asynchronous on `stream`.
int mxq_shim_run(void* handle, int64_t m, const void* x, void* y, void* stream, char* err,
                 int errlen) {
  auto* layer = static_cast<Layer*>(handle);
  mxq::Problem p = layer->problem;
  p.m = m;
  const mxq::DType d = mxq::act_input_dtype(p.act);
  const mxq::Status s =
      layer->backend->run_linear(p, *layer->weights, {x, d, m, p.k}, {y, p.out, m, p.n}, stream);
  return s.ok() ? 0 : fail(s.to_string(), err, errlen);
}

void mxq_shim_free(void* handle) { delete static_cast<Layer*>(handle); }

int mxq_shim_config(int elem, int64_t m, int64_t n, int64_t k, char* buf, int len) {
  mxq::cuda::GemmArgs a;
  a.elem = elem_of(elem);
  a.m = m;
  a.n = n;
  a.k = k;
  return fail(mxq::cuda::choose_gemm_config(a).to_string(), buf, len) - 1;
}

}  // extern "C"
