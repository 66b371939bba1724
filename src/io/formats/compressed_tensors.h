// compressed-tensors (vLLM / llm-compressor) naming and config, shared by the reader, the
// quantize pipeline and convert.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "mxq/quantize.h"

namespace mxq::io::formats::ct {

// The compressed-tensors `format` string for an element type. mxfp4-pack-quantized,
// mxfp6-pack-quantized (E2M3, four codes in three little-endian bytes) and mxfp8-quantized are
// the ecosystem's; the E3M2, E5M2 and MXINT8 names are mxq extensions in the same spirit
// (docs/formats.md) that other readers do not load.
const char* format_name(ElemType t);
StatusOr<ElemType> parse_format(std::string_view format);

// Tensor names and dtypes of one quantized module.
struct Names {
  std::string packed;   // <m>.weight_packed (sub-byte / int) or <m>.weight (FP8)
  StDType packed_dtype;
  std::string scale;    // <m>.weight_scale, U8
};
Names names_for(const std::string& module, ElemType t);

// What quantization_config describes, beyond the tensors.
struct Recipe {
  ElemType elem = ElemType::kE2M1;
  ActScheme act = ActScheme::kNone;
  std::optional<ScaleRule> scale_rule;  // the rule the bits were made with, when known
  std::vector<std::string> ignore;                           // module names / re: patterns
  std::vector<std::pair<std::string, GateUpLayout>> gate_up;  // module -> recorded layout
};

// Builds the quantization_config object for `r`.
json make_quantization_config(const Recipe& r);

}  // namespace mxq::io::formats::ct
