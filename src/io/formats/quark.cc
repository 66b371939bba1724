// AMD Quark (OCP MX): quant_method "quark".
//
//   quantization_config = {
//     "global_quant_config": {"weight": W, "input_tensors": A | null, ...},
//     "layer_quant_config": {"<glob>": {"weight": W, "input_tensors": A, ...}, ...},
//     "exclude": ["lm_head", "re:.*mlp\\.gate$", ...], ...}
//   W = {"dtype": "fp4" | "fp6_e2m3" | "fp6_e3m2" | "fp8_e4m3", "qscheme": "per_group",
//        "group_size": 32, "scale_format": "e8m0", "scale_calculation_mode": "even", ...}
//   (older exports: "dtype": "mx" with "mx_element_dtype": "fp4" | ...)
//
// Tensors: <m>.weight U8 [N, K/2] (FP4), [N, 3K/4] (FP6) or F8_E4M3 [N, K] (FP8);
// <m>.weight_scale U8 [N, K/32]; <m>.input_scale F32 scalar for static FP8 activations.
// Every <m>.weight_scale with its <m>.weight partner is an MX weight; its spec is the
// layer_quant_config entry whose glob matches <m>, else the global one.
#include <map>

#include "common.h"

namespace mxq::io::formats {
namespace {

Status bad(std::string msg) { return {StatusCode::kDataLoss, std::move(msg)}; }

// A parsed Quark spec (one global_quant_config or layer_quant_config entry).
struct Spec {
  bool quantized = false;  // weight != null
  ElemType elem = ElemType::kE2M1;
  ScaleRule rule = ScaleRule::kEven;
  ActScheme act = ActScheme::kNone;
  std::optional<ScaleRule> act_rule;  // MX activations: input_tensors.scale_calculation_mode
  std::string scheme;  // Quark's scheme name: w_mxfp4, w_mxfp4_a_fp8, w_mxfp6_e2m3_a_mxfp6 ...
  std::string where;   // the config key, for messages

