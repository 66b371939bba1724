// NVIDIA ModelOpt: hf_quant_config.json {"quantization": {"quant_algo": ..., "group_size": ..,
// "exclude_modules": [..]}}, or the same fields in config.json's quantization_config with
// "quant_method": "modelopt" (newer exports call the exclude list "ignore").
//
// MX algorithms mxq reads:
//   MXFP8           <m>.weight F8_E4M3 [N, K] or [E, N, K], <m>.weight_scale U8 [.., N, K/32];
//                   activations dynamic MXFP8.
//   W4A8_MXFP4_FP8  <m>.weight U8 [N, K/2], <m>.weight_scale U8 [N, K/32], <m>.input_scale F32
//                   scalar (static FP8 activations).
//   mxfp4           (lower case, as ModelOpt 0.47 writes it for MXFP4_DEFAULT_CFG) <m>.weight U8
//                   [N, K/2], <m>.weight_scale U8 [N, K/32]; activations dynamic MXFP4 (W4A4).
// ModelOpt chooses E8M0 scales as 2^ceil(log2(amax / max_elem)) (MXFP8QTensor / MXFP4QTensor):
// the rceil rule. NVFP4 (16-element blocks, E4M3 scales) and the non-MX algorithms are
// reported as unimplemented.
#include "common.h"

