// A quantized model seen as layers the backends run: each 2-D MX weight is a linear layer,
// each fused-experts pair (<p>.gate_up_proj + <p>.down_proj) with its router is an MoE layer.
// Shared by `mxq explain MODEL`, `mxq run` and the Python package.
#pragma once

#include <string>
#include <vector>

#include "mxq/backend.h"
#include "mxq/model.h"

namespace mxq {

struct LayerSpec {
  std::string name;                   // module, or the MoE block ("model.layers.2.mlp")
  Problem problem;                    // M = tokens
  const io::MXWeight* w = nullptr;    // linear weight, or MoE gate/up
  const io::MXWeight* w2 = nullptr;   // MoE down
  std::string router_weight, router_bias;  // MoE router tensors ("" when absent)
};

// Layers of `info` for `tokens` tokens; activation key bf16. MoE activation and routing follow
// the config (model_type gpt_oss: swigluoai + top-k-then-softmax; otherwise silu + softmax
// top-k with renormalisation, num_experts_per_tok from the config, default 2).
StatusOr<std::vector<LayerSpec>> model_layers(const io::Checkpoint& ck, const io::ModelInfo& info,
                                              int64_t tokens);

// Views of a layer's weights (biases as stored in the checkpoint).
StatusOr<LinearWeights> linear_weights(const io::Checkpoint& ck, const LayerSpec& l);
StatusOr<MoEWeights> moe_weights(const io::Checkpoint& ck, const LayerSpec& l);

// Router logits [M, E] in F32 for BF16 inputs x [M, H]: x . router^T + bias, float64 sums.
StatusOr<std::vector<float>> router_logits(const io::Checkpoint& ck, const LayerSpec& l,
                                           const std::vector<uint16_t>& x_bf16);

}  // namespace mxq