  bool same_as(const Spec& o) const {
    return quantized == o.quantized && elem == o.elem && rule == o.rule && act == o.act;
  }
};

struct DtypeEntry {
  const char* name;
  ElemType elem;
  const char* scheme;  // the name Quark schemes use for it
};
constexpr DtypeEntry kDtypes[] = {
    {"fp4", ElemType::kE2M1, "mxfp4"},
    {"fp6_e2m3", ElemType::kE2M3, "mxfp6_e2m3"},
    {"fp6_e3m2", ElemType::kE3M2, "mxfp6_e3m2"},
    {"fp8_e4m3", ElemType::kE4M3, "mxfp8"},
};

std::string str_field(const json& o, const char* key) {
  const json* v = member(o, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

// The element dtype of a weight / input spec: "dtype", or "mx_element_dtype" when dtype is the
// legacy "mx".
std::string element_dtype(const json& t) {
  std::string d = str_field(t, "dtype");
  if (d == "mx") d = str_field(t, "mx_element_dtype");
  return d;
}

const DtypeEntry* find_dtype(std::string_view d) {
  for (const DtypeEntry& e : kDtypes)
    if (d == e.name) return &e;
  return nullptr;
}

// Checks the MX-specific fields of a weight or input spec at `where`.
Status check_mx_group(const json& t, const std::string& where) {
  const std::string qscheme = str_field(t, "qscheme");
  if (qscheme != "per_group")
    return bad(where + ".qscheme is \"" + qscheme + "\", expected \"per_group\" (MX block "
               "scaling)");
  const json* gs = member(t, "group_size");
  if (gs == nullptr || !gs->is_number_integer() || gs->get<int64_t>() != kBlockSize)
    return bad(where + ".group_size is " + (gs ? gs->dump() : std::string("missing")) +
               ", expected 32 (the MX block size)");
  const json* sf = member(t, "scale_format");
  // Legacy "dtype": "mx" specs predate scale_format; MX implies E8M0 there.
  if (sf == nullptr && str_field(t, "dtype") == "mx") return Status::Ok();
  if (sf == nullptr || !sf->is_string() || sf->get<std::string>() != "e8m0")
    return bad(where + ".scale_format is " + (sf ? sf->dump() : std::string("missing")) +
               ", expected \"e8m0\"");
  return Status::Ok();
}

// scale_calculation_mode of an MX spec: "even" (Quark's default, and its HIP kernel's) or
// "floor".
StatusOr<ScaleRule> mx_mode(const json& t, const std::string& where) {
  const json* mode = member(t, "scale_calculation_mode");
  const std::string m = mode == nullptr ? "even" : (mode->is_string() ? mode->get<std::string>()
                                                                      : mode->dump());
  if (m == "even") return ScaleRule::kEven;
  if (m == "floor") return ScaleRule::kFloor;
  return bad(where + ".scale_calculation_mode is \"" + m + "\", expected \"even\" or \"floor\"");
}

Status parse_weight(const json& w, const std::string& where, Spec& s) {
  if (!w.is_object()) return bad(where + " must be an object or null, got " + w.dump());
  const std::string d = element_dtype(w);
  const DtypeEntry* e = find_dtype(d);
  if (e == nullptr)
    return unimplemented(where + ".dtype is \"" + d + "\"; mxq reads Quark MX weights with "
                         "dtype fp4, fp6_e2m3, fp6_e3m2 or fp8_e4m3 (per_group, group_size 32, "
                         "scale_format e8m0)");
  MXQ_RETURN_IF_ERROR(check_mx_group(w, where));
  const json* mode = member(w, "scale_calculation_mode");
  // Quark's default (and its HIP kernel's) is "even".
  const std::string m = mode == nullptr ? "even" : (mode->is_string() ? mode->get<std::string>()
                                                                      : mode->dump());
  if (m == "even") {
    s.rule = ScaleRule::kEven;
  } else if (m == "floor") {
    s.rule = ScaleRule::kFloor;
  } else {
    return bad(where + ".scale_calculation_mode is \"" + m + "\", expected \"even\" or "
               "\"floor\"");
  }
  s.quantized = true;
  s.elem = e->elem;
  s.scheme = std::string("w_") + e->scheme;
  return Status::Ok();
}

Status parse_input(const json* a, const std::string& where, Spec& s) {
  if (a == nullptr) return Status::Ok();  // weight-only
  if (!a->is_object()) return bad(where + " must be an object or null, got " + a->dump());
  const std::string d = element_dtype(*a);
  const std::string qscheme = str_field(*a, "qscheme");
  const json* dyn = member(*a, "is_dynamic");
  const bool dynamic = dyn != nullptr && dyn->is_boolean() && dyn->get<bool>();
  if (qscheme == "per_group") {
    MXQ_RETURN_IF_ERROR(check_mx_group(*a, where));
    if (!dynamic)
      return unimplemented(where + ": static per-group (MX) activations; expected "
                           "\"is_dynamic\": true");
    auto rule = mx_mode(*a, where);
    if (!rule.ok()) return rule.status();
    s.act_rule = rule.value();
    if (d == "fp4") {
      s.act = ActScheme::kMxfp4;
      s.scheme += "_a_mxfp4";
      return Status::Ok();
    }
    if (d == "fp8_e4m3") {
      s.act = ActScheme::kMxfp8;
      s.scheme += "_a_mxfp8";
      return Status::Ok();
    }
    if (d == "fp6_e2m3" || d == "fp6_e3m2") {
      s.act = d == "fp6_e2m3" ? ActScheme::kMxfp6E2M3 : ActScheme::kMxfp6E3M2;
      s.scheme += d == "fp6_e2m3" ? "_a_mxfp6_e2m3" : "_a_mxfp6_e3m2";
      return Status::Ok();
    }
    return unimplemented(where + ".dtype is \"" + d + "\": mxq runs MX activations as mxfp4, "
                         "mxfp6 or mxfp8 (dtype fp4, fp6_e2m3, fp6_e3m2 or fp8_e4m3) only");
  }
  if (d == "fp8_e4m3" && qscheme == "per_tensor" && !dynamic) {
    s.act = ActScheme::kFp8Static;
    s.scheme += "_a_fp8";
    return Status::Ok();
  }
  if (d == "fp8_e4m3" && dynamic && (qscheme == "per_channel" || qscheme == "per_token")) {
    s.act = ActScheme::kFp8Dynamic;
    s.scheme += "_a_fp8";
    return Status::Ok();
  }
  return unimplemented(where + " (dtype \"" + d + "\", qscheme \"" + qscheme + "\", is_dynamic " +
                       (dynamic ? "true" : "false") + ") is not an activation scheme mxq runs: "
                       "null, MX fp4/fp6_e2m3/fp6_e3m2/fp8_e4m3 per_group dynamic, fp8_e4m3 per_tensor static or "
                       "fp8_e4m3 per_channel/per_token dynamic");
}

StatusOr<Spec> parse_spec(const json& cfg, const std::string& where) {
  if (!cfg.is_object()) return bad(where + " must be an object, got " + cfg.dump());
  Spec s;
  s.where = where;
  if (const json* w = member(cfg, "weight"))
    MXQ_RETURN_IF_ERROR(parse_weight(*w, where + ".weight", s));
  if (!s.quantized) s.scheme = "w_none";
  MXQ_RETURN_IF_ERROR(parse_input(member(cfg, "input_tensors"), where + ".input_tensors", s));
  return s;
}

}  // namespace

StatusOr<ModelInfo> read_quark(const Checkpoint& ckpt, const json& config) {
  const std::string where = ckpt.root() + "/config.json quantization_config";
  const json* q = quantization_config(config);
  if (q == nullptr) return bad(where + " is missing");
  ModelInfo info;
  info.format = "quark";

  const json* g = member(*q, "global_quant_config");
  if (g == nullptr) return bad(where + ".global_quant_config is missing");
  auto global = parse_spec(*g, where + ".global_quant_config");
  if (!global.ok()) return global.status();

  // Per-type specs (e.g. {"Linear": ...}) cannot be applied from tensor names alone.
  if (const json* lt = member(*q, "layer_type_quant_config"); lt != nullptr && !lt->empty())
    return unimplemented(where + ".layer_type_quant_config is not empty (" + lt->dump() +
                         "); mxq applies global_quant_config and name-pattern "
                         "layer_quant_config only");

  std::vector<std::pair<std::string, Spec>> layer_specs;  // pattern -> spec
  if (const json* lq = member(*q, "layer_quant_config")) {
    if (!lq->is_object()) return bad(where + ".layer_quant_config must be an object");
    for (const auto& [pattern, cfg] : lq->items()) {
      auto s = parse_spec(cfg, where + ".layer_quant_config[\"" + pattern + "\"]");
      if (!s.ok()) return s.status();
      layer_specs.emplace_back(pattern, std::move(s).value());
    }
  }
  auto exclude = string_list(*q, "exclude", where);
  if (!exclude.ok()) return exclude.status();
  info.ignored = std::move(exclude).value();

  // The spec for one module: the matching layer_quant_config entry, else the global one. Two
  // matching entries that disagree are an error rather than an order-dependent guess.
  auto spec_for = [&](const std::string& module) -> StatusOr<const Spec*> {
    const Spec* found = nullptr;
    std::string found_pattern;
    for (const auto& [pattern, s] : layer_specs) {
      if (!glob_match(pattern, module)) continue;
      if (found != nullptr && !found->same_as(s))
        return bad(where + ".layer_quant_config: module '" + module + "' matches both \"" +
                   found_pattern + "\" and \"" + pattern + "\", which specify different "
                   "quantization");
      found = &s;
      found_pattern = pattern;
    }
    return found != nullptr ? found : &global.value();
  };

  const std::string scale_suffix = ".weight_scale";
  bool mixed_rule = false;
  // ModelInfo records one activation scheme: the global one, or (when the global weight spec
  // is null) that of the first layer_quant_config entry in use; every weight must agree.
  const Spec* act_ref = global.value().quantized ? &global.value() : nullptr;
  for (const std::string& name : ckpt.names()) {
    if (ends_with(name, ".weight")) {
      // A packed-looking weight without its scale is a broken export, not an unquantized layer.
      const std::string module = module_of(name);
      const TensorInfo& t = *ckpt.find(name)->info;
      if ((t.dtype == StDType::kU8 || t.dtype == StDType::kI8) &&
          ckpt.find(module + scale_suffix) == nullptr && !matches_pattern(info.ignored, module)) {
        auto sp = spec_for(module);
        if (!sp.ok()) return sp.status();
        const ElemType elem = sp.value()->quantized ? sp.value()->elem : ElemType::kE2M1;
        return bad("tensor '" + name + "' " + st_dtype_name(t.dtype) + " " +
                   shape_string(t.shape) + " looks packed but has no scale partner: expected '" +
                   module + scale_suffix + "' U8 " + shape_string(scale_shape_for(t.shape, elem)) +
                   " (" + mx_format_name(elem) + ")");
      }
      continue;
    }
    if (!ends_with(name, scale_suffix)) continue;
    const std::string module = module_of(name);
    const std::string packed = module + ".weight";
    auto sp = spec_for(module);
    if (!sp.ok()) return sp.status();
    const Spec& s = *sp.value();
    if (ckpt.find(packed) == nullptr) {
      const ElemType elem = s.quantized ? s.elem : ElemType::kE2M1;
      return bad("scale tensor '" + name + "' has no packed partner: expected '" + packed +
                 "' " + (elem == ElemType::kE4M3 ? "F8_E4M3 " : "U8 ") +
                 shape_string(packed_shape_for(ckpt.find(name)->info->shape, elem)) + " (" +
                 mx_format_name(elem) + ")");
    }
    if (matches_pattern(info.ignored, module))
      return bad("module '" + module + "' is excluded by " + where + ".exclude but has an MX "
                 "scale tensor '" + name + "'");
    if (!s.quantized)
      return bad("module '" + module + "' has scale tensor '" + name + "' but " + s.where +
                 ".weight is null (not quantized)");
    if (act_ref == nullptr) act_ref = &s;
    if (s.act != act_ref->act)
      return unimplemented("module '" + module + "' uses activation scheme " +
                           act_scheme_name(s.act) + " (" + s.where + ") but " + act_ref->where +
                           " uses " + act_scheme_name(act_ref->act) +
                           "; mxq records one activation scheme per checkpoint");
    if (s.act_rule != act_ref->act_rule)
      return unimplemented("module '" + module + "' quantizes its activations with scale rule " +
                           (s.act_rule ? scale_rule_name(*s.act_rule) : "none") + " (" + s.where +
                           ") but " + act_ref->where + " with " +
                           (act_ref->act_rule ? scale_rule_name(*act_ref->act_rule) : "none") +
                           "; mxq records one activation scheme per checkpoint");
    auto w = make_weight(ckpt, module, s.elem, packed, name);
    if (!w.ok()) return w.status();
    MXWeight mw = std::move(w).value();
    MXQ_RETURN_IF_ERROR(attach_bias(ckpt, module + ".bias", mw));
    if (s.act == ActScheme::kFp8Static) {
      mw.input_scale_name = module + ".input_scale";
      MXQ_RETURN_IF_ERROR(check_input_scale(ckpt, mw.input_scale_name, module));
    }
    if (global.value().quantized && s.rule != global.value().rule) mixed_rule = true;
    info.weights.push_back(std::move(mw));
  }

  const Spec& gs = global.value();
  info.act = act_ref != nullptr ? act_ref->act : gs.act;
  info.act_scale_rule = act_ref != nullptr ? act_ref->act_rule : gs.act_rule;
  if (gs.quantized) {
    info.scheme = gs.scheme;
    if (!mixed_rule) info.scale_rule = gs.rule;
  } else {
    // Everything quantized comes from layer_quant_config: name the distinct schemes used.
    std::map<std::string, ScaleRule> used;
    for (const MXWeight& w : info.weights) {
      auto sp = spec_for(w.module);
      if (sp.ok()) used.emplace(sp.value()->scheme, sp.value()->rule);
    }
    std::optional<ScaleRule> rule;
    for (const auto& [name, r] : used) {
      info.scheme += (info.scheme.empty() ? "" : "+") + name;
      if (!rule) rule = r;
      else if (*rule != r) mixed_rule = true;
    }
    if (info.scheme.empty()) info.scheme = gs.scheme;
    if (!mixed_rule) info.scale_rule = rule;
  }
  finalize(info, ckpt);
  return info;
}

}  // namespace mxq::io::formats
