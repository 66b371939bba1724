#include "mxq/layers.h"

#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "io/json_fields.h"
#include "mxq/numerics.h"

namespace mxq {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

StatusOr<DenseView> dense(const io::Checkpoint& ck, const std::string& name, int64_t rows,
                          int64_t cols) {
  const io::Checkpoint::Entry* e = ck.find(name);
  if (e == nullptr) return Status(StatusCode::kNotFound, "tensor '" + name + "' is missing");
  DType d;
  switch (e->info->dtype) {
    case io::StDType::kF32: d = DType::kF32; break;
    case io::StDType::kBF16: d = DType::kBF16; break;
    case io::StDType::kF16: d = DType::kF16; break;
    default:
      return invalid_argument("tensor '" + name + "' has dtype " + io::st_dtype_name(e->info->dtype) +
                              ", expected F32, BF16 or F16");
  }
  if (e->info->numel() != rows * cols)
    return invalid_argument("tensor '" + name + "' has " + std::to_string(e->info->numel()) +
                            " elements, expected " + std::to_string(rows) + " x " +
                            std::to_string(cols));
  return DenseView{e->bytes().data(), d, rows, cols};
}

MXWeightView view(const io::MXWeight& w) {
  return {w.elem, w.batch(), w.n(), w.k(), w.packed.data(), w.scales.data()};
}

float load(const DenseView& v, int64_t i) { return num::load_dense(v.data, v.dtype, i); }

// THE per-expert name table. An MX weight whose module is <block>.<experts>.<e>.<leaf> (e a
// decimal expert index) is one expert's part of the MoE layer <block>:
//   gate_proj / up_proj / down_proj   compressed-tensors, llm-compressor, Quark, ModelOpt,
//                                     DeepSeek, Qwen-MoE (<block> = ...mlp)
//   w1 / w3 / w2                      Mixtral (<block> = ...block_sparse_moe), DeepSeek V4
//   gate_up_proj / down_proj          fused per-expert gate/up (Quark gpt-oss: interleaved rows
//                                     gate0, up0, ...; chunked for other model types unless the
//                                     format recorded a layout)
// Shared experts (<block>.shared_experts.gate_proj, <block>.shared_expert.up_proj) carry no
// expert index and stay linear layers.
enum Role : int { kGate = 0, kUp = 1, kDown = 2, kFused = 3 };
struct ExpertLeaf {
  std::string_view leaf;
  Role role;
};
constexpr std::string_view kExpertsDir = ".experts.";
constexpr ExpertLeaf kExpertLeaves[] = {
    {"gate_proj", kGate}, {"up_proj", kUp},  {"down_proj", kDown}, {"w1", kGate},
    {"w3", kUp},          {"w2", kDown},     {"gate_up_proj", kFused},
};
constexpr const char* kRoleName[] = {"gate", "up", "down", "gate_up"};
// Router tensors tried for a block, in order.
constexpr std::array<std::string_view, 2> kRouters = {".gate", ".router"};

struct ExpertName {
  std::string block;
  int64_t expert = -1;
  Role role = kGate;
  std::string_view leaf;
};

// Parses <block>.experts.<e>.<leaf>; false when the module is not a per-expert tensor.
bool parse_expert(const std::string& module, ExpertName* out) {
  const size_t dot = module.rfind('.');
  if (dot == std::string::npos) return false;
  const std::string leaf = module.substr(dot + 1);
  const ExpertLeaf* hit = nullptr;
  for (const auto& l : kExpertLeaves)
    if (leaf == l.leaf) hit = &l;
  if (hit == nullptr) return false;
  const size_t idx_dot = module.rfind('.', dot - 1);
  if (idx_dot == std::string::npos || idx_dot + 1 == dot) return false;
  const std::string idx = module.substr(idx_dot + 1, dot - idx_dot - 1);
  if (idx.size() > 9 || idx.find_first_not_of("0123456789") != std::string::npos) return false;
  if (idx_dot + 1 < kExpertsDir.size() ||
      module.compare(idx_dot + 1 - kExpertsDir.size(), kExpertsDir.size(), kExpertsDir) != 0)
    return false;
  out->block = module.substr(0, idx_dot + 1 - kExpertsDir.size());
  out->expert = std::stoll(idx);
  out->role = hit->role;
  out->leaf = hit->leaf;
  return true;
}

}  // namespace

