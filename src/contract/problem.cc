// Names and printing of the problem vocabulary (problem.h).
#include <string>

#include "contract/weight_checks.h"
#include "mxq/problem.h"

namespace mxq {

const char* op_name(Op op) {
  switch (op) {
    case Op::kLinear: return "linear";
    case Op::kMoE: return "moe";
    case Op::kQuantize: return "quantize";
  }
  return "?";
}

const char* act_key_name(ActKey a) {
  switch (a) {
    case ActKey::kBF16: return "bf16";
    case ActKey::kFP16: return "fp16";
    case ActKey::kFP8StaticTensor: return "fp8-static-tensor";
    case ActKey::kFP8DynamicToken: return "fp8-dynamic-token";
    case ActKey::kMXFP8Dynamic: return "mxfp8-dynamic";
    case ActKey::kMXFP4Dynamic: return "mxfp4-dynamic";
    case ActKey::kMXFP6E2M3Dynamic: return "mxfp6-e2m3-dynamic";
    case ActKey::kMXFP6E3M2Dynamic: return "mxfp6-e3m2-dynamic";
    case ActKey::kFP8DynamicTensor: return "fp8-dynamic-tensor";
    case ActKey::kFP8DynamicGroup128: return "fp8-dynamic-group128";
  }
  return "?";
}

StatusOr<ActKey> parse_act_key(std::string_view s) {
  std::string accepted;
  for (ActKey a : kAllActKeys) {
    if (s == act_key_name(a)) return a;
    accepted += (accepted.empty() ? "" : ", ") + std::string(act_key_name(a));
  }
  return invalid_argument("unknown activation key '" + std::string(s) + "' (expected one of: " +
                          accepted + ")");
}

DType act_input_dtype(ActKey a) { return a == ActKey::kFP16 ? DType::kF16 : DType::kBF16; }

const char* moe_activation_name(MoEActivation a) {
  return a == MoEActivation::kSiluAndMul ? "silu" : "swigluoai";
}

StatusOr<MoEActivation> parse_moe_activation(std::string_view s) {
  if (s == "silu" || s == "silu-and-mul") return MoEActivation::kSiluAndMul;
  if (s == "swigluoai") return MoEActivation::kSwigluOAI;
  return invalid_argument("unknown MoE activation '" + std::string(s) +
                          "' (expected one of: silu, swigluoai)");
}

const char* routing_name(Routing r) {
  switch (r) {
    case Routing::kSoftmaxTopK: return "softmax-topk";
    case Routing::kTopKSoftmax: return "topk-softmax";
    case Routing::kSigmoidGroupedTopK: return "sigmoid-grouped-topk";
  }
  return "?";
}

StatusOr<Routing> parse_routing(std::string_view s) {
  for (Routing r : {Routing::kSoftmaxTopK, Routing::kTopKSoftmax, Routing::kSigmoidGroupedTopK})
    if (s == routing_name(r)) return r;
  return invalid_argument("unknown routing '" + std::string(s) +
                          "' (expected one of: softmax-topk, topk-softmax, sigmoid-grouped-topk)");
}

Problem Problem::linear(ElemType w, ActKey a, int64_t m, int64_t n, int64_t k, bool bias) {
  Problem p;
  p.op = Op::kLinear;
  p.weight = w;
  p.act = a;
  p.out = act_input_dtype(a);
  p.m = m;
  p.n = n;
  p.k = k;
  p.bias = bias;
  return p;
}

Problem Problem::moe_problem(ElemType w, ActKey a, int64_t tokens, int64_t hidden, int64_t inter,
                             int64_t experts, int64_t topk) {
  Problem p = linear(w, a, tokens, hidden, inter);
  p.op = Op::kMoE;
  p.moe.experts = experts;
  p.moe.topk = topk;
  return p;
}

std::string Problem::to_string() const {
  std::string s = std::string(op_name(op)) + " " + mx_format_name(weight) + " x " +
                  act_key_name(act);
  if (act_key_mx_elem(act) && act_rule != ScaleRule::kFloor)
    s += std::string("(") + scale_rule_name(act_rule) + ")";
  s += std::string(" -> ") + dtype_name(out);
  if (op == Op::kMoE) {
    s += ", M=" + std::to_string(m) + " H=" + std::to_string(n) + " I=" + std::to_string(k) +
         " E=" + std::to_string(moe.experts) + " top" + std::to_string(moe.topk) + ", " +
         moe_activation_name(moe.activation) + ", " + io::gate_up_layout_name(moe.layout) +
         ", " + routing_name(moe.routing);
    if (moe.routing == Routing::kSigmoidGroupedTopK)
      s += " (groups " + std::to_string(moe.topk_group) + "/" + std::to_string(moe.n_group) + ")";
    if (moe.expert_map) s += ", expert map";
  } else {
    s += ", M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k);
  }
  if (bias) s += ", bias";
  return s;
}

Status Problem::validate() const {
  if (m < 1 || n < 1 || k < 1)
    return invalid_argument(to_string() + ": M, N and K must be positive");
  if (op == Op::kMoE) {
    if (moe.layout == io::GateUpLayout::kNone)
      return invalid_argument(to_string() + ": MoE needs a gate/up layout (chunked, "
                                            "interleaved or separate)");
    if (const std::string why = contract::moe_routing_error(moe); !why.empty())
      return invalid_argument(to_string() + ": " + why);
  }
  return Status::Ok();
}

namespace contract {

std::string moe_routing_error(const MoEParams& q) {
  if (q.experts < 1 || q.topk < 1 || q.topk > q.experts)
    return "need 1 <= topk <= experts, got topk " + std::to_string(q.topk) + ", experts " +
           std::to_string(q.experts);
  if (q.routing == Routing::kSigmoidGroupedTopK) {
    if (q.n_group < 1 || q.experts % q.n_group != 0 || q.topk_group < 1 ||
        q.topk_group > q.n_group)
      return "grouped top-k needs n_group dividing experts and 1 <= topk_group <= n_group, got "
             "n_group " + std::to_string(q.n_group) + ", topk_group " +
             std::to_string(q.topk_group) + ", experts " + std::to_string(q.experts);
    if (q.topk > q.topk_group * (q.experts / q.n_group))
      return "topk exceeds the experts in topk_group groups, got topk " + std::to_string(q.topk) +
             ", topk_group " + std::to_string(q.topk_group) + " of " + std::to_string(q.n_group) +
             " groups of " + std::to_string(q.experts / q.n_group) + " experts";
  }
  return "";
}

}  // namespace contract

}  // namespace mxq
