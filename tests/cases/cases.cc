#include "cases.h"

#include <stdexcept>

#include "case_list.h"

namespace mxq::cases {

namespace {

std::string sanitize(std::string s) {
  for (char& c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) c = '_';
  return s;
}

std::string linear_name(const Problem& p) {
  return sanitize(std::string(mx_format_name(p.weight)) + "_" + act_key_name(p.act) + "_" +
                  dtype_name(p.out) + "_m" + std::to_string(p.m) + "_n" + std::to_string(p.n) +
                  "_k" + std::to_string(p.k) + (p.bias ? "_bias" : "") +
                  (p.act_rule != ScaleRule::kFloor ? std::string("_") + scale_rule_name(p.act_rule) : ""));
}

}  // namespace

std::vector<Case> linear_cases(Tier tier) {
  const CaseList& list = case_list();  // tests/cases/cases.json
  const QuickLinear& q = list.tests_quick_linear;
  std::vector<Case> out;
  auto add = [&](Problem p) { out.push_back({linear_name(p), p}); };
  // Every weight format x activation key on one awkward shape (every_format: M 3, N 96, K 160),
  // with and without bias; output dtype follows the activations, plus F32 output once per format.
  for (ElemType w : kAllElemTypes) {
    for (ActKey a : kAllActKeys)
      for (bool bias : {false, true})
        add(Problem::linear(w, a, q.every_format.m, q.every_format.n, q.every_format.k, bias));
    Problem f32 = Problem::linear(w, ActKey::kBF16, q.f32_out.m, q.f32_out.n, q.f32_out.k, true);
    f32.out = DType::kF32;
    add(f32);
  }
  // The MX keys with a checkpoint's scale rule (Quark: even), on the two GPU weight formats.
  for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
    for (ActKey a : kAllActKeys)
      if (act_key_mx_elem(a)) {
        Problem p = Problem::linear(w, a, q.act_rule.m, q.act_rule.n, q.act_rule.k, true);
        p.act_rule = ScaleRule::kEven;
        add(p);
      }
  // Awkward shapes for the two formats that matter most today, BF16 and FP16 activations
  // (bias at M 17).
  for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
    for (ActKey a : {ActKey::kBF16, ActKey::kFP16})
      for (int64_t m : q.awkward_ms)
        for (auto [n, k] : q.awkward_nk) add(Problem::linear(w, a, m, n, k, m == 17));
  if (tier == Tier::kFull) {
    // Real model shapes (cases.json: tests_full_linear).
    for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
      for (int64_t m : list.tests_full_linear.ms)
        for (const Shape& s : list.tests_full_linear.shapes)
          add(Problem::linear(w, ActKey::kBF16, m, s.n, s.k));
  }
  return out;
}

Problem moe_problem(const MoELayer& l, ElemType w, ActKey a, int64_t m) {
  Problem p = Problem::moe_problem(w, a, m, l.h, l.i, l.e, l.k);
  p.bias = l.bias;
  p.moe.layout = l.layout;
  p.moe.activation = l.act;
  p.moe.routing = l.routing;
  p.moe.n_group = l.n_group;
  p.moe.topk_group = l.topk_group;
  p.moe.correction_bias = l.correction_bias;
  p.moe.routed_scaling = l.routed_scaling;
  return p;
}

std::vector<Case> moe_cases(Tier tier) {
  const CaseList& list = case_list();  // tests/cases/cases.json
  std::vector<Case> out;
  auto add = [&](const std::string& name, Problem p) { out.push_back({sanitize(name), p}); };
  auto quick = [&](const std::string& stem) -> const MoESweep& {
    for (const MoESweep& s : list.tests_quick_moe)
      if (s.name == stem) return s;
    throw std::runtime_error("tests/cases/cases.json: sets.tests_quick_moe has no \"" + stem +
                             "\"");
  };
  // gpt-oss style: interleaved gate/up with biases, swigluoai, top-k then softmax.
  for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
    for (int64_t m : quick("gptoss").ms)
      add(std::string("gptoss_") + mx_format_name(w) + "_m" + std::to_string(m),
          moe_problem(quick("gptoss").layer, w, ActKey::kBF16, m));
  // Qwen style: chunked, silu, softmax-topk renormalised; every activation key.
  const MoESweep& qwen = quick("qwen");
  for (ActKey a : kAllActKeys)
    for (int64_t m : qwen.ms)
      add(std::string("qwen_mxfp4_") + act_key_name(a),
          moe_problem(qwen.layer, ElemType::kE2M1, a, m));
  // An MX key with the even scale rule (Quark W4A4 MoE).
  for (int64_t m : qwen.ms) {
    Problem p = moe_problem(qwen.layer, ElemType::kE2M1, ActKey::kMXFP4Dynamic, m);
    p.act_rule = ScaleRule::kEven;
    add("qwen_mxfp4_mxfp4_dynamic_even", p);
  }
  // DeepSeek style: separate w1/w3, sigmoid + correction bias, grouped top-k, scaling.
  for (int64_t m : quick("deepseek").ms) {
    Problem p = moe_problem(quick("deepseek").layer, ElemType::kE2M1, ActKey::kBF16, m);
    add("deepseek_mxfp4_grouped", p);
    p.moe.expert_map = true;  // expert parallelism: half the experts are local
    add("deepseek_mxfp4_grouped_expert_map", p);
  }
  // Every weight format once (chunked, silu), one token: the decode shape.
  for (ElemType w : kAllElemTypes)
    for (int64_t m : quick("decode").ms)
      add(std::string("decode_") + mx_format_name(w),
          moe_problem(quick("decode").layer, w, ActKey::kBF16, m));
  if (tier == Tier::kFull)
    for (const MoESweep& s : list.tests_full_moe)
      for (int64_t m : s.ms)
        add(s.name + "_m" + std::to_string(m), moe_problem(s.layer, ElemType::kE2M1, ActKey::kBF16, m));
  return out;
}

Verdict runs_case(const Backend& b, const Device& d, const Problem& p) {
  if (Verdict v = b.supports(d); !v) return v;
  return b.check_problem(p);
}

std::vector<BackendTally> tally(const std::vector<const Backend*>& backends, const Device& d,
                                const std::vector<Case>& cases) {
  std::vector<BackendTally> out;
  for (const Backend* b : backends) {
    BackendTally t;
    t.name = std::string(b->name());
    t.reference = b->is_reference();
    t.supported = b->supports(d);
    if (t.supported)
      for (const Case& c : cases) {
        if (Verdict v = runs_case(*b, d, c.problem))
          ++t.ran;
        else
          ++t.refused[v.reason];
      }
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<std::string> coverage_failures(const std::vector<BackendTally>& tallies) {
  std::vector<std::string> out;
  for (const BackendTally& t : tallies) {
    if (t.reference || !t.supported || t.ran > 0) continue;
    std::string why;
    for (const auto& [reason, n] : t.refused)
      why += (why.empty() ? "" : "; ") + std::to_string(n) + " x " + reason;
    out.push_back(t.name + " supports this device but runs none of the " +
                  std::to_string(t.ran + [&] {
                    int n = 0;
                    for (const auto& r : t.refused) n += r.second;
                    return n;
                  }()) +
                  " shared cases (refused: " + (why.empty() ? "none" : why) + ")");
  }
  return out;
}

std::string format_tally(const std::vector<BackendTally>& tallies) {
  std::string s;
  for (const BackendTally& t : tallies) {
    s += t.name + (t.reference ? " (reference)" : "") + ": ";
    if (!t.supported) {
      s += "not supported here: " + t.supported.reason + "\n";
      continue;
    }
    int refused = 0;
    for (const auto& r : t.refused) refused += r.second;
    s += std::to_string(t.ran) + " ran, " + std::to_string(refused) + " refused\n";
    for (const auto& [reason, n] : t.refused)
      s += "    " + std::to_string(n) + " x " + reason + "\n";
  }
  return s;
}

}  // namespace mxq::cases
