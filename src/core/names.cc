// Names of the enums in formats.h, their parsers, and option validation.
#include <string>

#include "mxq/formats.h"
#include "mxq/quantize.h"

namespace mxq {

const char* elem_type_name(ElemType t) {
  switch (t) {
    case ElemType::kE2M1: return "e2m1";
    case ElemType::kE2M3: return "e2m3";
    case ElemType::kE3M2: return "e3m2";
    case ElemType::kE4M3: return "e4m3";
    case ElemType::kE5M2: return "e5m2";
    case ElemType::kInt8: return "int8";
  }
  return "?";
}

const char* mx_format_name(ElemType t) {
  switch (t) {
    case ElemType::kE2M1: return "mxfp4";
    case ElemType::kE2M3: return "mxfp6-e2m3";
    case ElemType::kE3M2: return "mxfp6-e3m2";
    case ElemType::kE4M3: return "mxfp8";
    case ElemType::kE5M2: return "mxfp8-e5m2";
    case ElemType::kInt8: return "mxint8";
  }
  return "?";
}

const char* scale_rule_name(ScaleRule r) {
  switch (r) {
    case ScaleRule::kFloor: return "floor";
    case ScaleRule::kRceil: return "rceil";
    case ScaleRule::kRoundUp: return "round_up";
    case ScaleRule::kEven: return "even";
    case ScaleRule::kEvenFp4Mantissa: return "even_fp4_mantissa";
  }
  return "?";
}

const char* rounding_name(Rounding r) {
  switch (r) {
    case Rounding::kRne: return "rne";
    case Rounding::kHalfAway: return "half_away";
    case Rounding::kTowardZeroTies: return "toward_zero_ties";
  }
  return "?";
}

const char* saturation_name(Saturation s) {
  return s == Saturation::kSaturate ? "saturate" : "nan_inf";
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
  }
  return "?";
}

namespace {

// Looks `s` up among the names of `values` (plus `aliases`), or explains what is accepted.
template <typename E, size_t N>
StatusOr<E> parse_enum(std::string_view what, std::string_view s, const E (&values)[N],
                       const char* (*name)(E),
                       std::initializer_list<std::pair<std::string_view, E>> aliases = {}) {
  std::string accepted;
  for (E v : values) {
    if (s == name(v)) return v;
    accepted += (accepted.empty() ? "" : ", ") + std::string(name(v));
  }
  for (const auto& [alias, v] : aliases) {
    if (s == alias) return v;
    accepted += ", " + std::string(alias);
  }
  return invalid_argument("unknown " + std::string(what) + " '" + std::string(s) +
                          "' (expected one of: " + accepted + ")");
}

}  // namespace

StatusOr<ElemType> parse_elem_type(std::string_view s) {
  // Element names first; format names as aliases (mxfp8 means E4M3, as everywhere else).
  return parse_enum<ElemType>("element type", s, kAllElemTypes, elem_type_name,
                              {{"mxfp4", ElemType::kE2M1},
                               {"mxfp6-e2m3", ElemType::kE2M3},
                               {"mxfp6-e3m2", ElemType::kE3M2},
                               {"mxfp8", ElemType::kE4M3},
                               {"mxfp8-e4m3", ElemType::kE4M3},
                               {"mxfp8-e5m2", ElemType::kE5M2},
                               {"mxint8", ElemType::kInt8}});
}

StatusOr<ScaleRule> parse_scale_rule(std::string_view s) {
  return parse_enum<ScaleRule>("scale rule", s, kAllScaleRules, scale_rule_name);
}

StatusOr<Rounding> parse_rounding(std::string_view s) {
  return parse_enum<Rounding>("element rounding", s, kAllRoundings, rounding_name);
}

StatusOr<Saturation> parse_saturation(std::string_view s) {
  static constexpr Saturation kAll[] = {Saturation::kSaturate, Saturation::kNanInf};
  return parse_enum<Saturation>("saturation", s, kAll, saturation_name);
}

StatusOr<DType> parse_dtype(std::string_view s) {
  static constexpr DType kAll[] = {DType::kF32, DType::kBF16, DType::kF16};
  return parse_enum<DType>("dtype", s, kAll, dtype_name,
                           {{"float32", DType::kF32},
                            {"bfloat16", DType::kBF16},
                            {"float16", DType::kF16}});
}

Status validate(const QuantOptions& o) {
  if (int(o.elem) > int(ElemType::kInt8)) return invalid_argument("unknown element type");
  if (int(o.scale_rule) > int(ScaleRule::kEvenFp4Mantissa))
    return invalid_argument("unknown scale rule");
  if (int(o.rounding) > int(Rounding::kTowardZeroTies))
    return invalid_argument("unknown element rounding");
  if (int(o.saturation) > int(Saturation::kNanInf)) return invalid_argument("unknown saturation");
  if (o.saturation == Saturation::kNanInf && !elem_info(o.elem).has_nan_inf)
    return invalid_argument(std::string("saturation nan_inf needs an FP8 element type; ") +
                            mx_format_name(o.elem) + " has no NaN/Inf codes (use saturate)");
  if (o.threads < 0)
    return invalid_argument("threads = " + std::to_string(o.threads) + " must be >= 0");
  return Status::Ok();
}

std::string describe(const QuantOptions& o) {
  std::string s = std::string(mx_format_name(o.elem)) + " scale=" + scale_rule_name(o.scale_rule) +
                  " round=" + rounding_name(o.rounding) + " sat=" + saturation_name(o.saturation);
  if (o.saturate_scale) s += " saturate_scale";
  if (o.pad_k) s += " pad_k";
  return s;
}

StatusOr<int64_t> quantized_k(int64_t k, bool pad_k) {
  if (k <= 0) return invalid_argument("K = " + std::to_string(k) + " must be positive");
  if (k % kBlockSize == 0) return k;
  if (!pad_k)
    return invalid_argument("K = " + std::to_string(k) +
                            " is not a multiple of the MX block size 32 (pad it, or request "
                            "zero-padding explicitly with pad_k)");
  return (k + kBlockSize - 1) / kBlockSize * kBlockSize;
}

}  // namespace mxq
