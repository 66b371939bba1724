// A C ABI over the CUDA backends for bench/cuda_gemm_bench.py and bench/cuda_moe_bench.py
// (ctypes): prepare a linear (cuda-mma or cuda-hopper) or MoE layer from canonical MX weights,
// run it on device pointers on a given stream, describe the launch. Benchmark plumbing only; the Python package is the
// user-facing binding.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "cuda/gemm/mx_gemm.h"
#if defined(MXQ_WITH_HOPPER)
#include "cuda/hopper/gemm.h"
#endif
#include "mxq/select.h"
#include "mxq/version.h"

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
// 0 bf16, 1 fp16, 2 fp8-dynamic-token, 3 fp8-static-tensor (the FP8 keys: BF16 x and output).
mxq::ActKey act_of(int a) {
  return a == 1   ? mxq::ActKey::kFP16
         : a == 2 ? mxq::ActKey::kFP8DynamicToken
         : a == 3 ? mxq::ActKey::kFP8StaticTensor
         : a == 4 ? mxq::ActKey::kFP8DynamicGroup128
                  : mxq::ActKey::kBF16;
}
// fp8-static-tensor's input scale in the benchmark (x ~ N(0, 1): amax ~5 over a row).
constexpr float kBenchInputScale = 5.0f / 448.0f;

}  // namespace

