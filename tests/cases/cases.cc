#include "cases.h"

#include <initializer_list>

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
  std::vector<Case> out;
  auto add = [&](Problem p) { out.push_back({linear_name(p), p}); };
  // Every weight format x activation key on one awkward shape (M 3, N 96, K 160), with and
  // without bias; output dtype follows the activations, plus F32 output once per format.
  for (ElemType w : kAllElemTypes) {
    for (ActKey a : kAllActKeys)
      for (bool bias : {false, true}) add(Problem::linear(w, a, 3, 96, 160, bias));
    Problem f32 = Problem::linear(w, ActKey::kBF16, 17, 32, 96, true);
    f32.out = DType::kF32;
    add(f32);
  }
  // The MX keys with a checkpoint's scale rule (Quark: even), on the two GPU weight formats.
  for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
    for (ActKey a : kAllActKeys)
      if (act_key_mx_elem(a)) {
        Problem p = Problem::linear(w, a, 5, 64, 256, true);
        p.act_rule = ScaleRule::kEven;
        add(p);
      }
  // Awkward shapes for the two formats that matter most today, BF16 and FP16 activations.
  for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
    for (ActKey a : {ActKey::kBF16, ActKey::kFP16})
      for (int64_t m : {1, 3, 17, 118})
        for (auto [n, k] : std::initializer_list<std::pair<int64_t, int64_t>>{
                 {32, 32}, {96, 2880}, {2880, 96}, {160, 5760}})
          add(Problem::linear(w, a, m, n, k, m == 17));
  if (tier == Tier::kFull) {
    // Real model shapes (FORMATS.md / PERFORMANCE.md).
    for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
      for (int64_t m : {1, 16, 128})
        for (auto [n, k] : std::initializer_list<std::pair<int64_t, int64_t>>{
                 {5760, 2880}, {2880, 2880}, {4096, 4096}, {8192, 8192}})
          add(Problem::linear(w, ActKey::kBF16, m, n, k));
  }
  return out;
}

std::vector<Case> moe_cases(Tier tier) {
  std::vector<Case> out;
  auto add = [&](const std::string& name, Problem p) { out.push_back({sanitize(name), p}); };
  auto base = [](ElemType w, ActKey a, int64_t m, int64_t h, int64_t i, int64_t e, int64_t k) {
    return Problem::moe_problem(w, a, m, h, i, e, k);
  };
  // gpt-oss style: interleaved gate/up with biases, swigluoai, top-k then softmax.
  for (ElemType w : {ElemType::kE2M1, ElemType::kE4M3})
    for (int64_t m : {1, 5, 33}) {
      Problem p = base(w, ActKey::kBF16, m, 96, 64, 8, 4);
      p.bias = true;
      p.moe.layout = io::GateUpLayout::kInterleaved;
      p.moe.activation = MoEActivation::kSwigluOAI;
      p.moe.routing = Routing::kTopKSoftmax;
      add(std::string("gptoss_") + mx_format_name(w) + "_m" + std::to_string(m), p);
    }
  // Qwen style: chunked, silu, softmax-topk renormalised; every activation key.
  for (ActKey a : kAllActKeys) {
    Problem p = base(ElemType::kE2M1, a, 7, 64, 96, 16, 4);
    add(std::string("qwen_mxfp4_") + act_key_name(a), p);
  }
  // An MX key with the even scale rule (Quark W4A4 MoE).
  {
    Problem p = base(ElemType::kE2M1, ActKey::kMXFP4Dynamic, 7, 64, 96, 16, 4);
    p.act_rule = ScaleRule::kEven;
    add("qwen_mxfp4_mxfp4_dynamic_even", p);
  }
  // DeepSeek style: separate w1/w3, sigmoid + correction bias, grouped top-k, scaling.
  {
    Problem p = base(ElemType::kE2M1, ActKey::kBF16, 9, 64, 32, 16, 4);
    p.moe.layout = io::GateUpLayout::kSeparate;
    p.moe.routing = Routing::kSigmoidGroupedTopK;
    p.moe.n_group = 4;
    p.moe.topk_group = 2;
    p.moe.correction_bias = true;
    p.moe.routed_scaling = 2.5f;
    add("deepseek_mxfp4_grouped", p);
    p.moe.expert_map = true;  // expert parallelism: half the experts are local
    add("deepseek_mxfp4_grouped_expert_map", p);
  }
  // Every weight format once (chunked, silu), one token: the decode shape.
  for (ElemType w : kAllElemTypes)
    add(std::string("decode_") + mx_format_name(w), base(w, ActKey::kBF16, 1, 64, 64, 4, 2));
  if (tier == Tier::kFull) {
    Problem g = base(ElemType::kE2M1, ActKey::kBF16, 16, 2880, 2880, 32, 4);
    g.bias = true;
    g.moe.layout = io::GateUpLayout::kInterleaved;
    g.moe.activation = MoEActivation::kSwigluOAI;
    g.moe.routing = Routing::kTopKSoftmax;
    add("gptoss20b_layer_m16", g);
    add("qwen3_30b_layer_m16", base(ElemType::kE2M1, ActKey::kBF16, 16, 2048, 768, 128, 8));
  }
  return out;
}

}  // namespace mxq::cases
