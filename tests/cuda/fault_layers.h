// Layers for the GPU fault-injection and stress tests (issue 19): one linear or MoE layer with
// its canonical weights (host memory, quantize() of N(0, 0.05) values: real-checkpoint scales,
// so cuda-hopper's own kernels run), its inputs on the host and the device, and an output that
// lives on the device (the real path) or on the host (the staged convenience path). prepare()
// and run() call a backend's public entry; everything else here is plain CUDA, not counted by
// mxq (cuda::live_device_allocations counts the library's own buffers only).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mxq/backend.h"
#include "mxq/device.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"
#include "mxq/select.h"
#include "test_weights.h"

namespace mxq::faulttest {

// A raw device array (cudaMalloc, not through mxq): the tests' inputs and outputs.
struct DevBytes {
  void* p = nullptr;
  size_t n = 0;
  DevBytes() = default;
  explicit DevBytes(size_t bytes) : n(bytes) {
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
      p = nullptr;
      (void)cudaGetLastError();
    }
  }
  DevBytes(const DevBytes&) = delete;
  DevBytes& operator=(const DevBytes&) = delete;
  ~DevBytes() {
    if (p) cudaFree(p);
  }
  void upload(const void* h) const { cudaMemcpy(p, h, n, cudaMemcpyHostToDevice); }
};

struct LayerSpec {
  Op op = Op::kLinear;
  ElemType weight = ElemType::kE2M1;
  ActKey act = ActKey::kBF16;
  int64_t m = 5, n = 256, k = 256;          // MoE: n = hidden, k = intermediate
  int64_t experts = 8, topk = 2;            // MoE only
  bool bias = true;
  bool staged = false;                      // x / y (and routing) in host memory
  uint32_t seed = 1;
};

inline Problem make_problem(const LayerSpec& s) {
  Problem p = s.op == Op::kLinear
                  ? Problem::linear(s.weight, s.act, s.m, s.n, s.k, s.bias)
                  : Problem::moe_problem(s.weight, s.act, s.m, s.n, s.k, s.experts, s.topk);
  if (s.op == Op::kMoE) {
    p.bias = s.bias;
    p.moe.layout = io::GateUpLayout::kInterleaved;
    p.moe.activation = MoEActivation::kSwigluOAI;
    p.moe.routing = Routing::kTopKSoftmax;
  }
  p.out = act_input_dtype(s.act);
  return p;
}

class Layer {
 public:
  explicit Layer(const LayerSpec& s) : spec(s), p(make_problem(s)) {
    std::mt19937 g(s.seed);
    std::normal_distribution<float> nd;
    auto weights = [&](int64_t batch, int64_t rows, int64_t cols) {
      std::vector<float> v(size_t(batch * rows * cols));
      for (auto& f : v) f = 0.05f * nd(g);
      QuantOptions o;
      o.elem = s.weight;
      MXMatrix q = quantize(v, batch * rows, cols, o).value();
      testing::Weights out{std::move(q.packed), std::move(q.scales), {}};
      out.view = {s.weight, batch, rows, cols, out.packed.data(), out.scales.data()};
      return out;
    };
    auto bf16s = [&](int64_t count, float scale) {
      std::vector<uint16_t> out(static_cast<size_t>(count));
      for (auto& v : out) v = num::f32_to_bf16(scale * nd(g));
      return out;
    };
    const DType xd = act_input_dtype(s.act);
    const int64_t xcols = s.op == Op::kLinear ? s.k : s.n;
    x.resize(size_t(s.m * xcols));
    for (auto& v : x) v = xd == DType::kBF16 ? num::f32_to_bf16(nd(g)) : num::f32_to_f16(nd(g));
    if (s.op == Op::kLinear) {
      w = weights(1, s.n, s.k);
      if (s.bias) bias = bf16s(s.n, 0.5f);
    } else {
      w13 = weights(s.experts, 2 * s.k, s.n);
      w2 = weights(s.experts, s.n, s.k);
      if (s.bias) {
        bias13 = bf16s(s.experts * 2 * s.k, 0.1f);
        bias = bf16s(s.experts * s.n, 0.1f);
      }
      logits.resize(size_t(s.m * s.experts));
      for (auto& l : logits) l = 2.0f * nd(g);
    }
    x_dev = std::make_unique<DevBytes>(x.size() * 2);
    x_dev->upload(x.data());
    if (!logits.empty()) {
      logits_dev = std::make_unique<DevBytes>(logits.size() * 4);
      logits_dev->upload(logits.data());
    }
  }

  std::string what() const {
    return p.to_string() + (spec.staged ? " (host pointers)" : " (device pointers)");
  }
  int64_t out_cols() const { return p.n; }  // linear N, MoE H
  size_t y_bytes() const { return size_t(p.m * p.n * dtype_bytes(p.out)); }

  StatusOr<std::unique_ptr<PreparedWeights>> prepare(const Backend& b) const {
    if (p.op == Op::kLinear) {
      LinearWeights lw;
      lw.w = w.view;
      if (spec.bias) lw.bias = {bias.data(), DType::kBF16, 1, p.n};
      lw.input_scale = 0.05f;
      return b.prepare_linear(p, lw);
    }
    MoEWeights mw;
    mw.w13 = w13.view;
    mw.w2 = w2.view;
    if (spec.bias) {
      mw.bias13 = {bias13.data(), DType::kBF16, spec.experts, 2 * p.k};
      mw.bias2 = {bias.data(), DType::kBF16, spec.experts, p.n};
    }
    return b.prepare_moe(p, mw);
  }

  // y: device memory of y_bytes() (or host memory for a staged layer).
  Status run(const Backend& b, const PreparedWeights& pw, void* y, cudaStream_t s = nullptr,
             const Problem* override_p = nullptr) const {
    const Problem& q = override_p ? *override_p : p;
    const DType xd = act_input_dtype(q.act);
    const void* xp = spec.staged ? static_cast<const void*>(x.data()) : x_dev->p;
    const DenseMutView yv{y, q.out, q.m, q.n};
    if (q.op == Op::kLinear) return b.run_linear(q, pw, {xp, xd, q.m, q.k}, yv, s);
    MoERouting r;
    r.router_logits = {spec.staged ? static_cast<const void*>(logits.data()) : logits_dev->p,
                       DType::kF32, q.m, spec.experts};
    return b.run_moe(q, pw, {xp, xd, q.m, q.n}, r, yv, s);
  }

  LayerSpec spec;
  Problem p;
  testing::Weights w, w13, w2;
  std::vector<uint16_t> bias, bias13, x;
  std::vector<float> logits;
  std::unique_ptr<DevBytes> x_dev, logits_dev;
};

// The CUDA backends of the registry that run on this device (cuda-mma; cuda-hopper on sm_90
// in an sm_90a build), with the reason for each one that does not.
inline std::vector<const Backend*> cuda_backends_here(std::string* skipped) {
  std::vector<const Backend*> v;
  for (const Backend* b : backends()) {
    if (b->memory_kind() != MemoryKind::kCUDA) continue;
    if (const Verdict ok = b->supports(this_device()); !ok) {
      *skipped += std::string(b->name()) + ": " + ok.reason + "; ";
      continue;
    }
    v.push_back(b);
  }
  return v;
}

}  // namespace mxq::faulttest