extern "C" {

// The git commit this shim was built from: mxq::build_commit() of its build (cmake/git_commit.cmake
// at build time: `git rev-parse --short=7 HEAD`, "-dirty" when tracked files differed; "" when
// built outside a git checkout), the string `mxq --version` prints. bench/provenance.py records
// it as binary_commit next to the tree's commit, which may be a different working copy.
const char* mxq_shim_build_commit() { return mxq::build_commit(); }

// elem: 0 = E2M1 (MXFP4), 1 = E4M3 (MXFP8); act: 0 = BF16, 1 = FP16 (output dtype = act), 2 =
// fp8-dynamic-token, 3 = fp8-static-tensor (input scale kBenchInputScale; BF16 x and output).
// packed [n, k * bits / 8], scales [n, k / 32], host or device memory. `backend`: a linear
// backend's name (cuda-mma, cuda-hopper).
int mxq_shim_prepare_on(const char* backend, int elem, int act, int64_t n, int64_t k,
                        const uint8_t* packed, const uint8_t* scales, void** handle, char* err,
                        int errlen) {
  auto layer = std::make_unique<Layer>();
  layer->backend = mxq::find_backend(backend);
  if (layer->backend == nullptr) return fail(std::string("no ") + backend + " backend in this build", err, errlen);
  if (mxq::Verdict v = layer->backend->supports(mxq::this_device()); !v)
    return fail(std::string(backend) + " does not support this machine: " + v.reason, err, errlen);
  layer->problem = mxq::Problem::linear(elem_of(elem), act_of(act), 1, n, k);
  const mxq::LinearWeights lw{{elem_of(elem), 1, n, k, packed, scales}, {}, kBenchInputScale};
  auto prep = layer->backend->prepare_linear(layer->problem, lw);
  if (!prep.ok()) return fail(prep.status().to_string(), err, errlen);
  layer->weights = std::move(prep.value());
  *handle = layer.release();
  return 0;
}
int mxq_shim_prepare(int elem, int act, int64_t n, int64_t k, const uint8_t* packed,
                     const uint8_t* scales, void** handle, char* err, int errlen) {
  return mxq_shim_prepare_on("cuda-mma", elem, act, n, k, packed, scales, handle, err, errlen);
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

// MoE layer, H = hidden, I = intermediate, E experts, top-k. layout: 0 chunked, 1 interleaved
// (w13 [E, 2I, H]), 2 separate (w13 = w1, w3 given); activation: 0 silu, 1 swigluoai; routing:
// 0 softmax-topk, 1 topk-softmax, 2 sigmoid-grouped-topk (n_group / topk_group, no correction
// bias, scaling 1). Weights (host or device): w13 / w1 / w3 packed + scales, w2 packed + scales;
// no biases. BF16 activations and output. `backend`: an MoE backend's name (cuda-mma,
// cuda-hopper).
int mxq_shim_prepare_moe_on(const char* backend, int elem, int64_t hidden, int64_t inter,
                            int64_t experts, int64_t topk, int layout, int activation, int routing,
                            int64_t n_group, int64_t topk_group, const uint8_t* w13,
                            const uint8_t* s13, const uint8_t* w3, const uint8_t* s3,
                            const uint8_t* w2, const uint8_t* s2, void** handle, char* err,
                            int errlen) {
  auto layer = std::make_unique<Layer>();
  layer->backend = mxq::find_backend(backend);
  if (layer->backend == nullptr) return fail(std::string("no ") + backend + " backend in this build", err, errlen);
  if (mxq::Verdict v = layer->backend->supports(mxq::this_device()); !v)
    return fail(std::string(backend) + " does not support this machine: " + v.reason, err, errlen);
  const mxq::ElemType e = elem_of(elem);
  mxq::Problem p = mxq::Problem::moe_problem(e, mxq::ActKey::kBF16, 1, hidden, inter, experts, topk);
  p.moe.layout = layout == 0   ? mxq::io::GateUpLayout::kChunked
                 : layout == 1 ? mxq::io::GateUpLayout::kInterleaved
                               : mxq::io::GateUpLayout::kSeparate;
  p.moe.activation = activation == 1 ? mxq::MoEActivation::kSwigluOAI : mxq::MoEActivation::kSiluAndMul;
  p.moe.routing = routing == 0   ? mxq::Routing::kSoftmaxTopK
                  : routing == 1 ? mxq::Routing::kTopKSoftmax
                                 : mxq::Routing::kSigmoidGroupedTopK;
  p.moe.n_group = n_group;
  p.moe.topk_group = topk_group;
  layer->problem = p;
  mxq::MoEWeights w;
  if (layout == 2) {
    w.w1 = {e, experts, inter, hidden, w13, s13};
    w.w3 = {e, experts, inter, hidden, w3, s3};
  } else {
    w.w13 = {e, experts, 2 * inter, hidden, w13, s13};
  }
  w.w2 = {e, experts, hidden, inter, w2, s2};
  auto prep = layer->backend->prepare_moe(p, w);
  if (!prep.ok()) return fail(prep.status().to_string(), err, errlen);
  layer->weights = std::move(prep.value());
  *handle = layer.release();
  return 0;
}
int mxq_shim_prepare_moe(int elem, int64_t hidden, int64_t inter, int64_t experts, int64_t topk,
                         int layout, int activation, int routing, int64_t n_group,
                         int64_t topk_group, const uint8_t* w13, const uint8_t* s13,
                         const uint8_t* w3, const uint8_t* s3, const uint8_t* w2,
                         const uint8_t* s2, void** handle, char* err, int errlen) {
  return mxq_shim_prepare_moe_on("cuda-mma", elem, hidden, inter, experts, topk, layout, activation,
                                 routing, n_group, topk_group, w13, s13, w3, s3, w2, s2, handle,
                                 err, errlen);
}

// The launch the prepared layer's backend makes for m tokens (Backend::launch_plan; empty
// when the backend prints none), into buf; returns the length written.
int mxq_shim_plan(void* handle, int64_t m, char* buf, int len) {
  auto* layer = static_cast<Layer*>(handle);
  mxq::Problem p = layer->problem;
  p.m = m;
  const std::string s = layer->backend->launch_plan(p);
  if (buf == nullptr || len <= 0) return int(s.size());
  std::strncpy(buf, s.c_str(), size_t(len - 1));
  buf[len - 1] = 0;
  return int(std::min(s.size(), size_t(len - 1)));
}

// x [m, H] BF16, logits [m, E] F32, y [m, H] BF16, device memory; asynchronous on `stream`.
int mxq_shim_run_moe(void* handle, int64_t m, const void* x, const float* logits, void* y,
                     void* stream, char* err, int errlen) {
  auto* layer = static_cast<Layer*>(handle);
  mxq::Problem p = layer->problem;
  p.m = m;
  const mxq::MoERouting r{{logits, mxq::DType::kF32, m, p.moe.experts}, {}, nullptr};
  const mxq::Status s = layer->backend->run_moe(p, *layer->weights, {x, mxq::DType::kBF16, m, p.n},
                                                r, {y, mxq::DType::kBF16, m, p.n}, stream);
  return s.ok() ? 0 : fail(s.to_string(), err, errlen);
}

int mxq_shim_config(int elem, int64_t m, int64_t n, int64_t k, char* buf, int len) {
  mxq::cuda::GemmArgs a;
  a.elem = elem_of(elem);
  a.m = m;
  a.n = n;
  a.k = k;
  return fail(mxq::cuda::choose_gemm_config(a).to_string(), buf, len) - 1;
}

// The launch `backend` makes for the problem (BF16 activations), printable.
int mxq_shim_config_on(const char* backend, int elem, int64_t m, int64_t n, int64_t k, char* buf,
                       int len) {
#if defined(MXQ_WITH_HOPPER)
  if (std::string(backend) == "cuda-hopper") {
    mxq::cuda::hopper::HopperGemmArgs a;
    a.elem = elem_of(elem);
    a.m = m;
    a.n = n;
    a.k = k;
    auto c = mxq::cuda::hopper::choose_hopper_config(a);
    return fail(c.ok() ? c.value().to_string() : c.status().to_string(), buf, len) - 1;
  }
#endif
  return mxq_shim_config(elem, m, n, k, buf, len);
}

}  // extern "C"
