// The checks of a problem's weight and activation views, shared by every backend (the ground
// floor of docs/architecture.md: every backend includes this, it includes no backend).
//
// They define which canonical views a Problem accepts: exactly what cpu-reference, the
// definition of correct, accepts (other backends accept the same weights and implement a subset
// of the problems). Every error names the tensor and the expected vs the given shape or dtype.
// The messages keep the "cpu-reference" wording they had when these checks lived in
// src/cpu/reference (callers and tests match them).
#pragma once

#include <string_view>

#include <cstdint>
#include <string>

#include "mxq/backend.h"
#include "mxq/problem.h"

namespace mxq::contract {

inline int64_t round_up_32(int64_t k) { return (k + kBlockSize - 1) / kBlockSize * kBlockSize; }

std::string shape_str(int64_t rows, int64_t cols);

// `name` must be a canonical MX weight of p.weight with [batch, n, k] logical shape
// (k = round_up_32 of the problem's dimension).
Status check_mx(const char* name, const MXWeightView& w, const Problem& p, int64_t batch,
                int64_t n, int64_t k);
// A bias [rows, cols] of F32/BF16/F16 with data.
Status check_bias(const char* name, const DenseView& b, int64_t rows, int64_t cols);
// x [rows, cols] in `dtype`.
Status check_in(const char* name, const DenseView& v, DType dtype, int64_t rows, int64_t cols);
Status check_out(const char* name, const DenseMutView& v, DType dtype, int64_t rows,
                 int64_t cols);

// What can be computed at all (cpu-reference's can_implement, which implements all of it): a
// Problem that passes validate(), a linear or MoE op, and under an MX activation key K (linear)
// or H and I (MoE) multiples of 32.
// `who` names the backend in the refusal of quantize problems (cpu and cpu-reference share it).
Verdict computable(const Problem& p, std::string_view who = "cpu-reference");
// p.op == op and computable(p), as a Status.
Status check_problem(const Problem& p, Op op);

// The weights of a linear / MoE problem: check_problem, then every view's format, shape and
// dtype, the biases the problem asks for (and no others), fp8-static-tensor input scales.
Status check_linear_weights(const Problem& p, const LinearWeights& w);
Status check_moe_weights(const Problem& p, const MoEWeights& w);

// The per-call views of a linear / MoE problem (M = p.m): x [M, K] (MoE: [M, H]) in
// act_input_dtype(p.act), y [M, N] (MoE: [M, H]) in p.out; MoE routing: router_logits [M, E]
// F32/BF16/F16, correction_bias [1, E] F32 exactly when the routing is sigmoid-grouped-topk with
// p.moe.correction_bias, an expert map exactly when p.moe.expert_map. Used by Backend::run_*.
Status check_linear_call(const Problem& p, const DenseView& x, const DenseMutView& y);
Status check_moe_call(const Problem& p, const DenseView& x, const MoERouting& r,
                      const DenseMutView& y);

// The structural rules of an MoE problem's routing parameters (Problem::validate's, which every
// public entry runs): 1 <= topk <= experts and, for sigmoid-grouped-topk, n_group dividing
// experts, 1 <= topk_group <= n_group and topk within the kept groups' experts. "" when they
// hold, else the rule that fails with the values. The one definition of these rules: the GPU
// routing launcher (cuda::moe_route, called directly by tests) reports the same text.
std::string moe_routing_error(const MoEParams& q);

// a and b describe the same layer: every field equal except M (the tokens of one call).
bool same_layer(const Problem& a, const Problem& b);

}  // namespace mxq::contract
