// The cpu backend: verdicts, prepare, the linear layer, and the helpers shared with cpu_moe.cc.
// Semantics in cpu_backend.h.
#include "cpu/fast/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "contract/debug_assert.h"
#include "contract/weight_checks.h"
#include "core/parallel.h"
#include "cpu/backends.h"
#include "cpu/common/act_quant.h"
#include "cpu/common/host_memory.h"
#include "cpu/fast/cpu_backend_internal.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"

namespace mxq {

std::unique_ptr<Backend> make_cpu_backend() { return cpu::fast::make_cpu_backend({}); }

namespace cpu::fast {

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& opts) {
  return std::make_unique<CpuBackend>(opts);
}

namespace internal {

OwnedWeight sanitize_padding(const MXWeightView& w, int64_t k_valid) {
  OwnedWeight o{w, {}};
  // Only FP8 has non-finite element codes (E4M3 NaN, E5M2 Inf/NaN); a NaN scale is per block
  // and also covers the block's valid columns, where cpu-reference sees it too.
  if (k_valid == w.k || (w.elem != ElemType::kE4M3 && w.elem != ElemType::kE5M2)) return o;
  const auto nonfinite = [&](uint8_t c) {
    return w.elem == ElemType::kE4M3 ? (c & 0x7F) == 0x7F : (c & 0x7C) == 0x7C;
  };
  const int64_t rows = w.batch * w.n;  // 8-bit codes: one byte per element
  bool any = false;
  for (int64_t r = 0; r < rows && !any; ++r)
    for (int64_t i = k_valid; i < w.k; ++i) any = any || nonfinite(w.packed[r * w.k + i]);
  if (!any) return o;
  o.copy.assign(w.packed, w.packed + rows * w.k);
  for (int64_t r = 0; r < rows; ++r)
    std::memset(o.copy.data() + r * w.k + k_valid, 0, size_t(w.k - k_valid));
  o.view.packed = o.copy.data();
  return o;
}

Status quantize_activations(ActKey key, const DenseView& x, float input_scale, int64_t kq,
                            std::vector<float>& out, ScaleRule rule) {
  MXQ_RETURN_IF_ERROR(act_quantize(key, x, input_scale, out, rule));
  if (kq == x.cols) return Status::Ok();
  std::vector<float> padded(size_t(x.rows * kq), 0.0f);
  for (int64_t r = 0; r < x.rows; ++r)
    std::copy_n(out.data() + r * x.cols, x.cols, padded.data() + r * kq);
  out.swap(padded);
  return Status::Ok();
}

int64_t min_rows_per_thread(const CpuBackendOptions& o, int64_t row_bytes) {
  if (o.min_rows_per_thread > 0) return o.min_rows_per_thread;
  return std::max<int64_t>(1, CpuBackendOptions::kMinBytesPerThread / std::max<int64_t>(1, row_bytes));
}

}  // namespace internal

namespace {

using internal::OwnedWeight;

struct PreparedLinear final : PreparedWeights {
  LinearWeights w;
  OwnedWeight weight;
  size_t bytes() const override { return weight.copy.size(); }
};

// Adds the bias (`b`: [N] in FP32, zeros when the layer has none) and stores rows [0, m) x
// columns [n0, n1) of the FP32 result. Allocates nothing: every buffer of run_linear exists
// before the first byte of y is written, so a call that fails on a host allocation leaves y
// untouched.
void store_rows(const float* yf, int64_t ldf, const float* bias, const DenseMutView& y,
                int64_t m, int64_t n0, int64_t n1) {
  const float* b = bias + n0;
  for (int64_t r = 0; r < m; ++r) {
    const float* src = yf + r * ldf;
    switch (y.dtype) {
      case DType::kF32: {
        float* dst = static_cast<float*>(y.data) + r * y.cols;
        for (int64_t j = n0; j < n1; ++j) dst[j] = src[j] + b[j - n0];
        break;
      }
      case DType::kBF16: {
        uint16_t* dst = static_cast<uint16_t*>(y.data) + r * y.cols;
        for (int64_t j = n0; j < n1; ++j) dst[j] = num::f32_to_bf16(src[j] + b[j - n0]);
        break;
      }
      case DType::kF16: {
        uint16_t* dst = static_cast<uint16_t*>(y.data) + r * y.cols;
        for (int64_t j = n0; j < n1; ++j) dst[j] = num::f32_to_f16(src[j] + b[j - n0]);
        break;
      }
    }
  }
}

}  // namespace

Verdict CpuBackend::supports(const Device& d) const {
  // The kernels this device gets: the requested ISA, lowered to what the device has (VL is
  // probed at run time; every CPU with AVX-512F but Xeon Phi has it).
  const bool avx2 = d.avx2 && d.fma && d.f16c;
  Isa isa = opts_.isa;
  if (isa == Isa::kAvx512 && !(avx2 && d.avx512f && isa_available(Isa::kAvx512))) isa = Isa::kAvx2;
  if (isa == Isa::kAvx2 && !avx2) isa = Isa::kScalar;
  std::string why = std::string(isa_name(isa)) + " kernels";
  if (isa == Isa::kScalar)
    why += avx2 ? " (forced by the backend options)" : " (the CPU lacks AVX2, FMA or F16C)";
  return {true, why + ", " + std::to_string(opts_.threads > 0 ? opts_.threads : d.cpu_threads) +
                    " threads"};
}

// The same problems as cpu-reference (the shared definition in the contract).
Verdict CpuBackend::can_implement(const Problem& p) const { return contract::computable(p, "cpu"); }

StatusOr<std::unique_ptr<PreparedWeights>> CpuBackend::do_prepare_linear(
    const Problem& p, const LinearWeights& w) const try {
  auto prepared = std::make_unique<PreparedLinear>();
  prepared->w = w;
  prepared->weight = internal::sanitize_padding(w.w, p.k);
  return std::unique_ptr<PreparedWeights>(std::move(prepared));
} catch (const std::bad_alloc&) {
  return host_out_of_memory(name(), "prepare_linear", p);
}

Status CpuBackend::do_run_linear(const Problem& p, const PreparedWeights& pw, const DenseView& x,
                                 const DenseMutView& y, void*) const try {
  MXQ_DEBUG_ASSERT(dynamic_cast<const PreparedLinear*>(&pw) != nullptr,
                   "the entry checked that pw comes from this backend's prepare_linear");
  const auto* prepared = static_cast<const PreparedLinear*>(&pw);
  const MXWeightView& wv = prepared->weight.view;
  MXQ_DEBUG_ASSERT(wv.n == p.n && wv.k == internal::round_up_32(p.k) && wv.elem == p.weight,
                   "the entry checked that pw was prepared for this layer");
  MXQ_DEBUG_ASSERT(x.dtype == act_input_dtype(p.act) && x.rows == p.m && x.cols == p.k &&
                       y.dtype == p.out && y.rows == p.m && y.cols == p.n,
                   "the entry checked x and y");

  const int64_t kq = wv.k;
  std::vector<float> xq;  // [M, kq]
  MXQ_RETURN_IF_ERROR(
      internal::quantize_activations(p.act, x, prepared->w.input_scale, kq, xq, p.act_rule));

  // FP32 results go straight into y when it is F32; otherwise through a [M, N] buffer.
  std::vector<float> tmp;
  float* yf = nullptr;
  if (y.dtype == DType::kF32) {
    yf = static_cast<float*>(y.data);
  } else {
    tmp.resize(size_t(p.m * p.n));
    yf = tmp.data();
  }
  const MXMatrixRef w = internal::matrix(wv, 0);
  const int64_t min_rows = internal::min_rows_per_thread(opts_, packed_bytes(wv.elem, kq));
  const PackedX xp(opts_.isa, wv.elem, xq.data(), p.m, kq, kq);
  const DenseView& bv = prepared->w.bias;
  std::vector<float> bias(size_t(p.n), 0.0f);  // FP32, before the parallel part (store_rows)
  if (bv.data != nullptr)
    for (int64_t j = 0; j < p.n; ++j) bias[size_t(j)] = load_f32(bv.data, bv.dtype, j);
  internal::parallel_chunks(p.n, opts_.threads, min_rows, [&](int64_t n0, int64_t n1) {
    mx_gemm_rows(w, xp, yf, p.n, n0, n1);
    store_rows(yf, p.n, bias.data(), y, p.m, n0, n1);
  });
  return Status::Ok();
} catch (const std::bad_alloc&) {
  return host_out_of_memory(name(), "run_linear", p);
}

}  // namespace cpu::fast
}  // namespace mxq
