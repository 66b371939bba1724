// cpu-reference: the backend class, shared checks, and the linear layer. Semantics in
// reference_backend.h; the MoE layer is in reference_moe.cc.
#include "cpu/reference/reference_backend.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cpu/backends.h"
#include "cpu/common/act_quant.h"
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

std::string shape_str(int64_t rows, int64_t cols) {
  std::string s = "[";  // appended piecewise: GCC 12 -Wrestrict misfires on "[" + to_string()
  s += std::to_string(rows);
  s += ", ";
  s += std::to_string(cols);
  s += "]";
  return s;
}

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

Status check_mx(const char* name, const MXWeightView& w, const Problem& p, int64_t batch,
                int64_t n, int64_t k) {
  const std::string what = std::string(name) + ": ";
  if (w.packed == nullptr || w.scales == nullptr)
    return invalid_argument(what + "missing (null packed or scales pointer)");
  if (w.elem != p.weight)
    return invalid_argument(what + "expected " + mx_format_name(p.weight) + " elements, got " +
                            mx_format_name(w.elem));
  if (w.batch != batch || w.n != n || w.k != k)
    return invalid_argument(what + "expected shape [" + std::to_string(batch) + ", " +
                            std::to_string(n) + ", " + std::to_string(k) + "], got [" +
                            std::to_string(w.batch) + ", " + std::to_string(w.n) + ", " +
                            std::to_string(w.k) + "]" +
                            (k % kBlockSize == 0 ? "" : " (K must be a multiple of 32)"));
  return Status::Ok();
}

Status check_bias(const char* name, const DenseView& b, int64_t rows, int64_t cols) {
  if (b.data == nullptr) return invalid_argument(std::string(name) + ": missing (null data)");
  if (b.rows != rows || b.cols != cols)
    return invalid_argument(std::string(name) + ": expected shape " + shape_str(rows, cols) +
                            ", got " + shape_str(b.rows, b.cols));
  if (int(b.dtype) > int(DType::kF16)) return invalid_argument(std::string(name) + ": unknown dtype");
  return Status::Ok();
}

namespace {
template <typename View>
Status check_dense(const char* name, const View& v, DType dtype, int64_t rows, int64_t cols) {
  if (v.data == nullptr) return invalid_argument(std::string(name) + ": missing (null data)");
  if (v.dtype != dtype)
    return invalid_argument(std::string(name) + ": expected dtype " + dtype_name(dtype) +
                            ", got " + dtype_name(v.dtype));
  if (v.rows != rows || v.cols != cols)
    return invalid_argument(std::string(name) + ": expected shape " + shape_str(rows, cols) +
                            ", got " + shape_str(v.rows, v.cols));
  return Status::Ok();
}
}  // namespace

Status check_in(const char* name, const DenseView& v, DType dtype, int64_t rows, int64_t cols) {
  return check_dense(name, v, dtype, rows, cols);
}
Status check_out(const char* name, const DenseMutView& v, DType dtype, int64_t rows,
                 int64_t cols) {
  return check_dense(name, v, dtype, rows, cols);
}

Status check_problem(const Problem& p, Op op) {
  if (p.op != op)
    return invalid_argument("cpu-reference: expected a " + std::string(op_name(op)) +
                            " problem, got " + p.to_string());
  const Verdict v = ReferenceBackend().can_implement(p);
  if (!v.ok) return invalid_argument("cpu-reference cannot run " + p.to_string() + ": " + v.reason);
  return Status::Ok();
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

Status not_ours(const char* op) {
  return invalid_argument(std::string("cpu-reference: the prepared weights do not come from "
                                      "cpu-reference prepare_") + op);
}

}  // namespace

Verdict ReferenceBackend::supports(const Device&) const { return Verdict::yes(); }

Verdict ReferenceBackend::can_implement(const Problem& p) const {
  if (Status s = p.validate(); !s.ok()) return Verdict::no(s.message());
  if (p.op == Op::kQuantize)
    return Verdict::no("cpu-reference runs linear and MoE layers (quantize is mxq::quantize)");
  if (act_key_is_mx(p.act)) {
    const char* key = act_key_name(p.act);
    if (p.op == Op::kLinear && p.k % kBlockSize != 0)
      return Verdict::no(std::string(key) + " quantizes 32-blocks along K, but K = " +
                         std::to_string(p.k) + " is not a multiple of 32");
    if (p.op == Op::kMoE && (p.n % kBlockSize != 0 || p.k % kBlockSize != 0))
      return Verdict::no(std::string(key) + " quantizes 32-blocks along H and I, but H = " +
                         std::to_string(p.n) + ", I = " + std::to_string(p.k) +
                         " are not both multiples of 32");
  }
  return Verdict::yes();
}

StatusOr<std::unique_ptr<PreparedWeights>> ReferenceBackend::prepare_linear(
    const Problem& p, const LinearWeights& w) const {
  MXQ_RETURN_IF_ERROR(check_linear_weights(p, w));
  auto prepared = std::make_unique<PreparedLinear>();
  prepared->w = w;
  return std::unique_ptr<PreparedWeights>(std::move(prepared));
}

Status ReferenceBackend::run_linear(const Problem& p, const PreparedWeights& w,
                                    const DenseView& x, const DenseMutView& y, void*) const {
  const auto* prepared = dynamic_cast<const PreparedLinear*>(&w);
  if (prepared == nullptr) return not_ours("linear");
  return reference_linear(p, prepared->w, x, y);
}

StatusOr<std::unique_ptr<PreparedWeights>> ReferenceBackend::prepare_moe(
    const Problem& p, const MoEWeights& w) const {
  MXQ_RETURN_IF_ERROR(check_moe_weights(p, w));
  auto prepared = std::make_unique<PreparedMoE>();
  prepared->w = w;
  return std::unique_ptr<PreparedWeights>(std::move(prepared));
}

Status ReferenceBackend::run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                                 const MoERouting& r, const DenseMutView& y, void*) const {
  const auto* prepared = dynamic_cast<const PreparedMoE*>(&w);
  if (prepared == nullptr) return not_ours("moe");
  return reference_moe(p, prepared->w, x, r, y);
}

// ---- linear ---------------------------------------------------------------------------------------

Status check_linear_weights(const Problem& p, const LinearWeights& w) {
  MXQ_RETURN_IF_ERROR(ref::check_problem(p, Op::kLinear));
  MXQ_RETURN_IF_ERROR(ref::check_mx("linear weight", w.w, p, 1, p.n, ref::round_up_32(p.k)));
  if (p.bias) {
    MXQ_RETURN_IF_ERROR(ref::check_bias("linear bias", w.bias, 1, p.n));
  } else if (w.bias.data != nullptr) {
    return invalid_argument("linear bias: given, but the problem has no bias (" + p.to_string() +
                            ")");
  }
  if (p.act == ActKey::kFP8StaticTensor && !(w.input_scale > 0.0f && std::isfinite(w.input_scale)))
    return invalid_argument("linear input_scale: fp8-static-tensor needs a positive finite "
                            "scale, got " + std::to_string(w.input_scale));
  return Status::Ok();
}

Status reference_linear(const Problem& p, const LinearWeights& w, const DenseView& x,
                        const DenseMutView& y) {
  MXQ_RETURN_IF_ERROR(check_linear_weights(p, w));
  MXQ_RETURN_IF_ERROR(ref::check_in("linear x", x, act_input_dtype(p.act), p.m, p.k));
  MXQ_RETURN_IF_ERROR(ref::check_out("linear y", y, p.out, p.m, p.n));

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