// Per-expert parts of one MoE layer and the stacked records built from them.
struct AssembledExperts {
  struct Part {
    std::string what;                           // "<block>.experts.*.gate_proj"
    std::vector<const io::MXWeight*> experts;   // by expert index
    io::MXWeight stacked;                       // [E, N, K]
    std::vector<uint8_t> packed_buf, scales_buf;  // when the experts are not back to back
    bool zero_copy_packed = false, zero_copy_scales = false;
    std::vector<uint8_t> bias_buf;              // stacked biases [E, N]
    DType bias_dtype = DType::kF32;
  };
  std::vector<Part> parts;  // w13 (or w1, w3), w2: in the order LayerSpec.w, w3, w2 use
  std::once_flag once;
  Status filled;
};

namespace {

// Expert e's slices lie back to back in memory: the stack is a view of the files.
bool back_to_back(const std::vector<const io::MXWeight*>& ex, bool scales) {
  const auto sp = [&](size_t e) { return scales ? ex[e]->scales : ex[e]->packed; };
  for (size_t e = 1; e < ex.size(); ++e)
    if (sp(e).data() != sp(0).data() + e * sp(0).size()) return false;
  return true;
}

// Builds part `p` of block `block` from its experts; checks every expert agrees with expert 0.
Status make_part(const std::string& block, AssembledExperts::Part& p) {
  const io::MXWeight& w0 = *p.experts[0];
  for (size_t e = 0; e < p.experts.size(); ++e) {
    const io::MXWeight& w = *p.experts[e];
    auto rule = [&](const std::string& what, const std::string& got, const std::string& want) {
      return invalid_argument("MoE block '" + block + "': expert " + std::to_string(e) + " '" +
                              w.module + "' has " + what + " " + got + ", expected " + want +
                              " like expert 0 '" + w0.module +
                              "' (every expert of a layer must match)");
    };
    auto shape_str = [](const std::vector<int64_t>& s) {
      std::string o = "[";
      for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
      return o + "]";
    };
    if (w.shape.size() != 2)
      return invalid_argument("MoE block '" + block + "': per-expert tensor '" + w.module +
                              "' has shape " + shape_str(w.shape) + ", expected 2-D [N, K]");
    if (w.shape != w0.shape) return rule("shape", shape_str(w.shape), shape_str(w0.shape));
    if (w.elem != w0.elem) return rule("format", mx_format_name(w.elem), mx_format_name(w0.elem));
    if (w.packed.size() != w0.packed.size() || w.scales.size() != w0.scales.size())
      return rule("byte size", std::to_string(w.bytes()), std::to_string(w0.bytes()));
    if (w.bias_name.empty() != w0.bias_name.empty())
      return rule("bias", w.bias_name.empty() ? "none" : w.bias_name,
                  w0.bias_name.empty() ? "none" : "one");
    if (w.input_scale_name.empty() != w0.input_scale_name.empty())
      return rule("input_scale", w.input_scale_name.empty() ? "none" : w.input_scale_name,
                  w0.input_scale_name.empty() ? "none" : "one");
    if (w.gate_up != w0.gate_up)
      return rule("gate/up layout", io::gate_up_layout_name(w.gate_up),
                  io::gate_up_layout_name(w0.gate_up));
  }
  const int64_t e = int64_t(p.experts.size());
  p.stacked.module = p.what;
  p.stacked.elem = w0.elem;
  p.stacked.shape = {e, w0.n(), w0.k()};
  p.stacked.packed_name = p.what + " (" + w0.packed_name + " x " + std::to_string(e) + ")";
  p.stacked.scale_name = p.what + " (" + w0.scale_name + " x " + std::to_string(e) + ")";
  p.stacked.bias_name = w0.bias_name.empty() ? "" : p.what + ".bias";
  p.stacked.input_scale_name = w0.input_scale_name;
  p.stacked.gate_up = w0.gate_up;
  p.zero_copy_packed = back_to_back(p.experts, false);
  p.zero_copy_scales = back_to_back(p.experts, true);
  if (p.zero_copy_packed)
    p.stacked.packed = {w0.packed.data(), w0.packed.size() * size_t(e)};
  if (p.zero_copy_scales)
    p.stacked.scales = {w0.scales.data(), w0.scales.size() * size_t(e)};
  return Status();
}

// Copies the parts that are not views, expert by expert, and stacks the biases.
Status fill(const io::Checkpoint& ck, const std::string& block, AssembledExperts& a) {
  for (auto& p : a.parts) {
    const size_t e = p.experts.size();
    if (!p.zero_copy_packed) {
      const size_t n = p.experts[0]->packed.size();
      p.packed_buf.resize(n * e);
      for (size_t i = 0; i < e; ++i)
        std::memcpy(p.packed_buf.data() + i * n, p.experts[i]->packed.data(), n);
      p.stacked.packed = p.packed_buf;
    }
    if (!p.zero_copy_scales) {
      const size_t n = p.experts[0]->scales.size();
      p.scales_buf.resize(n * e);
      for (size_t i = 0; i < e; ++i)
        std::memcpy(p.scales_buf.data() + i * n, p.experts[i]->scales.data(), n);
      p.stacked.scales = p.scales_buf;
    }
    if (p.stacked.bias_name.empty()) continue;
    const int64_t rows = p.experts[0]->n();
    for (size_t i = 0; i < e; ++i) {
      auto b = dense(ck, p.experts[i]->bias_name, 1, rows);
      if (!b.ok()) return Status(b.status().code(), "MoE block '" + block + "': " + b.status().message());
      if (i == 0) {
        p.bias_dtype = b.value().dtype;
        p.bias_buf.resize(size_t(rows) * (p.bias_dtype == DType::kF32 ? size_t{4} : size_t{2}) * e);
      } else if (b.value().dtype != p.bias_dtype) {
        return invalid_argument("MoE block '" + block + "': bias '" + p.experts[i]->bias_name +
                                "' has dtype " + dtype_name(b.value().dtype) + ", expected " +
                                dtype_name(p.bias_dtype) + " like expert 0's");
      }
      const size_t nb = size_t(rows) * (p.bias_dtype == DType::kF32 ? size_t{4} : size_t{2});
      std::memcpy(p.bias_buf.data() + i * nb, b.value().data, nb);
    }
  }
  return Status();
}

// The experts count the config states, 0 when it gives none.
int64_t config_experts(const nlohmann::json& c) {
  for (const char* k : {"num_experts", "n_routed_experts", "num_local_experts"})
    if (const int64_t e = io::field_or(c, k, int64_t{0}); e != 0) return e;
  return 0;
}

// MoE routing and activation from the config.
Status configure_moe(const nlohmann::json& config, const std::string& block, MoEParams& m,
                     bool correction_bias) {
  const bool gpt_oss = io::field_or(config, "model_type", "") == "gpt_oss";
  try {
    if (gpt_oss) {
      m.activation = MoEActivation::kSwigluOAI;
      m.routing = Routing::kTopKSoftmax;
      m.swiglu_limit = float(io::field_or(config, "swiglu_limit", 7.0));
      m.swiglu_alpha = float(io::field_or(config, "swiglu_alpha", 1.702));
      return Status();
    }
    // transformers' DeepseekV3Config writes no scoring_func (its router is sigmoid-only), so
    // a config.json saved by transformers names none: the model type implies sigmoid.
    const std::string model_type = io::field_or(config, "model_type", "");
    const bool sigmoid_type = model_type == "deepseek_v3" || model_type == "deepseek_v32";
    const std::string scoring = io::field_or(config, "scoring_func", sigmoid_type ? "sigmoid" : "softmax");
    m.renormalize = io::field_or(config, "norm_topk_prob", true);
    if (scoring == "sigmoid") {
      m.routing = Routing::kSigmoidGroupedTopK;
      m.n_group = io::field_or(config, "n_group", int64_t{1});
      m.topk_group = io::field_or(config, "topk_group", int64_t{1});
      m.routed_scaling = float(io::field_or(config, "routed_scaling_factor", 1.0));
      m.correction_bias = correction_bias;
      if (m.n_group < 1 || m.experts % m.n_group != 0 || m.topk_group < 1 ||
          m.topk_group > m.n_group)
        return invalid_argument("MoE block '" + block + "': config.json n_group " +
                                std::to_string(m.n_group) + " / topk_group " +
                                std::to_string(m.topk_group) + " do not divide " +
                                std::to_string(m.experts) + " experts");
    } else if (scoring != "softmax") {
      return Status(StatusCode::kUnimplemented, "MoE block '" + block + "': config.json scoring_func '" +
                                                   scoring + "' (softmax and sigmoid are implemented)");
    }
  } catch (const io::ConfigFieldError& e) {
    return Status(StatusCode::kDataLoss, "config.json: MoE routing parameters: " + std::string(e.what()));
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument("config.json: MoE routing parameters: " + std::string(e.what()));
  }
  return Status();
}

// The checkpoint's activation scheme as the activation key its layers run with.
ActKey default_act(io::ActScheme a) {
  switch (a) {
    case io::ActScheme::kMxfp4: return ActKey::kMXFP4Dynamic;
    case io::ActScheme::kMxfp8: return ActKey::kMXFP8Dynamic;
    case io::ActScheme::kFp8Static: return ActKey::kFP8StaticTensor;
    case io::ActScheme::kFp8Dynamic: return ActKey::kFP8DynamicToken;
    case io::ActScheme::kFp8DynamicTensor: return ActKey::kFP8DynamicTensor;
    case io::ActScheme::kFp8DynamicGroup128: return ActKey::kFP8DynamicGroup128;
    case io::ActScheme::kMxfp6E2M3: return ActKey::kMXFP6E2M3Dynamic;
    case io::ActScheme::kMxfp6E3M2: return ActKey::kMXFP6E3M2Dynamic;
    case io::ActScheme::kNone: break;
  }
  return ActKey::kBF16;
}

// A static activation scale (F32, BF16 or F16 scalar; the conversion to F32 is exact).
StatusOr<float> scale_value(const io::Checkpoint& ck, const std::string& name) {
  const io::Checkpoint::Entry* e = ck.find(name);
  if (e == nullptr) return Status(StatusCode::kNotFound, "static activation scale '" + name + "' is missing");
  auto v = dense(ck, name, 1, 1);
  if (!v.ok()) return v.status();
  const float f = load(v.value(), 0);
  if (!(f > 0.0f) || !std::isfinite(f))
    return invalid_argument("static activation scale '" + name + "' is " + std::to_string(f) +
                            ", expected a finite value > 0");
  return f;
}

// Router tensors of `block`; the error lists every name tried.
Status find_router(const io::Checkpoint& ck, const std::string& block, LayerSpec& l) {
  for (std::string_view r : kRouters) {
    const std::string base = block + std::string(r);
    if (ck.find(base + ".weight") == nullptr) continue;
    l.router_weight = base + ".weight";
    if (ck.find(base + ".bias") != nullptr) l.router_bias = base + ".bias";
    if (ck.find(base + ".e_score_correction_bias") != nullptr)
      l.correction_bias = base + ".e_score_correction_bias";
    return Status();
  }
  std::string tried;
  for (std::string_view r : kRouters) tried += (tried.empty() ? "" : ", ") + block + std::string(r) + ".weight";
  return Status(StatusCode::kNotFound, "MoE block '" + block + "': no router tensor (tried " + tried + ")");
}

// fp8-static-tensor needs the weight's static input scale.
Status need_scale(const LayerSpec& l, const io::MXWeight& w) {
  if (l.problem.act == ActKey::kFP8StaticTensor && w.input_scale_name.empty())
    return invalid_argument("layer '" + l.name + "': activation key fp8-static-tensor (the " +
                            "checkpoint's static FP8 scheme) but weight '" + w.module +
                            "' has no input_scale tensor; choose another activation key " +
                            "(mxq explain --act, Python act=)");
  return Status();
}

}  // namespace

