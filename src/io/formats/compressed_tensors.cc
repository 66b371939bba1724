// compressed-tensors: reader, and the naming/config used by the writers.
//
// quantization_config = {quant_method: "compressed-tensors", format, quantization_status:
// "compressed", config_groups: {group_0: {targets, weights, input_activations, format}},
// ignore: [...]}. mxq adds an "mxq" object recording what the format cannot express (the scale
// rule used, the gate/up order of fused MoE tensors); other readers ignore it.
#include "compressed_tensors.h"

#include <map>

#include "io/json_fields.h"

namespace mxq::io::formats {
namespace ct {

namespace {
struct FormatEntry {
  ElemType elem;
  const char* name;
};
constexpr FormatEntry kFormats[] = {
    {ElemType::kE2M1, "mxfp4-pack-quantized"},
    {ElemType::kE4M3, "mxfp8-quantized"},
    {ElemType::kE5M2, "mxfp8-e5m2-quantized"},
    {ElemType::kE2M3, "mxfp6-pack-quantized"},  // compressed-tensors >= 0.20: E2M3
    {ElemType::kE3M2, "mxfp6-e3m2-pack-quantized"},
    {ElemType::kInt8, "mxint8-quantized"},
};

json act_config(ActScheme a) {
  switch (a) {
    case ActScheme::kNone: return nullptr;
    case ActScheme::kMxfp4:
    case ActScheme::kMxfp8:
      return {{"num_bits", a == ActScheme::kMxfp4 ? 4 : 8}, {"type", "float"},
              {"symmetric", true}, {"strategy", "group"}, {"group_size", 32},
              {"dynamic", true}, {"scale_dtype", "torch.uint8"}};
    case ActScheme::kFp8Static:
    case ActScheme::kFp8Dynamic:
    case ActScheme::kFp8DynamicTensor:
      return {{"num_bits", 8}, {"type", "float"}, {"symmetric", true},
              {"strategy", a == ActScheme::kFp8Dynamic ? "token" : "tensor"},
              {"dynamic", a != ActScheme::kFp8Static}};
    case ActScheme::kFp8DynamicGroup128:  // as compressed-tensors 0.20's MXFP4XFP8 preset
      return {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}, {"strategy", "group"},
              {"group_size", 128}, {"dynamic", true}};
    case ActScheme::kMxfp6E2M3:
    case ActScheme::kMxfp6E3M2: break;  // refused by quantize_model (no compressed-tensors form)
  }
  return nullptr;
}

StatusOr<ActScheme> parse_act(const json& a, const std::string& where) {
  if (a.is_null()) return ActScheme::kNone;
  if (!a.is_object()) return Status(StatusCode::kDataLoss, where + " must be null or an object");
  const int bits = io::field_or(a, "num_bits", 0);
  const std::string strategy = io::field_or(a, "strategy", "");
  // compressed-tensors' QuantizationArgs default: type "int" (an absent type is integer).
  const bool is_float = io::field_or(a, "type", "int") == "float";
  const bool dynamic = a.contains("dynamic") && a["dynamic"].is_boolean() && a["dynamic"].get<bool>();
  const int group = io::field_or(a, "group_size", 0);
  // MX scales (E8M0) only where compressed-tensors generates them (should_generate_mx_scales:
  // float, group_size 32, scale_dtype torch.uint8); a float group-32 scheme without the uint8
  // scale dtype has FP32 scales per 32-group, which is not MX.
  const bool mx_scales = io::field_or(a, "scale_dtype", "") == "torch.uint8";
  if (is_float && strategy == "group" && group == 32 && mx_scales && dynamic) {
    if (bits == 4) return ActScheme::kMxfp4;
    if (bits == 8) return ActScheme::kMxfp8;
  }
  if (is_float && bits == 8 && strategy == "tensor" && !dynamic) return ActScheme::kFp8Static;
  // FP8 with a dynamic per-tensor scale (llm-compressor's FP8 recipes with dynamic per-tensor
  // input activations; vLLM computes amax over the whole input at run time): fp8-dynamic-tensor.
  if (is_float && bits == 8 && strategy == "tensor" && dynamic) return ActScheme::kFp8DynamicTensor;
  if (is_float && bits == 8 && strategy == "token" && dynamic) return ActScheme::kFp8Dynamic;
  // compressed-tensors 0.20's MXFP4XFP8 preset: FP8 with a dynamic FP32 scale per token and
  // group of 128 columns (vLLM's per-token-group FP8; DeepSeek's 1 x 128 activation tiles).
  if (is_float && bits == 8 && strategy == "group" && group == 128 && dynamic && !mx_scales)
    return ActScheme::kFp8DynamicGroup128;
  // Anything else is refused, never read as the nearest known scheme (integer activations,
  // static group or token scales, other group sizes, FP8 groups with E8M0 scales).
  const std::string known = "mxq runs MX activations (type float, strategy \"group\", group_size "
                            "32, scale_dtype torch.uint8, 4 or 8 bits, dynamic), FP8 per-tensor "
                            "static, FP8 per-tensor dynamic, FP8 per-token dynamic and FP8 "
                            "per-128-group dynamic";
  if (strategy == "group")
    return Status(StatusCode::kUnimplemented,
                  where + ": " + std::to_string(bits) + "-bit " + (is_float ? "float" : "integer") +
                      " activations with a " + (dynamic ? "dynamic" : "static") +
                      " scale per group of " + std::to_string(group) + " are not supported (" +
                      known + "): " + a.dump());
  return Status(StatusCode::kUnimplemented,
                where + " describes an activation scheme mxq does not know (" + known + "): " +
                    a.dump());
}

}  // namespace

const char* format_name(ElemType t) {
  for (const auto& f : kFormats)
    if (f.elem == t) return f.name;
  return "?";
}

StatusOr<ElemType> parse_format(std::string_view format) {
  std::string accepted;
  for (const auto& f : kFormats) {
    if (format == f.name) return f.elem;
    accepted += (accepted.empty() ? "" : ", ") + std::string(f.name);
  }
  return Status(StatusCode::kUnimplemented, "compressed-tensors format '" + std::string(format) +
                                                "' is not an MX format (mxq reads: " + accepted + ")");
}

Names names_for(const std::string& module, ElemType t) {
  if (t == ElemType::kE4M3) return {module + ".weight", StDType::kF8_E4M3, module + ".weight_scale"};
  if (t == ElemType::kE5M2) return {module + ".weight", StDType::kF8_E5M2, module + ".weight_scale"};
  return {module + ".weight_packed", StDType::kU8, module + ".weight_scale"};
}

json make_quantization_config(const Recipe& r) {
  const int bits = elem_info(r.elem).bits;
  json weights = {{"num_bits", bits},
                  {"type", r.elem == ElemType::kInt8 ? "int" : "float"},
                  {"symmetric", true},
                  {"strategy", "group"},
                  {"group_size", 32},
                  {"dynamic", false},
                  {"scale_dtype", "torch.uint8"}};
  json gate_up = json::object();
  for (const auto& [m, g] : r.gate_up) gate_up[m] = gate_up_layout_name(g);
  json mxq = {{"element", elem_type_name(r.elem)}, {"gate_up_layout", gate_up}};
  if (r.scale_rule) mxq["scale_rule"] = scale_rule_name(*r.scale_rule);
  return {{"quant_method", "compressed-tensors"},
          {"format", format_name(r.elem)},
          {"quantization_status", "compressed"},
          {"config_groups",
           {{"group_0",
             {{"targets", json::array({"Linear"})},
              {"weights", weights},
              {"input_activations", act_config(r.act)},
              {"format", format_name(r.elem)}}}}},
          {"ignore", r.ignore},
          {"mxq", mxq}};
}

}  // namespace ct

