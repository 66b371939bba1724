// The canonical view of an MX checkpoint, whatever format produced it.
//
// Every format adapter (src/io/formats/) maps its tensors to MXWeight records: packed elements
// [.., N, K * bits / 8] row-major and E8M0 scale bytes [.., N, K / 32], both as byte views into
// the memory-mapped files (the canonical layout is what every format stores, up to reshaping,
// so reading copies nothing). Backends derive their own layouts from this with explicit repacks.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mxq/formats.h"
#include "mxq/safetensors.h"
#include "mxq/status.h"

namespace mxq::io {

// How activations are quantized at run time, as recorded by the checkpoint.
enum class ActScheme : uint8_t {
  kNone,        // weight-only: W4A16 / W8A16 (BF16 or FP16 activations)
  kMxfp4,       // dynamic MXFP4 per 32-block (W4A4)
  kMxfp8,       // dynamic MXFP8 E4M3 per 32-block (W8A8 / W4A8-MX)
  kFp8Static,   // FP8 E4M3 with a static per-tensor input_scale (W4A8, Quark / ModelOpt)
  kFp8Dynamic,  // FP8 E4M3 per-token dynamic
  kMxfp6E2M3,   // dynamic MXFP6 E2M3 per 32-block (Quark input_tensors fp6_e2m3)
  kMxfp6E3M2,   // dynamic MXFP6 E3M2 per 32-block (Quark input_tensors fp6_e3m2)
  kFp8DynamicTensor,  // FP8 E4M3 with one dynamic per-tensor scale (compressed-tensors strategy
                      // "tensor", dynamic true)
  kFp8DynamicGroup128,  // FP8 E4M3 with a dynamic scale per token and 128-group (compressed-
                        // tensors strategy "group", group_size 128, dynamic: MXFP4XFP8)
};
const char* act_scheme_name(ActScheme a);  // "none", "mxfp4", "mxfp8", "fp8-static", "fp8-dynamic",
                                           // "mxfp6-e2m3", "mxfp6-e3m2", "fp8-dynamic-tensor",
                                           // "fp8-dynamic-group128"
StatusOr<ActScheme> parse_act_scheme(std::string_view s);

// Order of gate and up projections inside a fused MoE w13 tensor.
enum class GateUpLayout : uint8_t {
  kNone,         // not a fused gate/up tensor
  kChunked,      // all gate rows, then all up rows
  kInterleaved,  // gate0, up0, gate1, up1, ... (gpt-oss)
  kSeparate,     // gate (w1) and up (w3) are separate tensors (DeepSeek, Qwen)
};
const char* gate_up_layout_name(GateUpLayout g);  // "none", "chunked", "interleaved", "separate"
StatusOr<GateUpLayout> parse_gate_up_layout(std::string_view s);

// One MX-quantized weight: a Linear [N, K] or a stack of experts [E, N, K].
struct MXWeight {
  std::string module;             // e.g. "model.layers.0.self_attn.q_proj"
  ElemType elem = ElemType::kE2M1;
  std::vector<int64_t> shape;     // logical element shape [.., N, K]
  std::string packed_name;        // source tensor names, for messages and conversion
  std::string scale_name;
  std::span<const uint8_t> packed;  // canonical bytes [.., N, K * bits / 8]
  std::span<const uint8_t> scales;  // canonical bytes [.., N, K / 32]
  std::string bias_name;            // "" when there is none
  std::string input_scale_name;     // static activation scale tensor, "" when none
  GateUpLayout gate_up = GateUpLayout::kNone;

  int64_t k() const { return shape.back(); }
  int64_t n() const { return shape[shape.size() - 2]; }
  int64_t batch() const;  // product of leading dims (experts), 1 for a Linear
  uint64_t bytes() const { return packed.size() + scales.size(); }
};

struct ModelInfo {
  std::string format;  // "compressed-tensors", "gpt-oss", "quark", "modelopt", "deepseek",
                       // or "unquantized"
  std::string scheme;  // producer's scheme name, e.g. "mxfp4-pack-quantized", "w_mxfp4_a_fp8"
  ActScheme act = ActScheme::kNone;
  std::optional<ScaleRule> scale_rule;  // the producer's scale rule when the format implies one
  // How the producer's writer rounds elements (with scale_rule: what re-quantizing an original
  // needs to give the file's bytes). RNE unless the reader knows otherwise: ModelOpt's MXFP4
  // export rounds ties toward zero.
  Rounding rounding = Rounding::kRne;
  // MX activation schemes: the block scale rule the checkpoint's config names for the
  // activations (Quark input_tensors.scale_calculation_mode); unset: not recorded (floor).
  std::optional<ScaleRule> act_scale_rule;
  std::vector<MXWeight> weights;        // sorted by module name
  std::vector<std::string> ignored;     // modules the config excludes from quantization
  std::vector<std::string> passthrough;  // tensors not part of any MXWeight (sorted)
};

// Detects the checkpoint's format from its config (config.json quantization_config,
// hf_quant_config.json) and maps its tensors. Errors name the tensor, its shape and what was
// expected.
StatusOr<ModelInfo> read_model(const Checkpoint& ckpt);

// Decodes one MX weight to FP32, [batch * N * K] row-major.
StatusOr<std::vector<float>> dequantize_weight(const MXWeight& w, int threads = 0);

}  // namespace mxq::io
