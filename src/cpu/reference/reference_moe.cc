// cpu-reference MoE: routing, gate/up, activation, intermediate rounding + act quantization,
// down, weighted combine. The semantics (and why) are in reference_backend.h.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/common/act_quant.h"
#include "cpu/common/routing.h"
#include "cpu/reference/reference_backend.h"
#include "cpu/reference/reference_util.h"

namespace mxq::cpu {

namespace {

using io::GateUpLayout;

// Where gate (or up) row i comes from: a weight row and the matching bias element.
struct RowSource {
  const MXWeightView* w;
  int64_t row;
  const DenseView* bias;  // [E_local, cols]
  int64_t bias_col;
};

RowSource gate_row(const MoEWeights& w, GateUpLayout layout, int64_t i) {
  switch (layout) {
    case GateUpLayout::kInterleaved: return {&w.w13, 2 * i, &w.bias13, 2 * i};
    case GateUpLayout::kSeparate: return {&w.w1, i, &w.bias1, i};
    default: return {&w.w13, i, &w.bias13, i};  // chunked
  }
}

RowSource up_row(const MoEWeights& w, GateUpLayout layout, int64_t inter, int64_t i) {
  switch (layout) {
    case GateUpLayout::kInterleaved: return {&w.w13, 2 * i + 1, &w.bias13, 2 * i + 1};
    case GateUpLayout::kSeparate: return {&w.w3, i, &w.bias3, i};
    default: return {&w.w13, inter + i, &w.bias13, inter + i};  // chunked
  }
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

double activation(const MoEParams& p, double g, double u) {
  if (p.activation == MoEActivation::kSiluAndMul) return g * sigmoid(g) * u;
  const double limit = double(p.swiglu_limit), alpha = double(p.swiglu_alpha);
  g = std::min(g, limit);
  u = std::clamp(u, -limit, limit);
  return g * sigmoid(alpha * g) * (u + 1.0);
}

// One (token, routing weight) pair routed to a local expert.
struct Pair {
  int64_t token;
  float weight;
};

}  // namespace

Status reference_moe(const Problem& p, const MoEWeights& w, const DenseView& x,
                     const MoERouting& r, const DenseMutView& y) {
  MXQ_RETURN_IF_ERROR(check_moe_weights(p, w));
  MXQ_RETURN_IF_ERROR(contract::check_moe_call(p, x, r, y));
  return ref::moe_checked(p, w, x, r, y);
}

Status ref::moe_checked(const Problem& p, const MoEWeights& w, const DenseView& x,
                        const MoERouting& r, const DenseMutView& y) {
  const MoEParams& q = p.moe;
  const int64_t m = p.m, h = p.n, inter = p.k, e_local = w.w2.batch;
  // route() checks its own arguments (it is called directly too); valid ones here.
  TopK topk;
  MXQ_RETURN_IF_ERROR(route(q, r.router_logits, r.correction_bias, topk));

  // The (token, weight) pairs of each local expert, in token order.
  std::vector<std::vector<Pair>> pairs(static_cast<size_t>(e_local));
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t j = 0; j < q.topk; ++j) {
      const int32_t e = topk.ids[size_t(t * q.topk + j)];
      const int64_t local = r.expert_map ? r.expert_map[e] : e;
      if (local < 0) continue;  // another rank's expert
      if (local >= e_local)
        return invalid_argument("moe expert_map: expert " + std::to_string(e) + " maps to local " +
                                std::to_string(local) + ", but only " + std::to_string(e_local) +
                                " local experts were prepared");
      pairs[size_t(local)].push_back({t, topk.weights[size_t(t * q.topk + j)]});
    }
  }

  std::vector<float> xq;  // [M, H]
  MXQ_RETURN_IF_ERROR(act_quantize(p.act, x, w.input_scale13, xq, p.act_rule));
  const DType inter_dtype = act_input_dtype(p.act);
  std::vector<double> acc(size_t(m * h), 0.0);  // [M, H]
  std::vector<double> wrow, wrow2;
  std::vector<uint8_t> codes;

  // Gate/up and activation of every local expert: a [np, I] per expert, rounded to the
  // activation dtype; then act-quantized: per row, or for fp8-dynamic-tensor with one scale over
  // the whole intermediate of the call (every local expert's rows together).
  std::vector<float> aall;  // [pairs, I], the experts' rows in ascending local-expert order
  std::vector<int64_t> first(size_t(e_local) + 1, 0);
  for (int64_t le = 0; le < e_local; ++le)
    first[size_t(le) + 1] = first[size_t(le)] + int64_t(pairs[size_t(le)].size());
  aall.resize(size_t(first[size_t(e_local)] * inter));
  for (int64_t le = 0; le < e_local; ++le) {
    const std::vector<Pair>& ps = pairs[size_t(le)];
    const int64_t np = int64_t(ps.size());
    if (np == 0) continue;

    // Gate/up and activation: a [np, I], rounded to the activation dtype.
    std::vector<double> gate(size_t(np * inter)), up(size_t(np * inter));
    for (int64_t i = 0; i < inter; ++i) {
      const RowSource gs = gate_row(w, q.layout, i), us = up_row(w, q.layout, inter, i);
      ref::decode_row(*gs.w, le, gs.row, wrow, codes);
      ref::decode_row(*us.w, le, us.row, wrow2, codes);
      const double gb = ref::bias_at(*gs.bias, le * gs.bias->cols + gs.bias_col);
      const double ub = ref::bias_at(*us.bias, le * us.bias->cols + us.bias_col);
      for (int64_t pi = 0; pi < np; ++pi) {
        const float* xt = xq.data() + ps[size_t(pi)].token * h;
        gate[size_t(pi * inter + i)] = ref::dot(xt, wrow.data(), h) + gb;
        up[size_t(pi * inter + i)] = ref::dot(xt, wrow2.data(), h) + ub;
      }
    }
    for (int64_t pi = 0; pi < np; ++pi) {
      float* a = aall.data() + (first[size_t(le)] + pi) * inter;
      for (int64_t i = 0; i < inter; ++i) {
        const size_t k = size_t(pi * inter + i);
        a[i] = round_to_dtype(float(activation(q, gate[k], up[k])), inter_dtype);
      }
    }
  }
  MXQ_RETURN_IF_ERROR(act_quantize_rows(p.act, aall.data(), first[size_t(e_local)], inter, inter,
                                        w.input_scale2, p.act_rule));

  for (int64_t le = 0; le < e_local; ++le) {
    const std::vector<Pair>& ps = pairs[size_t(le)];
    const int64_t np = int64_t(ps.size());
    if (np == 0) continue;
    const float* aq = aall.data() + first[size_t(le)] * inter;

    // Down and weighted combine.
    for (int64_t c = 0; c < h; ++c) {
      ref::decode_row(w.w2, le, c, wrow, codes);
      const double b = ref::bias_at(w.bias2, le * h + c);
      for (int64_t pi = 0; pi < np; ++pi) {
        const double o = ref::dot(aq + pi * inter, wrow.data(), inter) + b;
        acc[size_t(ps[size_t(pi)].token * h + c)] += double(ps[size_t(pi)].weight) * o;
      }
    }
  }

  for (int64_t i = 0; i < m * h; ++i) store_f32(y.data, y.dtype, i, float(acc[size_t(i)]));
  return Status::Ok();
}

}  // namespace mxq::cpu
