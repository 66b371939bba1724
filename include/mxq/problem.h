// Problem descriptors: what an op computes, as plain printable values. The oracle selects a
// backend from a Problem and a Device; backends check a Problem in can_implement().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mxq/formats.h"
#include "mxq/model.h"
#include "mxq/status.h"

namespace mxq {

enum class Op : uint8_t { kLinear, kMoE, kQuantize };
const char* op_name(Op op);  // "linear", "moe", "quantize"

// How activations enter the matmul (the "activation key" of the oracle).
enum class ActKey : uint8_t {
  kBF16,             // W4A16 / W8A16: BF16 activations used as they are
  kFP16,             // FP16 activations
  kFP8StaticTensor,  // x quantized to FP8 E4M3 with a static per-tensor scale (input_scale)
  kFP8DynamicToken,  // x quantized to FP8 E4M3 with a per-row scale amax / 448
  kMXFP8Dynamic,     // x quantized to MXFP8 E4M3 per 32-block (floor rule, RNE)
  kMXFP4Dynamic,     // x quantized to MXFP4 per 32-block (floor rule, RNE)
  kMXFP6E2M3Dynamic, // x quantized to MXFP6 E2M3 per 32-block (floor rule, RNE)
  kMXFP6E3M2Dynamic, // x quantized to MXFP6 E3M2 per 32-block (floor rule, RNE)
  kFP8DynamicTensor, // x quantized to FP8 E4M3 with ONE dynamic scale amax / 448 over the whole
                     // tensor of the call (all rows and columns; compressed-tensors strategy
                     // "tensor", dynamic true)
  kFP8DynamicGroup128, // x quantized to FP8 E4M3 with a dynamic scale amax / 448 per row and
                       // group of 128 consecutive columns along K (compressed-tensors strategy
                       // "group", group_size 128, dynamic true: its MXFP4XFP8 preset; DeepSeek's
                       // 1 x 128 activation tiles)
};
inline constexpr ActKey kAllActKeys[] = {
    ActKey::kBF16,         ActKey::kFP16,         ActKey::kFP8StaticTensor,
    ActKey::kFP8DynamicToken, ActKey::kMXFP8Dynamic, ActKey::kMXFP4Dynamic,
    ActKey::kMXFP6E2M3Dynamic, ActKey::kMXFP6E3M2Dynamic, ActKey::kFP8DynamicTensor,
    ActKey::kFP8DynamicGroup128};
const char* act_key_name(ActKey a);  // "bf16", "fp16", "fp8-static-tensor", "fp8-dynamic-token",
                                     // "mxfp8-dynamic", "mxfp4-dynamic", "mxfp6-e2m3-dynamic",
                                     // "mxfp6-e3m2-dynamic", "fp8-dynamic-tensor",
                                     // "fp8-dynamic-group128"
StatusOr<ActKey> parse_act_key(std::string_view s);
// The MX keys (quantized per 32-block along K): true and the element type in *elem.
constexpr bool act_key_mx_elem(ActKey a, ElemType* elem = nullptr) {
  ElemType t = ElemType::kE2M1;
  switch (a) {
    case ActKey::kMXFP8Dynamic: t = ElemType::kE4M3; break;
    case ActKey::kMXFP4Dynamic: t = ElemType::kE2M1; break;
    case ActKey::kMXFP6E2M3Dynamic: t = ElemType::kE2M3; break;
    case ActKey::kMXFP6E3M2Dynamic: t = ElemType::kE3M2; break;
    default: return false;
  }
  if (elem != nullptr) *elem = t;
  return true;
}
// The columns one scale of kFP8DynamicGroup128 covers (the last group of a row may be shorter).
inline constexpr int64_t kFp8ActGroup = 128;
// The dense dtype activations arrive in (and outputs default to) for an activation key.
DType act_input_dtype(ActKey a);

enum class MoEActivation : uint8_t {
  kSiluAndMul,  // silu(gate) * up
  kSwigluOAI,   // gpt-oss: g = min(g, limit); u = clamp(u, -limit, limit);
                // g * sigmoid(alpha * g) * (u + 1)
};
const char* moe_activation_name(MoEActivation a);  // "silu", "swigluoai"
StatusOr<MoEActivation> parse_moe_activation(std::string_view s);

enum class Routing : uint8_t {
  kSoftmaxTopK,         // softmax over all experts, top-k, optional renormalisation
  kTopKSoftmax,         // top-k of the logits, softmax over those k (gpt-oss)
  kSigmoidGroupedTopK,  // DeepSeek-V3: sigmoid scores + correction bias for selection,
                        // top groups by the sum of each group's best 2, top-k in them,
                        // weights from the uncorrected scores, renormalised, times scaling
};
const char* routing_name(Routing r);  // "softmax-topk", "topk-softmax", "sigmoid-grouped-topk"
StatusOr<Routing> parse_routing(std::string_view s);

struct MoEParams {
  int64_t experts = 0;  // E (global)
  int64_t topk = 0;
  MoEActivation activation = MoEActivation::kSiluAndMul;
  io::GateUpLayout layout = io::GateUpLayout::kChunked;
  Routing routing = Routing::kSoftmaxTopK;
  bool renormalize = true;         // kSoftmaxTopK / kSigmoidGroupedTopK
  int64_t n_group = 1;             // kSigmoidGroupedTopK
  int64_t topk_group = 1;          // kSigmoidGroupedTopK
  float routed_scaling = 1.0f;     // kSigmoidGroupedTopK (DeepSeek-V3: 2.5)
  bool correction_bias = false;    // kSigmoidGroupedTopK: e_score_correction_bias present
  float swiglu_alpha = 1.702f;     // kSwigluOAI
  float swiglu_limit = 7.0f;       // kSwigluOAI
  bool expert_map = false;         // a local-expert map (expert parallelism) is given
};

// Linear: y[M, N] = act(x[M, K]) . dequant(W[N, K])^T + bias[N].
// MoE: x[M, H] -> router -> experts w13 [E, 2I, H] (or w1/w3 [E, I, H]), w2 [E, H, I] -> y[M, H];
//      n = H (hidden), k = I (intermediate) by convention.
struct Problem {
  Op op = Op::kLinear;
  ElemType weight = ElemType::kE2M1;
  ActKey act = ActKey::kBF16;
  // MX activation keys: the block scale rule of the activation quantization (the checkpoint's,
  // e.g. Quark's "even"; floor, mxq::quantize's default, otherwise). Printed after the key when
  // it is not floor: "mxfp4-dynamic(even)". Ignored by the other keys.
  ScaleRule act_rule = ScaleRule::kFloor;
  DType out = DType::kBF16;
  int64_t m = 0, n = 0, k = 0;
  bool bias = false;
  MoEParams moe;

  static Problem linear(ElemType w, ActKey a, int64_t m, int64_t n, int64_t k, bool bias = false);
  static Problem moe_problem(ElemType w, ActKey a, int64_t tokens, int64_t hidden,
                             int64_t inter, int64_t experts, int64_t topk);
  // "linear mxfp4 x bf16 -> bf16, M=1 N=4096 K=4096, bias"
  std::string to_string() const;
  // Structural validity (positive dims, topk <= experts, groups divide experts, ...).
  Status validate() const;
};

// A backend's answer to "can you?": ok, or a one-line reason.
struct Verdict {
  bool ok = true;
  std::string reason;
  static Verdict yes() { return {}; }
  static Verdict no(std::string why) { return {false, std::move(why)}; }
  explicit operator bool() const { return ok; }
};

}  // namespace mxq