static StatusOr<std::vector<LayerSpec>> model_layers_unguarded(const io::Checkpoint& ck,
                                                        const io::ModelInfo& info, int64_t tokens) {
  nlohmann::json config = nlohmann::json::object();
  if (!ck.config_json().empty()) {
    try {
      config = nlohmann::json::parse(ck.config_json());
    } catch (const nlohmann::json::exception& e) {
      return Status(StatusCode::kDataLoss, ck.root() + "/config.json: " + e.what());
    }
  }
  const bool gpt_oss = io::field_or(config, "model_type", "") == "gpt_oss";
  int64_t topk = 2;
  topk = io::field_or(config, "num_experts_per_tok", topk);  // a non-integer is an error, not 2
  // (checked where a MoE block uses it: a dense model's config may carry any value)
  auto topk_error = [&](const std::string& block) {
    return Status(StatusCode::kDataLoss, ck.root() + "/config.json: num_experts_per_tok " +
                                             std::to_string(topk) + " for MoE block '" + block +
                                             "': expected at least 1");
  };
  const int64_t cfg_experts = config_experts(config);
  const ActKey act = default_act(info.act);
  std::map<std::string, const io::MXWeight*> by_module;
  for (const auto& w : info.weights) by_module[w.module] = &w;

  // Per-expert tensors grouped by block and role (expert index -> weight).
  struct Group {
    std::array<std::map<int64_t, const io::MXWeight*>, 4> roles;
    std::array<std::string_view, 4> leaf;
  };
  std::map<std::string, Group> groups;
  std::map<std::string, size_t> first_index;  // block -> position of its first expert tensor
  for (size_t i = 0; i < info.weights.size(); ++i) {
    const io::MXWeight& w = info.weights[i];
    ExpertName en;
    if (!parse_expert(w.module, &en)) continue;
    Group& g = groups[en.block];
    first_index.emplace(en.block, i);
    if (!g.leaf[en.role].empty() && g.leaf[en.role] != en.leaf)
      return invalid_argument("MoE block '" + en.block + "': '" + w.module + "' names the " +
                              kRoleName[en.role] + " projection '" + std::string(en.leaf) +
                              "' but other experts use '" + std::string(g.leaf[en.role]) +
                              "' (one naming per layer)");
    g.leaf[en.role] = en.leaf;
    auto [it, fresh] = g.roles[en.role].emplace(en.expert, &w);
    if (!fresh)
      return invalid_argument("MoE block '" + en.block + "': expert " + std::to_string(en.expert) +
                              " has two " + kRoleName[en.role] + " tensors ('" + it->second->module +
                              "' and '" + w.module + "')");
  }

  auto assemble = [&](const std::string& block, const Group& g) -> StatusOr<LayerSpec> {
    const bool fused = !g.roles[kFused].empty();
    if (fused && (!g.roles[kGate].empty() || !g.roles[kUp].empty()))
      return invalid_argument("MoE block '" + block + "': experts have both a fused gate_up_proj ('" +
                              g.roles[kFused].begin()->second->module + "') and separate gate/up "
                              "tensors ('" + (g.roles[kGate].empty() ? g.roles[kUp] : g.roles[kGate]).begin()->second->module +
                              "')");
    std::vector<Role> need = fused ? std::vector<Role>{kFused, kDown}
                                   : std::vector<Role>{kGate, kUp, kDown};
    // The expert count: the largest set (a missing expert in another set is reported by index).
    int64_t count = 0;
    for (Role r : need)
      if (!g.roles[r].empty()) count = std::max(count, g.roles[r].rbegin()->first + 1);
    if (cfg_experts > 0 && count != cfg_experts)
      return invalid_argument("MoE block '" + block + "': the checkpoint has experts 0.." +
                              std::to_string(count - 1) + " (" + std::to_string(count) +
                              ") but config.json says " + std::to_string(cfg_experts) + " experts");
    auto a = std::make_shared<AssembledExperts>();
    for (Role r : need) {
      const std::string what = block + ".experts.*." +
                               std::string(g.leaf[r].empty() ? kExpertLeaves[r == kFused ? 6 : r].leaf : g.leaf[r]);
      AssembledExperts::Part p;
      p.what = what;
      for (int64_t e = 0; e < count; ++e) {
        const auto it = g.roles[r].find(e);
        if (it == g.roles[r].end())
          return Status(StatusCode::kNotFound, "MoE block '" + block + "': expert " + std::to_string(e) +
                                                   " of " + std::to_string(count) + " has no " +
                                                   kRoleName[r] + " tensor (" + what + ")");
        p.experts.push_back(it->second);
      }
      MXQ_RETURN_IF_ERROR(make_part(block, p));
      a->parts.push_back(std::move(p));
    }
    const io::MXWeight& gu = a->parts[0].stacked;
    const io::MXWeight& dn = a->parts.back().stacked;
    for (const auto& p : a->parts)
      if (p.stacked.elem != gu.elem)
        return invalid_argument("MoE block '" + block + "': '" + p.what + "' is " + mx_format_name(p.stacked.elem) +
                                " but '" + gu.module + "' is " + mx_format_name(gu.elem) +
                                " (gate/up and down must share one format)");
    const int64_t hidden = gu.k(), inter = fused ? gu.n() / 2 : gu.n();
    if (fused && gu.n() % 2 != 0)
      return invalid_argument("MoE block '" + block + "': fused '" + gu.module + "' has " +
                              std::to_string(gu.n()) + " rows, expected 2 x intermediate (even)");
    if (!fused && a->parts[1].stacked.shape != gu.shape)
      return invalid_argument("MoE block '" + block + "': up '" + a->parts[1].what + "' is [" +
                              std::to_string(a->parts[1].stacked.n()) + ", " + std::to_string(a->parts[1].stacked.k()) +
                              "] per expert, expected [" + std::to_string(gu.n()) + ", " +
                              std::to_string(gu.k()) + "] like gate");
    if (dn.n() != hidden || dn.k() != inter)
      return invalid_argument("MoE block '" + block + "': down '" + dn.module + "' is [" +
                              std::to_string(dn.n()) + ", " + std::to_string(dn.k()) +
                              "] per expert, expected [" + std::to_string(hidden) + ", " +
                              std::to_string(inter) + "] (hidden x intermediate)");
    bool has_bias = !gu.bias_name.empty();
    for (const auto& p : a->parts)
      if (p.stacked.bias_name.empty() != !has_bias)
        return invalid_argument("MoE block '" + block + "': '" + p.what + "' " +
                                (has_bias ? "has no bias" : "has a bias") + " but '" + gu.module +
                                "' " + (has_bias ? "has one" : "has none") +
                                " (biases on all projections or none)");
    LayerSpec l;
    l.name = block;
    l.assembled = a;
    l.w = &a->parts[0].stacked;
    l.w2 = &a->parts.back().stacked;
    if (!fused) l.w3 = &a->parts[1].stacked;
    MXQ_RETURN_IF_ERROR(find_router(ck, block, l));
    if (topk < 1) return topk_error(block);
    Problem p = Problem::moe_problem(gu.elem, act, tokens, hidden, inter, count,
                                     std::min<int64_t>(topk, count));
    p.bias = has_bias;
    p.moe.layout = !fused ? io::GateUpLayout::kSeparate
                   : gu.gate_up != io::GateUpLayout::kNone ? gu.gate_up
                   : gpt_oss ? io::GateUpLayout::kInterleaved : io::GateUpLayout::kChunked;
    a->parts[0].stacked.gate_up = p.moe.layout;
    MXQ_RETURN_IF_ERROR(configure_moe(config, block, p.moe, !l.correction_bias.empty()));
    l.problem = p;
    return l;
  };

  std::vector<LayerSpec> out;
  for (size_t i = 0; i < info.weights.size(); ++i) {
    const io::MXWeight& w = info.weights[i];
    ExpertName en;
    if (parse_expert(w.module, &en)) {
      if (first_index.at(en.block) != i) continue;  // one layer per block, at its first tensor
      auto l = assemble(en.block, groups.at(en.block));
      if (!l.ok()) return l.status();
      out.push_back(std::move(l).value());
      continue;
    }
    if (w.shape.size() == 2) {
      LayerSpec l;
      l.name = w.module;
      l.problem = Problem::linear(w.elem, act, tokens, w.n(), w.k(), !w.bias_name.empty());
      l.w = &w;
      out.push_back(l);
      continue;
    }
    if (!ends_with(w.module, "gate_up_proj")) continue;
    const std::string experts = w.module.substr(0, w.module.size() - std::string("gate_up_proj").size());
    const auto down = by_module.find(experts + "down_proj");
    if (down == by_module.end()) continue;
    // "<block>.experts." -> block "<block>", router "<block>.router" or "<block>.gate".
    std::string block = experts.substr(0, experts.size() - 1);
    if (ends_with(block, ".experts")) block = block.substr(0, block.size() - 8);
    LayerSpec l;
    l.name = block;
    l.w = &w;
    l.w2 = down->second;
    MXQ_RETURN_IF_ERROR(find_router(ck, block, l));
    if (cfg_experts > 0 && w.batch() != cfg_experts)
      return invalid_argument("MoE block '" + block + "': '" + w.module + "' stacks " +
                              std::to_string(w.batch()) + " experts but config.json says " +
                              std::to_string(cfg_experts));
    if (topk < 1) return topk_error(block);
    Problem p = Problem::moe_problem(w.elem, act, tokens, w.k(), w.n() / 2, w.batch(),
                                     std::min<int64_t>(topk, w.batch()));
    p.bias = !w.bias_name.empty();
    if (w.gate_up == io::GateUpLayout::kNone)
      return invalid_argument("MoE block '" + block + "': '" + w.module +
                              "' has no recorded gate/up layout (chunked or interleaved)");
    p.moe.layout = w.gate_up;
    MXQ_RETURN_IF_ERROR(configure_moe(config, block, p.moe, !l.correction_bias.empty()));
    l.problem = p;
    out.push_back(l);
  }
  // The checkpoint's activation scale rule (Quark names one per spec), floor when not recorded.
  for (LayerSpec& l : out) l.problem.act_rule = info.act_scale_rule.value_or(ScaleRule::kFloor);
  return out;
}

