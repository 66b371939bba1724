// Whole-model pipelines: quantize a dense checkpoint, convert an MX checkpoint between formats,
// verify one. All outputs are written to a temporary directory next to the target and renamed
// into place only when complete, so a failure never leaves a half-written model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mxq/model.h"
#include "mxq/quantize.h"

namespace mxq::io {

struct QuantizeModelOptions {
  QuantOptions quant;               // element type, scale rule, rounding, threads
  ActScheme act = ActScheme::kNone;  // recorded in the config (weights are what is quantized)
  std::vector<std::string> ignore;  // extra module names / "re:" patterns left unquantized
  bool default_ignores = true;      // embeddings, lm_head, norms, routers/gates
  bool progress = false;            // progress bar on stderr
  bool overwrite = false;           // replace an existing output directory
};

struct QuantizeReport {
  int64_t quantized = 0, copied = 0;  // tensors
  uint64_t bytes_in = 0, bytes_out = 0;
  double seconds = 0;
  std::vector<std::string> ignored;   // modules left unquantized by the ignore rules
};

// The default ignore patterns (regexes over module names), for display and tests.
const std::vector<std::string>& default_ignore_patterns();

// Quantizes every eligible weight of the safetensors file / model directory `input` into a
// compressed-tensors model at `outdir`. Eligible: "<m>.weight" of dtype F32/BF16/F16, rank 2
// (a Linear [N, K]) or rank 3 under an "experts" module ([E, N, K]), K a multiple of 32, module
// not ignored. Streams tensor by tensor (and row-chunk by row-chunk), so memory stays bounded.
StatusOr<QuantizeReport> quantize_model(const std::string& input, const std::string& outdir,
                                        const QuantizeModelOptions& opts);

// Losslessly rewrites an MX checkpoint (any readable format) as compressed-tensors: the same
// element and scale bits; gpt-oss's interleaved gate/up rows are de-interleaved (rows and
// biases) and the resulting "chunked" layout recorded in the config.
StatusOr<QuantizeReport> convert_model(const std::string& input, const std::string& outdir,
                                       bool overwrite = false, bool progress = false);

struct VerifyLayer {
  std::string module;
  std::string format;               // mx format name
  std::vector<int64_t> shape;
  int64_t nan_blocks = 0;           // blocks with scale 0xFF
  bool compared = false;            // an original was found
  double rel_error = 0;             // ||W - deq(W)|| / ||W||
  double max_abs_error = 0;
  int bit_exact = -1;               // re-quantizing the original reproduces the bits: 1/0, -1 n/a
};
struct VerifyReport {
  ModelInfo info;
  std::vector<VerifyLayer> layers;
  std::vector<std::string> problems;  // consistency problems found (empty = ok)
};

// Decodes every MX weight, checks config/shape consistency, and with `original` (the dense
// model it came from) reports per-layer relative error and whether the bits are reproduced.
StatusOr<VerifyReport> verify_model(const std::string& path, const std::string& original = "",
                                    int threads = 0);

// Decodes every MX weight of `input` to a dense model at `outdir` ("<module>.weight" in
// `dtype`, everything else copied, quantization_config removed): exactly the values mxq's
// kernels see, for comparison with other decoders and for tools that need dense weights.
StatusOr<QuantizeReport> dequantize_model(const std::string& input, const std::string& outdir,
                                          DType dtype = DType::kBF16, bool overwrite = false);

// Writes the embedded sample model: a small deterministic BF16 checkpoint in two shards
// (embeddings, two dense decoder layers, one gpt-oss-shaped MoE layer whose fused experts
// [E, 2I, H] interleave gate and up rows, router, norms, lm_head; about 7 MB). The main job
// of the README quantizes it when no model is given.
Status write_sample_model(const std::string& outdir, bool overwrite = false);

}  // namespace mxq::io
