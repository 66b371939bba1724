// MoE routing; the semantics are spelled out in routing.h.
#include "cpu/common/routing.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "contract/weight_checks.h"
#include "cpu/common/act_quant.h"

namespace mxq::cpu {

namespace {

// Indices of the k best scores among candidates (allowed[i]), best first, ties to the lower
// index. A plain selection loop: O(k * n), and no sort comparator that NaN could break.
std::vector<int64_t> top_k(const std::vector<double>& score, const std::vector<bool>& allowed,
                           int64_t k) {
  std::vector<bool> taken(score.size(), false);
  std::vector<int64_t> best;
  for (int64_t j = 0; j < k; ++j) {
    int64_t b = -1;
    for (int64_t i = 0; i < int64_t(score.size()); ++i) {
      if (!allowed[size_t(i)] || taken[size_t(i)]) continue;
      if (b < 0 || score[size_t(i)] > score[size_t(b)]) b = i;  // strict: ties keep the lower
    }
    if (b < 0) break;
    taken[size_t(b)] = true;
    best.push_back(b);
  }
  return best;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

}  // namespace

void route_token(const MoEParams& p, const double* logits, const double* correction_bias,
                 int32_t* ids, float* weights) {
  const int64_t e_count = p.experts, k = p.topk;
  const std::vector<double> l(logits, logits + e_count);
  std::vector<bool> allowed(size_t(e_count), true);
  std::vector<int64_t> chosen;
  std::vector<double> w(size_t(k), 0.0);

  switch (p.routing) {
    case Routing::kSoftmaxTopK: {
      double mx = -INFINITY, sum = 0.0;
      for (double v : l) mx = std::fmax(mx, v);
      for (double v : l) sum += std::exp(v - mx);
      chosen = top_k(l, allowed, k);
      double chosen_sum = 0.0;
      for (size_t j = 0; j < chosen.size(); ++j) {
        w[j] = std::exp(l[size_t(chosen[j])] - mx) / sum;
        chosen_sum += w[j];
      }
      if (p.renormalize)
        for (double& v : w) v /= chosen_sum;
      break;
    }
    case Routing::kTopKSoftmax: {
      chosen = top_k(l, allowed, k);
      const double mx = l[size_t(chosen[0])];  // the largest chosen logit
      double sum = 0.0;
      for (size_t j = 0; j < chosen.size(); ++j) sum += (w[j] = std::exp(l[size_t(chosen[j])] - mx));
      for (double& v : w) v /= sum;
      break;
    }
    case Routing::kSigmoidGroupedTopK: {
      std::vector<double> s(static_cast<size_t>(e_count)), c(static_cast<size_t>(e_count));
      for (int64_t e = 0; e < e_count; ++e) {
        s[size_t(e)] = sigmoid(l[size_t(e)]);
        c[size_t(e)] = s[size_t(e)] + (correction_bias ? correction_bias[e] : 0.0);
      }
      const int64_t per_group = e_count / p.n_group;
      std::vector<double> group_score(size_t(p.n_group));
      for (int64_t g = 0; g < p.n_group; ++g) {
        std::vector<bool> in_group(size_t(e_count), false);
        for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) in_group[size_t(e)] = true;
        double sum = 0.0;
        for (int64_t e : top_k(c, in_group, 2)) sum += c[size_t(e)];
        group_score[size_t(g)] = sum;
      }
      std::fill(allowed.begin(), allowed.end(), false);
      for (int64_t g : top_k(group_score, std::vector<bool>(size_t(p.n_group), true), p.topk_group))
        for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) allowed[size_t(e)] = true;
      chosen = top_k(c, allowed, k);
      double sum = 0.0;
      for (size_t j = 0; j < chosen.size(); ++j) sum += (w[j] = s[size_t(chosen[j])]);
      for (double& v : w) v = (p.renormalize ? v / sum : v) * double(p.routed_scaling);
      break;
    }
  }
  for (int64_t j = 0; j < k; ++j) {
    // validate() guarantees k candidates; the fallbacks only keep a broken caller memory-safe.
    ids[j] = j < int64_t(chosen.size()) ? int32_t(chosen[size_t(j)]) : 0;
    weights[j] = j < int64_t(chosen.size()) ? float(w[size_t(j)]) : 0.0f;
  }
}

Status route(const MoEParams& p, const DenseView& logits, const DenseView& correction_bias,
             TopK& out) {
  // Behind the backends these never fail (the entry, Backend::run_moe, checked the same:
  // Problem::validate, contract::check_moe_call); route is also called directly (its tests
  // assert these errors). The routing rules are the contract's one definition.
  const std::string where = std::string("routing ") + routing_name(p.routing) + ": ";
  if (const std::string why = contract::moe_routing_error(p); !why.empty())
    return invalid_argument(where + why);
  if (logits.data == nullptr || logits.cols != p.experts || logits.rows < 0)
    return invalid_argument(where + "router logits must be [M, " + std::to_string(p.experts) +
                            "], got [" + std::to_string(logits.rows) + ", " +
                            std::to_string(logits.cols) + "]" +
                            (logits.data == nullptr ? " (null)" : ""));
  const bool has_bias = correction_bias.data != nullptr;
  const bool want_bias = p.routing == Routing::kSigmoidGroupedTopK && p.correction_bias;
  if (has_bias != want_bias)
    return invalid_argument(where + (want_bias ? "the problem says a correction bias is given, "
                                                 "but none was passed"
                                               : "a correction bias was passed, but the problem "
                                                 "does not use one"));
  if (has_bias && correction_bias.rows * correction_bias.cols != p.experts)
    return invalid_argument(where + "correction bias must be [1, " + std::to_string(p.experts) +
                            "], got [" + std::to_string(correction_bias.rows) + ", " +
                            std::to_string(correction_bias.cols) + "]");

  std::vector<double> bias;
  if (has_bias)
    for (int64_t e = 0; e < p.experts; ++e)
      bias.push_back(double(load_f32(correction_bias.data, correction_bias.dtype, e)));
  out.tokens = logits.rows;
  out.k = p.topk;
  out.ids.assign(size_t(out.tokens * out.k), 0);
  out.weights.assign(size_t(out.tokens * out.k), 0.0f);
  std::vector<double> row(size_t(p.experts));
  for (int64_t t = 0; t < logits.rows; ++t) {
    for (int64_t e = 0; e < p.experts; ++e)
      row[size_t(e)] = double(load_f32(logits.data, logits.dtype, t * p.experts + e));
    route_token(p, row.data(), has_bias ? bias.data() : nullptr, out.ids.data() + t * out.k,
                out.weights.data() + t * out.k);
  }
  return Status::Ok();
}

}  // namespace mxq::cpu