StatusOr<ModelInfo> read_compressed_tensors(const Checkpoint& ckpt, const json& config) {
  const json& q = config["quantization_config"];
  const std::string where = ckpt.root() + "/config.json quantization_config";
  ModelInfo info;
  info.format = "compressed-tensors";
  // The element type: per-group format, else the global one.
  std::string format = io::field_or(q, "format", "");
  const json groups = q.contains("config_groups") ? q["config_groups"] : json::object();
  if (!groups.is_object() || groups.empty())
    return Status(StatusCode::kDataLoss, where + ": config_groups is missing or empty");
  if (groups.size() > 1)
    return unimplemented(where + ": " + std::to_string(groups.size()) +
                         " config_groups; mxq reads single-group (uniform) MX checkpoints");
  const auto first_group = groups.begin();  // kept alive: g refers into the config
  const json& g = first_group.value();
  if (g.contains("format") && g["format"].is_string()) format = g["format"].get<std::string>();
  auto elem = ct::parse_format(format);
  if (!elem.ok()) return Status(elem.status().code(), where + ": " + elem.status().message());
  if (!g.contains("weights") || !g["weights"].is_object())
    return Status(StatusCode::kDataLoss, where + ": " + groups.begin().key() + ".weights missing");
  const json& w = g["weights"];
  if (io::field_or(w, "group_size", 0) != 32 || io::field_or(w, "strategy", "") != "group")
    return Status(StatusCode::kDataLoss, where + ": weights must be strategy \"group\" with "
                                                 "group_size 32 for " + format + ", got " + w.dump());
  if (io::field_or(w, "num_bits", 0) != elem_info(elem.value()).bits)
    return Status(StatusCode::kDataLoss, where + ": weights.num_bits " +
                                             std::to_string(io::field_or(w, "num_bits", 0)) +
                                             " does not match format " + format);
  auto act = ct::parse_act(g.contains("input_activations") ? g["input_activations"] : json(nullptr),
                           where + " input_activations");
  if (!act.ok()) return act.status();
  info.act = act.value();
  info.scheme = format;
  // llm-compressor's rule (compressed-tensors generate_mx_scales: the group amax rounded at a
  // 1-bit mantissa) for FP4 and FP8; compressed-tensors 0.20's MXFP6 (E2M3, the only MXFP6 it
  // writes) rounds at E2M3's own 3-bit mantissa, which is mxq's `even`. A file mxq wrote says
  // which rule it used (the "mxq" object below).
  info.scale_rule = elem.value() == ElemType::kE2M3 ? ScaleRule::kEven
                                                    : ScaleRule::kEvenFp4Mantissa;
  // Dynamic MX activations: compressed-tensors computes their scales at run time with the same
  // function as the weights' (calculate_qparams -> the MX scale generator: the exponent of the
  // group amax rounded at a 1-bit mantissa), whoever wrote the weights: even_fp4_mantissa.
  if (info.act == ActScheme::kMxfp4 || info.act == ActScheme::kMxfp8)
    info.act_scale_rule = ScaleRule::kEvenFp4Mantissa;
  std::map<std::string, GateUpLayout> gate_up;
  if (q.contains("mxq") && q["mxq"].is_object()) {
    const json& m = q["mxq"];
    if (m.contains("scale_rule") && m["scale_rule"].is_string()) {
      auto r = parse_scale_rule(m["scale_rule"].get<std::string>());
      if (!r.ok()) return Status(StatusCode::kDataLoss, where + ".mxq: " + r.status().message());
      info.scale_rule = r.value();
    }
    if (m.contains("gate_up_layout") && m["gate_up_layout"].is_object())
      for (const auto& [mod, lay] : m["gate_up_layout"].items()) {
        auto l = parse_gate_up_layout(lay.is_string() ? lay.get<std::string>() : "");
        if (!l.ok()) return Status(StatusCode::kDataLoss, where + ".mxq.gate_up_layout." + mod +
                                                              ": " + l.status().message());
        gate_up[mod] = l.value();
      }
  }
  if (q.contains("ignore") && q["ignore"].is_array())
    for (const json& i : q["ignore"])
      if (i.is_string()) info.ignored.push_back(i.get<std::string>());

  // Every <m>.weight_scale with its element partner is an MX weight.
  for (const std::string& name : ckpt.names()) {
    if (!ends_with(name, ".weight_scale")) continue;
    const std::string module = module_of(name);
    const ct::Names n = ct::names_for(module, elem.value());
    auto wt = make_weight(ckpt, module, elem.value(), n.packed, n.scale);
    if (!wt.ok()) return wt.status();
    MXWeight mw = std::move(wt).value();
    if (auto it = gate_up.find(module); it != gate_up.end()) mw.gate_up = it->second;
    if (ckpt.find(module + ".bias")) mw.bias_name = module + ".bias";
    if (ckpt.find(module + ".input_scale")) mw.input_scale_name = module + ".input_scale";
    info.weights.push_back(std::move(mw));
  }
  finalize(info, ckpt);
  return info;
}

}  // namespace mxq::io::formats
