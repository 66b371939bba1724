// DeepSeek checkpoints.
//
// V3 / R1 / V3.1 ("quant_method": "fp8", "weight_block_size": [128, 128]): <w>.weight F8_E4M3
// [N, K] with <w>.weight_scale_inv F32 [ceil(N/128), ceil(K/128)]. 128x128 blocks with FP32
// scales (power-of-two valued under "scale_fmt": "ue8m0", still 128x128 blocks) are not MX:
// reading one is reported as unimplemented, naming the tensor.
//
// V4 (provisional; public only through engine loaders): routed experts are MXFP4, e.g.
// layers.N.ffn.experts.E.w1.weight U8/I8 [N, K/2] with layers.N.ffn.experts.E.w1.scale
// F8_E8M0 [N, K/32]; w1 = gate, w3 = up, w2 = down. The scale tensor's name is resolved through
// kScaleAliases below. The element type follows from the shapes: K/2 bytes per row (U8/I8) is
// FP4; K bytes with F8_E4M3 is MXFP8.
#include <array>

#include "common.h"

namespace mxq::io::formats {
namespace {

Status bad(std::string msg) { return {StatusCode::kDataLoss, std::move(msg)}; }

// THE scale-name alias table. A packed tensor named <base><packed> (with a dtype that can hold
// quantized elements: U8, I8, F8_E4M3, F8_E5M2) has its scale looked up as <base><scale[i]>,
// in order; the first present wins, and when none is, the error lists every name tried.
//   ".scale"             DeepSeek V4 reference checkpoints (F8_E8M0).
//   ".weight_scale"      Hugging Face / compressed-tensors style re-exports.
//   ".weight_scale_inv"  the V3 name, kept by V4 re-exports; "_inv" is a historical misnomer:
//                        the tensor holds multipliers (E8M0 here, FP32 in V3 block FP8).
//   w13_ / w2_ rows      engine-fused MoE parameters (vLLM / SGLang FusedMoE): experts.w13_weight
//                        [E, 2I, K/2] is gate rows then up rows (chunked), experts.w2_weight is
//                        down; engines name their scales *_weight_scale or *_weight_scale_inv.
struct ScaleAlias {
  std::string_view packed;        // suffix of the packed tensor's name
  std::string_view module;        // what replaces it to form the module name
  std::array<std::string_view, 3> scales;  // scale-name suffixes tried in order ("" = unused)
  GateUpLayout gate_up;           // layout implied by the name (w1/w3 refined below)
};
constexpr ScaleAlias kScaleAliases[] = {
    {".weight", "", {".scale", ".weight_scale", ".weight_scale_inv"}, GateUpLayout::kNone},
    {".w13_weight", ".w13", {".w13_weight_scale", ".w13_weight_scale_inv", ""},
     GateUpLayout::kChunked},
    {".w2_weight", ".w2", {".w2_weight_scale", ".w2_weight_scale_inv", ""}, GateUpLayout::kNone},
};

bool may_hold_quantized(StDType d) {
  return d == StDType::kU8 || d == StDType::kI8 || d == StDType::kF8_E4M3 ||
         d == StDType::kF8_E5M2;
}

bool is_e8m0_dtype(StDType d) {
  return d == StDType::kU8 || d == StDType::kI8 || d == StDType::kF8_E8M0;
}

std::string last_component(const std::string& module) {
  const size_t dot = module.rfind('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// weight_block_size from the config, [128, 128] when absent.
std::array<int64_t, 2> block_size_of(const json* q) {
  std::array<int64_t, 2> bs = {128, 128};
  if (q == nullptr) return bs;
  const json* b = member(*q, "weight_block_size");
  if (b != nullptr && b->is_array() && b->size() == 2 && (*b)[0].is_number_integer() &&
      (*b)[1].is_number_integer())
    bs = {(*b)[0].get<int64_t>(), (*b)[1].get<int64_t>()};
  return bs;
}

// True when (packed, scale) is DeepSeek V3-style block FP8: FP32 scales, or scales tiling
// [N, K] in weight_block_size blocks rather than 32-element rows.
bool is_block_fp8(const TensorInfo& p, const TensorInfo& s, std::array<int64_t, 2> bs) {
  if (p.dtype != StDType::kF8_E4M3) return false;
  if (s.dtype == StDType::kF32 || s.dtype == StDType::kBF16 || s.dtype == StDType::kF16)
    return true;
  if (p.shape.size() != 2 || s.shape.size() != 2 || bs[0] <= 0 || bs[1] <= 0) return false;
  const bool block_shape = s.shape[0] == ceil_div(p.shape[0], bs[0]) &&
                           s.shape[1] == ceil_div(p.shape[1], bs[1]);
  const bool mx_shape = s.shape[0] == p.shape[0] && s.shape[1] * kBlockSize == p.shape[1];
  return block_shape && !mx_shape;
}

Status block_fp8_unimplemented(const TensorInfo& p, const TensorInfo& s,
                               std::array<int64_t, 2> bs, const json* q) {
  std::string fmt;
  if (q != nullptr)
    if (const json* f = member(*q, "scale_fmt"); f != nullptr && f->is_string())
      fmt = ", scale_fmt \"" + f->get<std::string>() + "\"";
  return unimplemented(
      "DeepSeek V3/R1-style block FP8: tensor '" + p.name + "' " + st_dtype_name(p.dtype) + " " +
      shape_string(p.shape) + " with scale '" + s.name + "' " + st_dtype_name(s.dtype) + " " +
      shape_string(s.shape) + " (weight_block_size [" + std::to_string(bs[0]) + ", " +
      std::to_string(bs[1]) + "]" + fmt + ") uses " + std::to_string(bs[0]) + "x" +
      std::to_string(bs[1]) + " blocks with one scale each, not MX (32-element row blocks "
      "with E8M0 scales); mxq does not read it");
}

// Element type from the packed tensor against the scale tensor (K = 32 * scale's last dim).
StatusOr<ElemType> elem_from_shapes(const TensorInfo& p, const TensorInfo& s) {
  if (!is_e8m0_dtype(s.dtype))
    return bad("scale tensor '" + s.name + "' has dtype " + st_dtype_name(s.dtype) +
               ", expected F8_E8M0 or U8 (E8M0 scale bytes) for packed tensor '" + p.name + "'");
  if (s.shape.empty() || p.shape.empty())
    return bad("tensor '" + p.name + "' " + shape_string(p.shape) + " / scale '" + s.name +
               "' " + shape_string(s.shape) + ": expected [.., N, K/2] with [.., N, K/32]");
  const int64_t k = s.shape.back() * kBlockSize;
  const int64_t row = p.shape.back();
  if ((p.dtype == StDType::kU8 || p.dtype == StDType::kI8) && row * 2 == k) return ElemType::kE2M1;
  if (p.dtype == StDType::kF8_E4M3 && row == k) return ElemType::kE4M3;
  if (p.dtype == StDType::kF8_E5M2 && row == k) return ElemType::kE5M2;
  std::vector<int64_t> fp4(s.shape.begin(), s.shape.end()), fp8 = fp4;
  fp4.back() = k / 2;
  fp8.back() = k;
  return bad("tensor '" + p.name + "' " + st_dtype_name(p.dtype) + " " + shape_string(p.shape) +
             " does not match scale tensor '" + s.name + "' " + shape_string(s.shape) +
             " (K = " + std::to_string(k) + "): expected U8/I8 " + shape_string(fp4) +
             " (packed MXFP4) or F8_E4M3 " + shape_string(fp8) + " (MXFP8)");
}

}  // namespace

StatusOr<ModelInfo> read_deepseek(const Checkpoint& ckpt, const json& config) {
  const json* q = quantization_config(config);
  const std::array<int64_t, 2> bs = block_size_of(q);
  ModelInfo info;
  info.format = "deepseek";
  // DeepSeek checkpoints record no activation scheme or scale rule for the MX experts.
  info.act = ActScheme::kNone;

  for (const std::string& name : ckpt.names()) {
    const TensorInfo& t = *ckpt.find(name)->info;
    // An E8M0 `.scale` tensor always belongs to a `.weight`.
    if (ends_with(name, ".scale") && t.dtype == StDType::kF8_E8M0) {
      const std::string packed = module_of(name) + ".weight";
      if (ckpt.find(packed) == nullptr)
        return bad("scale tensor '" + name + "' has no packed partner: expected '" + packed +
                   "' U8/I8 " + shape_string(packed_shape_for(t.shape, ElemType::kE2M1)) +
                   " (packed MXFP4) or F8_E4M3 " +
                   shape_string(packed_shape_for(t.shape, ElemType::kE4M3)) + " (MXFP8)");
      continue;
    }
    const ScaleAlias* alias = nullptr;
    for (const ScaleAlias& a : kScaleAliases)
      if (ends_with(name, a.packed)) alias = &a;
    if (alias == nullptr || !may_hold_quantized(t.dtype)) continue;
    const std::string base = name.substr(0, name.size() - alias->packed.size());
    const std::string module = base + std::string(alias->module);
    std::vector<std::string> candidates;
    for (std::string_view s : alias->scales)
      if (!s.empty()) candidates.push_back(base + std::string(s));
    auto scale = resolve_alias(ckpt, "scale tensor", module, candidates);
    if (!scale.ok())
      return Status(scale.status().code(),
                    scale.status().message() + " (packed tensor '" + name + "' " +
                        st_dtype_name(t.dtype) + " " + shape_string(t.shape) + ")");
    const TensorInfo& st = *ckpt.find(scale.value())->info;
    if (is_block_fp8(t, st, bs)) return block_fp8_unimplemented(t, st, bs, q);
    auto elem = elem_from_shapes(t, st);
    if (!elem.ok()) return elem.status();
    auto w = make_weight(ckpt, module, elem.value(), name, scale.value());
    if (!w.ok()) return w.status();
    MXWeight mw = std::move(w).value();
    const std::string leaf = last_component(module);
    mw.gate_up = (leaf == "w1" || leaf == "w3") ? GateUpLayout::kSeparate : alias->gate_up;
    if (alias->module.empty()) MXQ_RETURN_IF_ERROR(attach_bias(ckpt, module + ".bias", mw));
    info.weights.push_back(std::move(mw));
  }

  bool fp4 = false, fp8 = false;
  for (const MXWeight& w : info.weights) (w.elem == ElemType::kE2M1 ? fp4 : fp8) = true;
  info.scheme = fp4 && fp8 ? "mxfp4+mxfp8" : fp4 ? "mxfp4" : fp8 ? "mxfp8" : "none";
  // No quantization config and nothing quantized (read_model sends every checkpoint with a
  // `.scale` tensor here): this is an unquantized model, not a DeepSeek one.
  if (q == nullptr && info.weights.empty()) info.format = "unquantized";
  finalize(info, ckpt);
  return info;
}

}  // namespace mxq::io::formats