// A config field of the wrong type (io::field_or) or a JSON shape nobody foresaw becomes a
// data-loss Status naming config.json, never an exception (the model fuzzer checks).
StatusOr<std::vector<LayerSpec>> model_layers(const io::Checkpoint& ck, const io::ModelInfo& info,
                                              int64_t tokens) {
  try {
    return model_layers_unguarded(ck, info, tokens);
  } catch (const io::ConfigFieldError& e) {
    return Status(StatusCode::kDataLoss, ck.root() + "/config.json: " + e.what());
  } catch (const nlohmann::json::exception& e) {
    return Status(StatusCode::kDataLoss, ck.root() + "/config.json: " + e.what());
  }
}

StatusOr<LinearWeights> linear_weights(const io::Checkpoint& ck, const LayerSpec& l) {
  MXQ_RETURN_IF_ERROR(need_scale(l, *l.w));
  LinearWeights lw;
  lw.w = view(*l.w);
  if (!l.w->bias_name.empty()) {
    auto b = dense(ck, l.w->bias_name, 1, l.w->n());
    if (!b.ok()) return b.status();
    lw.bias = b.value();
  }
  if (!l.w->input_scale_name.empty()) {
    auto sc = scale_value(ck, l.w->input_scale_name);
    if (!sc.ok()) return sc.status();
    lw.input_scale = sc.value();
  }
  return lw;
}

