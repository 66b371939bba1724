// MoE routing shared by every CPU backend: router logits [M, E] -> per token top-k global
// expert ids (int32) and weights (float32).
//
// Math in float64 on the logits widened exactly from F32/BF16/F16; the final weights are cast
// to float32 (round to nearest). Ties in every ranking go to the lower index (expert or group).
// Rankings are by the exact scores below; a NaN score never wins a comparison.
//
//   softmax-topk          p = softmax(logits) over all E; the k experts with the largest logits
//                         (the same order as p, without rounding ties); w = p of the chosen;
//                         renormalize: w /= sum(w).
//   topk-softmax          (gpt-oss) the k largest logits; w = softmax over those k. `renormalize`
//                         does not apply (the weights already sum to 1).
//   sigmoid-grouped-topk  (DeepSeek-V3) s = sigmoid(logit); selection score c = s +
//                         correction_bias[e] (when given). Experts form n_group groups of E /
//                         n_group consecutive experts; group score = sum of the group's two
//                         largest c (its only c when a group has one expert); the topk_group best
//                         groups are kept; the k largest c among the kept groups' experts are
//                         chosen; w = s (uncorrected) of the chosen; renormalize: w /= sum(w)
//                         (no epsilon); then w *= routed_scaling.
// Chosen experts are listed best first. routed_scaling applies to sigmoid-grouped-topk only.
#pragma once

#include <cstdint>
#include <vector>

#include "mxq/backend.h"
#include "mxq/problem.h"
#include "mxq/status.h"

namespace mxq::cpu {

struct TopK {
  int64_t tokens = 0, k = 0;
  std::vector<int32_t> ids;     // [tokens, k] global expert ids, best first
  std::vector<float> weights;   // [tokens, k]
};

// One token: logits[0, E) and the optional correction bias (nullptr when absent) -> ids[0, k),
// weights[0, k) with k = p.topk. p must satisfy Problem::validate()'s MoE rules.
void route_token(const MoEParams& p, const double* logits, const double* correction_bias,
                 int32_t* ids, float* weights);

// Every token: logits [M, E] in F32/BF16/F16; correction_bias [1, E] (any dtype) or data ==
// nullptr. Checks the routing rules (contract::moe_routing_error, Problem::validate's), the
// shapes against p (E = p.experts, k = p.topk) and that a correction bias is given exactly when
// p.correction_bias (sigmoid-grouped-topk only): for direct callers; behind the backend entry
// (Backend::run_moe), which checked the same, it never fails.
Status route(const MoEParams& p, const DenseView& logits, const DenseView& correction_bias,
             TopK& out);

}  // namespace mxq::cpu
