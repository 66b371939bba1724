// read_model(): format detection and dispatch, plus the name tables of model.h.
#include <algorithm>
#include <numeric>

#include "formats/common.h"
#include "io/json_fields.h"
#include "mxq/model.h"
#include "mxq/quantize.h"

namespace mxq::io {

const char* act_scheme_name(ActScheme a) {
  switch (a) {
    case ActScheme::kNone: return "none";
    case ActScheme::kMxfp4: return "mxfp4";
    case ActScheme::kMxfp8: return "mxfp8";
    case ActScheme::kFp8Static: return "fp8-static";
    case ActScheme::kFp8Dynamic: return "fp8-dynamic";
    case ActScheme::kMxfp6E2M3: return "mxfp6-e2m3";
    case ActScheme::kMxfp6E3M2: return "mxfp6-e3m2";
    case ActScheme::kFp8DynamicTensor: return "fp8-dynamic-tensor";
    case ActScheme::kFp8DynamicGroup128: return "fp8-dynamic-group128";
  }
  return "?";
}

StatusOr<ActScheme> parse_act_scheme(std::string_view s) {
  for (ActScheme a : {ActScheme::kNone, ActScheme::kMxfp4, ActScheme::kMxfp8,
                      ActScheme::kFp8Static, ActScheme::kFp8Dynamic, ActScheme::kMxfp6E2M3,
                      ActScheme::kMxfp6E3M2, ActScheme::kFp8DynamicTensor,
                      ActScheme::kFp8DynamicGroup128})
    if (s == act_scheme_name(a)) return a;
  return invalid_argument("unknown activation scheme '" + std::string(s) +
                          "' (expected one of: none, mxfp4, mxfp8, fp8-static, fp8-dynamic, "
                          "mxfp6-e2m3, mxfp6-e3m2, fp8-dynamic-tensor, fp8-dynamic-group128)");
}

const char* gate_up_layout_name(GateUpLayout g) {
  switch (g) {
    case GateUpLayout::kNone: return "none";
    case GateUpLayout::kChunked: return "chunked";
    case GateUpLayout::kInterleaved: return "interleaved";
    case GateUpLayout::kSeparate: return "separate";
  }
  return "?";
}

StatusOr<GateUpLayout> parse_gate_up_layout(std::string_view s) {
  for (GateUpLayout g : {GateUpLayout::kNone, GateUpLayout::kChunked, GateUpLayout::kInterleaved,
                         GateUpLayout::kSeparate})
    if (s == gate_up_layout_name(g)) return g;
  return invalid_argument("unknown gate/up layout '" + std::string(s) +
                          "' (expected one of: none, chunked, interleaved, separate)");
}

int64_t MXWeight::batch() const {
  return std::accumulate(shape.begin(), shape.end() - 2, int64_t{1}, std::multiplies<>());
}

namespace {

StatusOr<formats::json> parse_json(const std::string& text, const std::string& what) {
  if (text.empty()) return formats::json::object();
  try {
    formats::json j = formats::json::parse(text);
    if (!j.is_object())
      return Status(StatusCode::kDataLoss, what + " is not a JSON object");
    return j;
  } catch (const formats::json::exception& e) {
    return Status(StatusCode::kDataLoss, what + " is not valid JSON: " + e.what());
  }
}

}  // namespace

static StatusOr<ModelInfo> read_model_unguarded(const Checkpoint& ckpt) {
  auto cfg = parse_json(ckpt.config_json(), ckpt.root() + "/config.json");
  if (!cfg.ok()) return cfg.status();
  auto hfq = parse_json(ckpt.hf_quant_config_json(), ckpt.root() + "/hf_quant_config.json");
  if (!hfq.ok()) return hfq.status();
  const formats::json& c = cfg.value();
  std::string method;
  if (c.contains("quantization_config") && c["quantization_config"].is_object()) {
    const auto& q = c["quantization_config"];
    if (q.contains("quant_method") && q["quant_method"].is_string())
      method = q["quant_method"].get<std::string>();
  }
  if (method.empty() && hfq.value().contains("quantization")) method = "modelopt";
  if (method == "compressed-tensors") return formats::read_compressed_tensors(ckpt, c);
  if (method == "mxfp4") return formats::read_gpt_oss(ckpt, c);
  if (method == "quark") return formats::read_quark(ckpt, c);
  if (method == "modelopt") return formats::read_modelopt(ckpt, c, hfq.value());
  if (method == "fp8" || method == "deepseek") return formats::read_deepseek(ckpt, c);
  if (!method.empty())
    return unimplemented("quantization_config.quant_method '" + method + "' in " + ckpt.root() +
                         "/config.json is not an MX format mxq reads (compressed-tensors, "
                         "mxfp4 (gpt-oss), quark, modelopt, fp8 (DeepSeek))");
  // No quantization config: DeepSeek-V4 style checkpoints carry MX experts under `.scale`
  // names without one; otherwise the model is unquantized.
  ModelInfo info;
  for (const std::string& n : ckpt.names())
    if (formats::ends_with(n, ".scale")) return formats::read_deepseek(ckpt, c);
  info.format = "unquantized";
  formats::finalize(info, ckpt);
  return info;
}

// The format readers read optional config fields with field_or, which throws on a field of the
// wrong type; nlohmann may throw on a shape the readers did not foresee. Both become a data-loss
// Status naming config.json, never an exception out of the reader (the model fuzzer checks).
StatusOr<ModelInfo> read_model(const Checkpoint& ckpt) {
  try {
    return read_model_unguarded(ckpt);
  } catch (const ConfigFieldError& e) {
    return Status(StatusCode::kDataLoss, ckpt.root() + "/config.json: " + e.what());
  } catch (const nlohmann::json::exception& e) {
    return Status(StatusCode::kDataLoss, ckpt.root() + "/config.json: " + e.what());
  }
}

StatusOr<std::vector<float>> dequantize_weight(const MXWeight& w, int threads) {
  const int64_t rows = w.batch() * w.n();
  std::vector<float> out(size_t(rows * w.k()));
  MXQ_RETURN_IF_ERROR(dequantize(w.packed.data(), w.scales.data(), w.elem, rows, w.k(),
                                 DType::kF32, out.data(), threads));
  return out;
}

}  // namespace mxq::io
