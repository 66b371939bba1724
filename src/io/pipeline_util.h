// Small pieces shared by the quantize / convert / verify pipelines.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "formats/common.h"
#include "mxq/model.h"
#include "mxq/safetensors.h"

namespace mxq::io::detail {

// config.json parsed (an empty object when the checkpoint has none).
StatusOr<formats::json> parse_config(const Checkpoint& ck);

// A checkpoint opened with its canonical view and config, for the pipelines that read MX
// models (convert, dequantize). `info` holds views into `ck`'s mappings.
struct OpenedModel {
  std::unique_ptr<Checkpoint> ck;
  ModelInfo info;
  formats::json config;
};
StatusOr<OpenedModel> open_model(const std::string& path);

// Output file name for an input shard: the same name ("model.safetensors" for a single file).
std::string shard_name(const Checkpoint& ck, const SafetensorsFile& f);

// Writes config.json and, when the output has several shards, model.safetensors.index.json.
Status write_model_metadata(const Checkpoint& ck, const std::filesystem::path& out,
                            const formats::json& config, const formats::json& weight_map);

// Copies the input directory's other files (tokenizer, generation config, ...), leaving out
// safetensors files, the index, config.json and hf_quant_config.json.
Status copy_side_files(const Checkpoint& ck, const std::filesystem::path& out);

uint64_t dir_bytes(const std::filesystem::path& dir);

// A dense tensor (F32 / BF16 / F16) widened to FP32.
StatusOr<std::vector<float>> to_f32(const Checkpoint::Entry& e);

// A one-line progress bar on stderr, drawn only when enabled (a terminal).
class Progress {
 public:
  Progress(bool enabled, uint64_t total) : on_(enabled), total_(total ? total : 1) {}
  void begin(const std::string& what);
  void advance(uint64_t bytes);
  void done();

 private:
  void draw();
  bool on_;
  uint64_t total_, done_ = 0;
  std::string what_;
  int last_pct_ = -1;
};

}  // namespace mxq::io::detail
