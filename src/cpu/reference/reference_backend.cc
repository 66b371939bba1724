// cpu-reference: the backend class, shared checks, and the linear layer. Semantics in
// reference_backend.h; the MoE layer is in reference_moe.cc.
#include "cpu/reference/reference_backend.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "contract/debug_assert.h"
#include "cpu/backends.h"
#include "cpu/common/act_quant.h"
#include "cpu/common/host_memory.h"
#include "cpu/reference/reference_util.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"

namespace mxq {

std::unique_ptr<Backend> make_cpu_reference_backend() {
  return std::make_unique<cpu::ReferenceBackend>();
}

namespace cpu {

// ---- shared helpers (reference_util.h) ----------------------------------------------------------

namespace ref {

void decode_row(const MXWeightView& w, int64_t b, int64_t r, std::vector<double>& out,
                std::vector<uint8_t>& codes) {
  const int64_t row = b * w.n + r;
  const uint8_t* packed = w.packed + row * packed_bytes(w.elem, w.k);
  const uint8_t* scales = w.scales + row * (w.k / kBlockSize);
  codes.resize(size_t(w.k));
  out.resize(size_t(w.k));
  pack::unpack_codes(w.elem, packed, w.k, codes.data());
  for (int64_t i = 0; i < w.k; ++i) {
    const uint8_t s = scales[i / kBlockSize];
    out[size_t(i)] = s == num::kScaleNaN
                         ? std::numeric_limits<double>::quiet_NaN()
                         : double(num::decode_elem(w.elem, codes[size_t(i)])) * std::ldexp(1.0, int(s) - 127);
  }
}

double dot(const float* x, const double* w, int64_t n) {
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += double(x[i]) * w[i];
  return acc;
}

double bias_at(const DenseView& b, int64_t i) {
  return b.data == nullptr ? 0.0 : double(load_f32(b.data, b.dtype, i));
}

}  // namespace ref

// ---- the backend ----------------------------------------------------------------------------------

namespace {

struct PreparedLinear final : PreparedWeights {
  LinearWeights w;
  size_t bytes() const override { return 0; }
};
struct PreparedMoE final : PreparedWeights {
  MoEWeights w;
  size_t bytes() const override { return 0; }
};

}  // namespace

Verdict ReferenceBackend::supports(const Device&) const { return Verdict::yes(); }

Verdict ReferenceBackend::can_implement(const Problem& p) const {
  return contract::computable(p);
}

StatusOr<std::unique_ptr<PreparedWeights>> ReferenceBackend::do_prepare_linear(
    const Problem& p, const LinearWeights& w) const try {
  auto prepared = std::make_unique<PreparedLinear>();
  prepared->w = w;
  return std::unique_ptr<PreparedWeights>(std::move(prepared));
} catch (const std::bad_alloc&) {
  return host_out_of_memory(name(), "prepare_linear", p);
}

Status ReferenceBackend::do_run_linear(const Problem& p, const PreparedWeights& w,
                                       const DenseView& x, const DenseMutView& y, void*) const try {
  MXQ_DEBUG_ASSERT(dynamic_cast<const PreparedLinear*>(&w) != nullptr,
                   "the entry checked that w comes from this backend's prepare_linear");
  return ref::linear_checked(p, static_cast<const PreparedLinear&>(w).w, x, y);
} catch (const std::bad_alloc&) {
  return host_out_of_memory(name(), "run_linear", p);
}

StatusOr<std::unique_ptr<PreparedWeights>> ReferenceBackend::do_prepare_moe(
    const Problem& p, const MoEWeights& w) const try {
  auto prepared = std::make_unique<PreparedMoE>();
  prepared->w = w;
  return std::unique_ptr<PreparedWeights>(std::move(prepared));
} catch (const std::bad_alloc&) {
  return host_out_of_memory(name(), "prepare_moe", p);
}

Status ReferenceBackend::do_run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                                    const MoERouting& r, const DenseMutView& y, void*) const try {
  MXQ_DEBUG_ASSERT(dynamic_cast<const PreparedMoE*>(&w) != nullptr,
                   "the entry checked that w comes from this backend's prepare_moe");
  return ref::moe_checked(p, static_cast<const PreparedMoE&>(w).w, x, r, y);
} catch (const std::bad_alloc&) {
  return host_out_of_memory(name(), "run_moe", p);
}

// ---- linear ---------------------------------------------------------------------------------------

Status reference_linear(const Problem& p, const LinearWeights& w, const DenseView& x,
                        const DenseMutView& y) {
  MXQ_RETURN_IF_ERROR(check_linear_weights(p, w));
  MXQ_RETURN_IF_ERROR(contract::check_linear_call(p, x, y));
  return ref::linear_checked(p, w, x, y);
}

Status ref::linear_checked(const Problem& p, const LinearWeights& w, const DenseView& x,
                           const DenseMutView& y) {
  std::vector<float> xq;  // [M, K]
  MXQ_RETURN_IF_ERROR(act_quantize(p.act, x, w.input_scale, xq, p.act_rule));
  std::vector<double> wrow;
  std::vector<uint8_t> codes;
  for (int64_t n = 0; n < p.n; ++n) {
    ref::decode_row(w.w, 0, n, wrow, codes);
    const double b = ref::bias_at(w.bias, n);
    for (int64_t m = 0; m < p.m; ++m) {
      const double acc = ref::dot(xq.data() + m * p.k, wrow.data(), p.k) + b;
      store_f32(y.data, y.dtype, m * p.n + n, float(acc));
    }
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace mxq