StatusOr<MoEWeights> moe_weights(const io::Checkpoint& ck, const LayerSpec& l) {
  for (const io::MXWeight* w : {l.w, l.w2, l.w3})
    if (w != nullptr) MXQ_RETURN_IF_ERROR(need_scale(l, *w));
  MoEWeights mw;
  if (l.assembled != nullptr) {
    AssembledExperts& a = *l.assembled;
    std::call_once(a.once, [&] { a.filled = fill(ck, l.name, a); });
    if (!a.filled.ok()) return a.filled;
    auto bias = [](const AssembledExperts::Part& p) {
      return p.stacked.bias_name.empty()
                 ? DenseView{}
                 : DenseView{p.bias_buf.data(), p.bias_dtype, p.stacked.batch(), p.stacked.n()};
    };
    if (l.w3 != nullptr) {
      mw.w1 = view(a.parts[0].stacked);
      mw.w3 = view(a.parts[1].stacked);
      mw.bias1 = bias(a.parts[0]);
      mw.bias3 = bias(a.parts[1]);
    } else {
      mw.w13 = view(a.parts[0].stacked);
      mw.bias13 = bias(a.parts[0]);
    }
    mw.w2 = view(a.parts.back().stacked);
    mw.bias2 = bias(a.parts.back());
    // Per-expert static scales reduce to one per GEMM: the max (MoEWeights' contract).
    float s13 = 0.0f, s2 = 0.0f;  // scales are > 0: 0 means none seen
    for (size_t i = 0; i < a.parts.size(); ++i)
      for (const io::MXWeight* w : a.parts[i].experts) {
        if (w->input_scale_name.empty()) continue;
        auto sc = scale_value(ck, w->input_scale_name);
        if (!sc.ok()) return sc.status();
        float& dst = i + 1 == a.parts.size() ? s2 : s13;
        dst = std::max(dst, sc.value());
      }
    if (s13 > 0.0f) mw.input_scale13 = s13;
    if (s2 > 0.0f) mw.input_scale2 = s2;
    return mw;
  }
  mw.w13 = view(*l.w);
  mw.w2 = view(*l.w2);
  if (!l.w->bias_name.empty()) {
    auto b = dense(ck, l.w->bias_name, l.w->batch(), l.w->n());
    if (!b.ok()) return b.status();
    mw.bias13 = b.value();
  }
  if (!l.w2->bias_name.empty()) {
    auto b = dense(ck, l.w2->bias_name, l.w2->batch(), l.w2->n());
    if (!b.ok()) return b.status();
    mw.bias2 = b.value();
  }
  for (auto [w, dst] : {std::pair{l.w, &mw.input_scale13}, std::pair{l.w2, &mw.input_scale2}}) {
    if (w->input_scale_name.empty()) continue;
    auto sc = scale_value(ck, w->input_scale_name);
    if (!sc.ok()) return sc.status();
    *dst = sc.value();
  }
  return mw;
}