namespace mxq::io::formats {
namespace {

Status bad(std::string msg) { return {StatusCode::kDataLoss, std::move(msg)}; }

struct Algo {
  const char* name;
  ElemType elem;
  ActScheme act;
};
constexpr Algo kAlgos[] = {
    {"MXFP8", ElemType::kE4M3, ActScheme::kMxfp8},
    {"W4A8_MXFP4_FP8", ElemType::kE2M1, ActScheme::kFp8Static},
    {"mxfp4", ElemType::kE2M1, ActScheme::kMxfp4},
};

std::string supported_list() {
  std::string s;
  for (const Algo& a : kAlgos) s += (s.empty() ? "" : ", ") + std::string(a.name);
  return s;
}

std::string algo_of(const json& q) {
  const json* a = member(q, "quant_algo");
  return a != nullptr && a->is_string() ? a->get<std::string>() : std::string();
}

}  // namespace

StatusOr<ModelInfo> read_modelopt(const Checkpoint& ckpt, const json& config,
                                  const json& hf_quant_config) {
  // hf_quant_config.json is ModelOpt's own record; config.json's copy is for loaders. When
  // both name an algorithm they must agree.
  const json* q = nullptr;
  std::string where;
  const json* cq = quantization_config(config);
  if (const json* h = member(hf_quant_config, "quantization"); h != nullptr && h->is_object()) {
    q = h;
    where = ckpt.root() + "/hf_quant_config.json quantization";
    if (cq != nullptr && !algo_of(*cq).empty() && algo_of(*cq) != algo_of(*h))
      return bad(where + ".quant_algo \"" + algo_of(*h) + "\" disagrees with " + ckpt.root() +
                 "/config.json quantization_config.quant_algo \"" + algo_of(*cq) + "\"");
  } else if (cq != nullptr) {
    q = cq;
    where = ckpt.root() + "/config.json quantization_config";
  } else {
    return bad(ckpt.root() + ": ModelOpt checkpoint without hf_quant_config.json "
               "\"quantization\" or config.json quantization_config");
  }

  const std::string algo_name = algo_of(*q);
  const Algo* algo = nullptr;
  for (const Algo& a : kAlgos)
    if (algo_name == a.name) algo = &a;
  if (algo == nullptr) {
    std::string why;
    if (algo_name.empty()) return bad(where + ".quant_algo is missing (expected one of: " +
                                      supported_list() + ")");
    if (algo_name == "NVFP4" || algo_name == "NVFP4_AWQ")
      why = " (NVFP4 uses 16-element blocks with FP8 E4M3 scales and a global FP32 scale, not "
            "MX; it is a later format)";
    return unimplemented(where + ".quant_algo \"" + algo_name + "\" is not supported" + why +
                         "; mxq reads ModelOpt " + supported_list());
  }
  if (const json* gs = member(*q, "group_size");
      gs != nullptr && (!gs->is_number_integer() || gs->get<int64_t>() != kBlockSize))
    return bad(where + ".group_size is " + gs->dump() + ", expected 32 for " + algo_name);

  ModelInfo info;
  info.format = "modelopt";
  info.scheme = algo_name;
  info.act = algo->act;
  info.scale_rule = ScaleRule::kRceil;
  // ModelOpt 0.47's export packs E2M1 with MXFP4QTensor.quantize, whose cast_fp4 counts the
  // midpoints strictly below |x|: a tie goes to the smaller magnitude (checked on its bytes,
  // tests/fixtures/producers/modelopt-w4a8max-mxfp4-fp8-llama). MXFP8 is a torch FP8 cast (RNE).
  if (algo->elem == ElemType::kE2M1) info.rounding = Rounding::kTowardZeroTies;
  auto ex = string_list(*q, "exclude_modules", where);
  if (!ex.ok()) return ex.status();
  auto ig = string_list(*q, "ignore", where);
  if (!ig.ok()) return ig.status();
  info.ignored = std::move(ex).value();
  info.ignored.insert(info.ignored.end(), ig.value().begin(), ig.value().end());

  const std::string scale_suffix = ".weight_scale";
  const StDType packed_dtype = algo->elem == ElemType::kE4M3 ? StDType::kF8_E4M3 : StDType::kU8;
  for (const std::string& name : ckpt.names()) {
    if (ends_with(name, ".weight")) {
      // A weight in the algorithm's element dtype without its scale is a broken export.
      const std::string module = module_of(name);
      const TensorInfo& t = *ckpt.find(name)->info;
      if (t.dtype == packed_dtype && ckpt.find(module + scale_suffix) == nullptr &&
          !matches_pattern(info.ignored, module))
        return bad("tensor '" + name + "' " + st_dtype_name(t.dtype) + " " +
                   shape_string(t.shape) + " has no scale partner: expected '" + module +
                   scale_suffix + "' U8 " + shape_string(scale_shape_for(t.shape, algo->elem)) +
                   " (" + algo_name + ")");
      continue;
    }
    if (!ends_with(name, scale_suffix)) continue;
    const std::string module = module_of(name);
    const std::string packed = module + ".weight";
    if (ckpt.find(packed) == nullptr)
      return bad("scale tensor '" + name + "' has no packed partner: expected '" + packed + "' " +
                 (algo->elem == ElemType::kE4M3 ? "F8_E4M3 " : "U8 ") +
                 shape_string(packed_shape_for(ckpt.find(name)->info->shape, algo->elem)) +
                 " (" + algo_name + ")");
    if (matches_pattern(info.ignored, module))
      return bad("module '" + module + "' is excluded by " + where + " but has an MX scale "
                 "tensor '" + name + "'");
    const TensorInfo& pt = *ckpt.find(packed)->info;
    if (algo->elem == ElemType::kE4M3 && pt.dtype != StDType::kF8_E4M3)
      return bad("tensor '" + packed + "' has dtype " + st_dtype_name(pt.dtype) + ", expected "
                 "F8_E4M3 (" + algo_name + " elements)");
    if (algo->elem == ElemType::kE2M1 && pt.dtype != StDType::kU8)
      return bad("tensor '" + packed + "' has dtype " + st_dtype_name(pt.dtype) + ", expected "
                 "U8 (" + algo_name + " packed FP4 elements)");
    auto w = make_weight(ckpt, module, algo->elem, packed, name);
    if (!w.ok()) return w.status();
    MXWeight mw = std::move(w).value();
    MXQ_RETURN_IF_ERROR(attach_bias(ckpt, module + ".bias", mw));
    if (algo->act == ActScheme::kFp8Static) {
      mw.input_scale_name = module + ".input_scale";
      MXQ_RETURN_IF_ERROR(check_input_scale(ckpt, mw.input_scale_name, module));
    }
    info.weights.push_back(std::move(mw));
  }
  finalize(info, ckpt);
  return info;
}

}  // namespace mxq::io::formats
