// gpt-oss (OpenAI): quantization_config = {"quant_method": "mxfp4", "modules_to_not_convert":
// [...]}. Only the MoE experts are MXFP4; per layer L, under model.layers.L.mlp.experts.:
//
//   gate_up_proj_blocks U8 [E, 2I, H/32, 16]   gate_up_proj_scales U8 [E, 2I, H/32]
//   gate_up_proj_bias   BF16 [E, 2I]
//   down_proj_blocks    U8 [E, H, I/32, 16]    down_proj_scales    U8 [E, H, I/32]
//   down_proj_bias      BF16 [E, H]
//
// The [.., K/32, 16] blocks flatten to the canonical [.., N, K/2] rows without copying. gate/up
// rows are interleaved along 2I (gate0, up0, gate1, up1, ...). gpt-oss tooling quantizes with
// OpenAI triton_kernels' scale rule (round_up); activations stay BF16.
#include "common.h"

namespace mxq::io::formats {
namespace {

constexpr std::string_view kBlocks = "_blocks";
constexpr std::string_view kScales = "_scales";
constexpr std::string_view kBias = "_bias";

std::string strip(std::string_view s, std::string_view suffix) {
  return std::string(s.substr(0, s.size() - suffix.size()));
}

}  // namespace

StatusOr<ModelInfo> read_gpt_oss(const Checkpoint& ckpt, const json& config) {
  const std::string where = ckpt.root() + "/config.json quantization_config";
  const json* q = quantization_config(config);
  if (q == nullptr)
    return Status(StatusCode::kDataLoss, where + " is missing (gpt-oss needs quant_method "
                                                 "\"mxfp4\")");
  ModelInfo info;
  info.format = "gpt-oss";
  info.scheme = "mxfp4";
  info.act = ActScheme::kNone;
  info.scale_rule = ScaleRule::kRoundUp;
  auto ignored = string_list(*q, "modules_to_not_convert", where);
  if (!ignored.ok()) return ignored.status();
  info.ignored = std::move(ignored).value();

  for (const std::string& name : ckpt.names()) {
    if (ends_with(name, kScales)) {
      const std::string blocks = strip(name, kScales) + std::string(kBlocks);
      if (ckpt.find(blocks) == nullptr) {
        std::vector<int64_t> want = ckpt.find(name)->info->shape;
        want.push_back(16);
        return Status(StatusCode::kDataLoss,
                      "scale tensor '" + name + "' has no packed partner: expected '" + blocks +
                          "' U8 " + shape_string(want) + " (packed MXFP4 blocks)");
      }
      continue;
    }
    if (!ends_with(name, kBlocks)) continue;
    const std::string module = strip(name, kBlocks);
    const std::string scales = module + std::string(kScales);
    if (ckpt.find(scales) == nullptr) {
      const TensorInfo& bi = *ckpt.find(name)->info;
      std::vector<int64_t> want(bi.shape.begin(), bi.shape.end() - (bi.shape.empty() ? 0 : 1));
      return Status(StatusCode::kDataLoss,
                    "packed tensor '" + name + "' " + shape_string(bi.shape) +
                        " has no scale partner: expected '" + scales + "' U8 " +
                        shape_string(want) + " (E8M0 scales, one per 32-element block)");
    }
    auto w = make_weight_flatten(ckpt, module, ElemType::kE2M1, name, scales);
    if (!w.ok()) return w.status();
    MXWeight mw = std::move(w).value();
    MXQ_RETURN_IF_ERROR(attach_bias(ckpt, module + std::string(kBias), mw));
    if (ends_with(module, "gate_up_proj")) {
      if (mw.n() % 2 != 0)
        return Status(StatusCode::kDataLoss,
                      "fused gate/up tensor '" + name + "' has N = " + std::to_string(mw.n()) +
                          " rows, expected an even number (interleaved gate, up pairs)");
      mw.gate_up = GateUpLayout::kInterleaved;
    }
    info.weights.push_back(std::move(mw));
  }
  finalize(info, ckpt);
  return info;
}

}  // namespace mxq::io::formats