StatusOr<std::vector<float>> correction_bias(const io::Checkpoint& ck, const LayerSpec& l) {
  if (l.correction_bias.empty()) return std::vector<float>{};
  // F32, BF16 or F16 (transformers saves DeepSeek-V3's bias in the model dtype): every BF16 / F16
  // value is exactly an F32, so the conversion loses nothing.
  auto b = dense(ck, l.correction_bias, 1, l.problem.moe.experts);
  if (!b.ok()) return b.status();
  std::vector<float> v(size_t(l.problem.moe.experts));
  for (int64_t e = 0; e < l.problem.moe.experts; ++e) v[size_t(e)] = load(b.value(), e);
  return v;
}

DenseView f32_view(const std::vector<float>& v) {
  return v.empty() ? DenseView{} : DenseView{v.data(), DType::kF32, 1, int64_t(v.size())};
}

StatusOr<std::vector<float>> router_logits(const io::Checkpoint& ck, const LayerSpec& l,
                                           const std::vector<uint16_t>& x) {
  const int64_t e = l.problem.moe.experts, h = l.problem.n, m = l.problem.m;
  auto w = dense(ck, l.router_weight, e, h);
  if (!w.ok()) return w.status();
  DenseView b{};
  if (!l.router_bias.empty()) {
    auto bb = dense(ck, l.router_bias, 1, e);
    if (!bb.ok()) return bb.status();
    b = bb.value();
  }
  if (int64_t(x.size()) != m * h) return invalid_argument("router_logits: x has the wrong size");
  std::vector<float> out(size_t(m * e));
  for (int64_t t = 0; t < m; ++t)
    for (int64_t j = 0; j < e; ++j) {
      double s = b.data != nullptr ? double(load(b, j)) : 0.0;
      for (int64_t i = 0; i < h; ++i)
        s += double(num::bf16_to_f32(x[size_t(t * h + i)])) * double(load(w.value(), j * h + i));
      out[size_t(t * e + j)] = float(s);
    }
  return out;
}

}  // namespace mxq
