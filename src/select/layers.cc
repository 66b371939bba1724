#include "mxq/layers.h"

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

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

}  // namespace

StatusOr<std::vector<LayerSpec>> model_layers(const io::Checkpoint& ck, const io::ModelInfo& info,
                                              int64_t tokens) {
  nlohmann::json config = nlohmann::json::object();
  if (!ck.config_json().empty()) {
    try {
      config = nlohmann::json::parse(ck.config_json());
    } catch (const nlohmann::json::exception& e) {
      return Status(StatusCode::kDataLoss, ck.root() + "/config.json: " + e.what());
    }
  }
  const bool gpt_oss = config.value("model_type", "") == "gpt_oss";
  const int64_t topk = config.value("num_experts_per_tok", int64_t{2});
  std::map<std::string, const io::MXWeight*> by_module;
  for (const auto& w : info.weights) by_module[w.module] = &w;
  std::vector<LayerSpec> out;
  for (const auto& w : info.weights) {
    if (w.shape.size() == 2) {
      LayerSpec l;
      l.name = w.module;
      l.problem = Problem::linear(w.elem, ActKey::kBF16, tokens, w.n(), w.k(), !w.bias_name.empty());
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
    for (const char* r : {".router", ".gate"})
      if (ck.find(block + r + ".weight") != nullptr) {
        l.router_weight = block + r + ".weight";
        if (ck.find(block + r + ".bias") != nullptr) l.router_bias = block + r + ".bias";
        break;
      }
    if (l.router_weight.empty())
      return Status(StatusCode::kNotFound, "MoE block '" + block + "': no router tensor (tried " +
                                               block + ".router.weight, " + block + ".gate.weight)");
    Problem p = Problem::moe_problem(w.elem, ActKey::kBF16, tokens, w.k(), w.n() / 2, w.batch(),
                                     std::min<int64_t>(topk, w.batch()));
    p.bias = !w.bias_name.empty();
    if (w.gate_up == io::GateUpLayout::kNone)
      return invalid_argument("MoE block '" + block + "': '" + w.module +
                              "' has no recorded gate/up layout (chunked or interleaved)");
    p.moe.layout = w.gate_up;
    if (gpt_oss) {
      p.moe.activation = MoEActivation::kSwigluOAI;
      p.moe.routing = Routing::kTopKSoftmax;
      p.moe.swiglu_limit = float(config.value("swiglu_limit", 7.0));
    }
    l.problem = p;
    out.push_back(l);
  }
  return out;
}

StatusOr<LinearWeights> linear_weights(const io::Checkpoint& ck, const LayerSpec& l) {
  LinearWeights lw;
  lw.w = view(*l.w);
  if (!l.w->bias_name.empty()) {
    auto b = dense(ck, l.w->bias_name, 1, l.w->n());
    if (!b.ok()) return b.status();
    lw.bias = b.value();
  }
  return lw;
}

StatusOr<MoEWeights> moe_weights(const io::Checkpoint& ck, const LayerSpec& l) {
  MoEWeights mw;
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
  return mw;
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
