// The shared view checks (weight_checks.h). Moved from src/cpu/reference (reference_backend.cc,
// reference_moe.cc) so that no backend includes another one; the messages are unchanged.
#include "contract/weight_checks.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "contract/debug_assert.h"

namespace mxq::contract {

namespace {

bool given(const DenseView& v) { return v.data != nullptr; }
bool given(const MXWeightView& w) { return w.packed != nullptr || w.scales != nullptr; }

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

std::string shape_str(int64_t rows, int64_t cols) {
  std::string s = "[";  // appended piecewise: GCC 12 -Wrestrict misfires on "[" + to_string()
  s += std::to_string(rows);
  s += ", ";
  s += std::to_string(cols);
  s += "]";
  return s;
}

Status check_mx(const char* name, const MXWeightView& w, const Problem& p, int64_t batch,
                int64_t n, int64_t k) {
  // Nothing is allocated unless there is an error (the entry runs this on every prepare, inside
  // the host-allocation fault tests' window).
  const auto what = [&] { return std::string(name) + ": "; };
  if (w.packed == nullptr || w.scales == nullptr)
    return invalid_argument(what() + "missing (null packed or scales pointer)");
  if (w.elem != p.weight)
    return invalid_argument(what() + "expected " + mx_format_name(p.weight) + " elements, got " +
                            mx_format_name(w.elem));
  if (w.batch != batch || w.n != n || w.k != k)
    return invalid_argument(what() + "expected shape [" + std::to_string(batch) + ", " +
                            std::to_string(n) + ", " + std::to_string(k) + "], got [" +
                            std::to_string(w.batch) + ", " + std::to_string(w.n) + ", " +
                            std::to_string(w.k) + "]" +
                            (w.k % kBlockSize == 0 ? "" : " (K must be a multiple of 32)"));
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

Status check_in(const char* name, const DenseView& v, DType dtype, int64_t rows, int64_t cols) {
  return check_dense(name, v, dtype, rows, cols);
}
Status check_out(const char* name, const DenseMutView& v, DType dtype, int64_t rows,
                 int64_t cols) {
  return check_dense(name, v, dtype, rows, cols);
}

Verdict computable(const Problem& p, std::string_view who) {
  if (Status s = p.validate(); !s.ok()) return Verdict::no(s.message());
  if (p.op == Op::kQuantize)
    return Verdict::no(std::string(who) + " runs linear and MoE layers (quantize is mxq::quantize)");
  if (act_key_mx_elem(p.act)) {  // an MX key (cpu::act_key_is_mx)
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

Status check_problem(const Problem& p, Op op) {
  if (p.op != op)
    return invalid_argument("cpu-reference: expected a " + std::string(op_name(op)) +
                            " problem, got " + p.to_string());
  const Verdict v = computable(p);
  if (!v.ok) return invalid_argument("cpu-reference cannot run " + p.to_string() + ": " + v.reason);
  return Status::Ok();
}

Status check_linear_weights(const Problem& p, const LinearWeights& w) {
  MXQ_RETURN_IF_ERROR(check_problem(p, Op::kLinear));
  MXQ_RETURN_IF_ERROR(check_mx("linear weight", w.w, p, 1, p.n, round_up_32(p.k)));
  if (p.bias) {
    if (w.bias.data == nullptr)
      return invalid_argument("linear bias: missing: the problem has a bias (" + p.to_string() +
                              "), pass " + shape_str(1, p.n));
    MXQ_RETURN_IF_ERROR(check_bias("linear bias", w.bias, 1, p.n));
  } else if (w.bias.data != nullptr) {
    return invalid_argument("linear bias: given, but the problem has no bias (" + p.to_string() +
                            ")");
  }
  if (p.act == ActKey::kFP8StaticTensor && !(w.input_scale > 0.0f && std::isfinite(w.input_scale)))
    return invalid_argument("linear input_scale: fp8-static-tensor needs a positive finite "
                            "scale, got " + std::to_string(w.input_scale));
  return Status::Ok();
}

Status check_moe_weights(const Problem& p, const MoEWeights& w) {
  MXQ_RETURN_IF_ERROR(check_problem(p, Op::kMoE));
  const MoEParams& q = p.moe;
  const int64_t h = p.n, inter = p.k, e_local = w.w2.batch;
  if (q.expert_map ? (e_local < 1 || e_local > q.experts) : e_local != q.experts)
    return invalid_argument(
        "moe w2: expected " +
        (q.expert_map ? "1.." + std::to_string(q.experts) + " local experts (expert map)"
                      : std::to_string(q.experts) + " experts (no expert map)") +
        ", got " + std::to_string(e_local));

  const bool fused = q.layout != io::GateUpLayout::kSeparate;
  const std::string layout = io::gate_up_layout_name(q.layout);
  if (fused) {
    MXQ_RETURN_IF_ERROR(check_mx("moe w13", w.w13, p, e_local, 2 * inter, round_up_32(h)));
    if (given(w.w1) || given(w.w3) || given(w.bias1) || given(w.bias3))
      return invalid_argument("moe w1/w3: given, but the " + layout +
                              " layout takes the fused w13 (and bias13)");
  } else {
    MXQ_RETURN_IF_ERROR(check_mx("moe w1", w.w1, p, e_local, inter, round_up_32(h)));
    MXQ_RETURN_IF_ERROR(check_mx("moe w3", w.w3, p, e_local, inter, round_up_32(h)));
    if (given(w.w13) || given(w.bias13))
      return invalid_argument("moe w13: given, but the separate layout takes w1 and w3 "
                              "(and bias1/bias3)");
  }
  MXQ_RETURN_IF_ERROR(check_mx("moe w2", w.w2, p, e_local, h, round_up_32(inter)));

  // Biases: any of the layout's biases may be given when p.bias, none otherwise.
  const bool any_bias = given(w.bias13) || given(w.bias1) || given(w.bias3) || given(w.bias2);
  if (!p.bias && any_bias)
    return invalid_argument("moe bias: given, but the problem has no bias (" + p.to_string() + ")");
  if (p.bias && !any_bias)
    return invalid_argument("moe bias: the problem has a bias, but no bias view was given");
  if (given(w.bias13)) MXQ_RETURN_IF_ERROR(check_bias("moe bias13", w.bias13, e_local, 2 * inter));
  if (given(w.bias1)) MXQ_RETURN_IF_ERROR(check_bias("moe bias1", w.bias1, e_local, inter));
  if (given(w.bias3)) MXQ_RETURN_IF_ERROR(check_bias("moe bias3", w.bias3, e_local, inter));
  if (given(w.bias2)) MXQ_RETURN_IF_ERROR(check_bias("moe bias2", w.bias2, e_local, h));

  if (p.act == ActKey::kFP8StaticTensor)
    for (float s : {w.input_scale13, w.input_scale2})
      if (!(s > 0.0f && std::isfinite(s)))
        return invalid_argument("moe input_scale13/input_scale2: fp8-static-tensor needs "
                                "positive finite scales, got " + std::to_string(s));
  return Status::Ok();
}

Status check_linear_call(const Problem& p, const DenseView& x, const DenseMutView& y) {
  MXQ_RETURN_IF_ERROR(check_in("linear x", x, act_input_dtype(p.act), p.m, p.k));
  return check_out("linear y", y, p.out, p.m, p.n);
}

Status check_moe_call(const Problem& p, const DenseView& x, const MoERouting& r,
                      const DenseMutView& y) {
  const MoEParams& q = p.moe;
  const int64_t m = p.m, h = p.n;
  MXQ_RETURN_IF_ERROR(check_in("moe x", x, act_input_dtype(p.act), m, h));
  MXQ_RETURN_IF_ERROR(check_out("moe y", y, p.out, m, h));
  const DenseView& lg = r.router_logits;
  if (lg.data == nullptr) return invalid_argument("moe router_logits: missing (null data)");
  if (lg.dtype != DType::kF32 && lg.dtype != DType::kBF16 && lg.dtype != DType::kF16)
    return invalid_argument(
        std::string("moe router_logits: expected dtype f32, bf16 or f16, got ") +
        dtype_name(lg.dtype));
  if (lg.rows != m || lg.cols != q.experts)
    return invalid_argument("moe router_logits: expected " + shape_str(m, q.experts) + ", got " +
                            shape_str(lg.rows, lg.cols));
  const DenseView& cb = r.correction_bias;
  const bool want_bias = q.routing == Routing::kSigmoidGroupedTopK && q.correction_bias;
  if (want_bias && cb.data == nullptr)
    return invalid_argument("moe correction_bias: the problem has correction_bias=true (" +
                            std::string(routing_name(q.routing)) +
                            "), but none was given: pass f32 " + shape_str(1, q.experts));
  if (!want_bias && cb.data != nullptr)
    return invalid_argument(std::string("moe correction_bias: given, but the problem uses none (") +
                            routing_name(q.routing) +
                            (q.correction_bias ? "" : ", correction_bias=false") + ")");
  if (want_bias && (cb.dtype != DType::kF32 || cb.rows * cb.cols != q.experts))
    return invalid_argument(std::string("moe correction_bias: expected f32 [1, ") +
                            std::to_string(q.experts) + "], got " + dtype_name(cb.dtype) + " " +
                            shape_str(cb.rows, cb.cols));
  if (q.expert_map && r.expert_map == nullptr)
    return invalid_argument("moe expert_map: the problem has expert_map=true, but none was given: "
                            "pass int32 [" + std::to_string(q.experts) + "]");
  if (!q.expert_map && r.expert_map != nullptr)
    return invalid_argument("moe expert_map: given, but the problem has none");
  return Status::Ok();
}

bool same_layer(const Problem& a, const Problem& b) {
  const MoEParams &x = a.moe, &y = b.moe;
  const bool same_moe =
      a.op != Op::kMoE ||
      (x.experts == y.experts && x.topk == y.topk && x.activation == y.activation &&
       x.layout == y.layout && x.routing == y.routing && x.renormalize == y.renormalize &&
       x.n_group == y.n_group && x.topk_group == y.topk_group &&
       x.routed_scaling == y.routed_scaling && x.correction_bias == y.correction_bias &&
       x.swiglu_alpha == y.swiglu_alpha && x.swiglu_limit == y.swiglu_limit &&
       x.expert_map == y.expert_map);
  return a.op == b.op && a.weight == b.weight && a.act == b.act && a.act_rule == b.act_rule &&
         a.out == b.out && a.n == b.n && a.k == b.k && a.bias == b.bias && same_moe;
}

void debug_assert_failed(const char* cond, const char* what, const char* file, int line) {
  std::fprintf(stderr, "mxq: debug assertion failed at %s:%d: %s (%s)\n", file, line, cond, what);
  std::abort();
}

}  // namespace mxq::contract
