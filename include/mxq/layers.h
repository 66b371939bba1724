// A quantized model seen as layers the backends run: each 2-D MX weight is a linear layer,
// each MoE block (a stacked fused-experts pair <p>.gate_up_proj + <p>.down_proj, or per-expert
// 2-D tensors assembled into that stacked layout) with its router is one MoE layer.
// Shared by `mxq explain MODEL`, `mxq run` and the Python package.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mxq/backend.h"
#include "mxq/model.h"

namespace mxq {

struct AssembledExperts;  // per-expert tensors stacked into the canonical layout (layers.cc)

struct LayerSpec {
  std::string name;                   // module, or the MoE block ("model.layers.2.mlp")
  Problem problem;                    // M = tokens
  const io::MXWeight* w = nullptr;    // linear weight, or MoE gate/up (gate for layout separate)
  const io::MXWeight* w2 = nullptr;   // MoE down
  const io::MXWeight* w3 = nullptr;   // MoE up (layout separate), else nullptr
  std::string router_weight, router_bias;  // MoE router tensors ("" when absent)
  std::string correction_bias;             // e_score_correction_bias ("" when absent)
  // MoE layers assembled from per-expert 2-D tensors: owns the stacked MXWeight records w/w2/w3
  // point to (zero-copy spans into the mapped files when the experts lie back to back there,
  // otherwise filled expert by expert on the first moe_weights() call). Keep a copy of the
  // LayerSpec (or of this pointer) alive as long as the views moe_weights() returns.
  std::shared_ptr<AssembledExperts> assembled;
};

// Layers of `info` for `tokens` tokens; activation key bf16. MoE layers come from stacked 3-D
// experts (<p>.gate_up_proj + <p>.down_proj) or from per-expert 2-D tensors assembled by the
// name table in layers.cc (<block>.experts.<e>.{gate_proj,up_proj,down_proj | w1,w3,w2 |
// gate_up_proj,down_proj}); the router is <block>.gate or <block>.router (+ bias,
// e_score_correction_bias). MoE activation and routing follow config.json: model_type gpt_oss:
// swigluoai (swiglu_alpha, swiglu_limit) + top-k-then-softmax; scoring_func sigmoid: DeepSeek
// grouped top-k (n_group, topk_group, routed_scaling_factor, norm_topk_prob); otherwise silu +
// softmax top-k, renormalised unless norm_topk_prob is false; num_experts_per_tok (default 2).
// The expert count must agree with num_experts / n_routed_experts / num_local_experts when the
// config gives one. A malformed expert set is an error naming the tensor and the rule.
StatusOr<std::vector<LayerSpec>> model_layers(const io::Checkpoint& ck, const io::ModelInfo& info,
                                              int64_t tokens);

// Views of a layer's weights (biases as stored in the checkpoint; assembled experts' biases
// stacked). For assembled experts the first call copies the parts that are not back to back in
// the files, expert by expert, into l.assembled (one copy of that layer, never of the model).
StatusOr<LinearWeights> linear_weights(const io::Checkpoint& ck, const LayerSpec& l);
StatusOr<MoEWeights> moe_weights(const io::Checkpoint& ck, const LayerSpec& l);
// The router's e_score_correction_bias [E] as F32 values, empty when the layer has none. The
// checkpoint may store it as F32, BF16 or F16 (transformers saves DeepSeek-V3's in BF16); BF16 and
// F16 convert exactly. Another dtype, or a number of elements other than E, is an error naming
// the tensor.
StatusOr<std::vector<float>> correction_bias(const io::Checkpoint& ck, const LayerSpec& l);
// A [1, size] F32 view of `v` (a null view when v is empty), e.g. for MoERouting::correction_bias.
DenseView f32_view(const std::vector<float>& v);

// Router logits [M, E] in F32 for BF16 inputs x [M, H]: x . router^T + bias, float64 sums.
StatusOr<std::vector<float>> router_logits(const io::Checkpoint& ck, const LayerSpec& l,
                                           const std::vector<uint16_t>& x_bf16);

}  // namespace mxq
