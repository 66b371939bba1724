// The embedded sample model: generated, not shipped, so it costs no repository space and is
// identical on every machine (a fixed integer hash drives every value).
#include <cmath>

#include "formats/common.h"
#include "mxq/numerics.h"
#include "mxq/pipeline.h"
#include "output_dir.h"

namespace mxq::io {

namespace {

constexpr int64_t kVocab = 512, kHidden = 256, kDenseInter = 512, kExperts = 8, kMoeInter = 256;

// Deterministic pseudo-normal values: sum of uniforms from a 64-bit mix, with rare outliers
// like real weight matrices have (they are what makes the scale rules differ).
float sample_value(uint64_t seed, uint64_t i, float stddev) {
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  const uint64_t h = mix(seed * 0x100000001B3ull + i);
  double s = 0;
  for (int k = 0; k < 4; ++k) s += double((h >> (16 * k)) & 0xFFFF) / 65535.0 - 0.5;
  double v = s * std::sqrt(3.0) * stddev;  // variance of the sum of 4 U(-.5,.5) is 1/3
  if (h % 4093 == 0) v *= 12.0;            // outlier
  return float(v);
}

struct Spec {
  std::string name;
  std::vector<int64_t> shape;
  float stddev;
};

std::vector<Spec> layer_specs(int layer, bool moe) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  std::vector<Spec> s = {
      {p + "input_layernorm.weight", {kHidden}, 0.1f},
      {p + "self_attn.q_proj.weight", {kHidden, kHidden}, 0.02f},
      {p + "self_attn.k_proj.weight", {kHidden / 2, kHidden}, 0.02f},
      {p + "self_attn.v_proj.weight", {kHidden / 2, kHidden}, 0.02f},
      {p + "self_attn.o_proj.weight", {kHidden, kHidden}, 0.02f},
      {p + "post_attention_layernorm.weight", {kHidden}, 0.1f},
  };
  if (!moe) {
    s.push_back({p + "mlp.gate_proj.weight", {kDenseInter, kHidden}, 0.02f});
    s.push_back({p + "mlp.up_proj.weight", {kDenseInter, kHidden}, 0.02f});
    s.push_back({p + "mlp.down_proj.weight", {kHidden, kDenseInter}, 0.02f});
  } else {
    s.push_back({p + "mlp.router.weight", {kExperts, kHidden}, 0.05f});
    s.push_back({p + "mlp.router.bias", {kExperts}, 0.01f});
    // gpt-oss-shaped fused experts, rows interleaved gate0, up0, gate1, up1, ...
    s.push_back({p + "mlp.experts.gate_up_proj.weight", {kExperts, 2 * kMoeInter, kHidden}, 0.02f});
    s.push_back({p + "mlp.experts.gate_up_proj.bias", {kExperts, 2 * kMoeInter}, 0.01f});
    s.push_back({p + "mlp.experts.down_proj.weight", {kExperts, kHidden, kMoeInter}, 0.02f});
    s.push_back({p + "mlp.experts.down_proj.bias", {kExperts, kHidden}, 0.01f});
  }
  return s;
}

Status write_shard(const std::filesystem::path& path, const std::vector<Spec>& specs,
                   uint64_t seed0, formats::json& weight_map) {
  std::vector<SafetensorsWriter::Decl> decls;
  for (const Spec& s : specs) {
    decls.push_back({s.name, StDType::kBF16, s.shape});
    weight_map[s.name] = path.filename().string();
  }
  auto w = SafetensorsWriter::create(path.string(), decls, {{"format", "pt"}});
  if (!w.ok()) return w.status();
  uint64_t seed = seed0;
  for (const Spec& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    std::vector<uint8_t> bytes(size_t(n) * 2);
    const bool norm = s.name.find("norm") != std::string::npos;
    for (int64_t i = 0; i < n; ++i) {
      const float v = (norm ? 1.0f : 0.0f) + sample_value(seed, uint64_t(i), s.stddev);
      const uint16_t h = num::f32_to_bf16(v);
      bytes[size_t(2 * i)] = uint8_t(h);
      bytes[size_t(2 * i + 1)] = uint8_t(h >> 8);
    }
    MXQ_RETURN_IF_ERROR(w.value()->write(bytes));
    ++seed;
  }
  return w.value()->finish();
}

}  // namespace

Status write_sample_model(const std::string& outdir, bool overwrite) {
  auto staged_or = StagedDir::create(outdir, overwrite);
  if (!staged_or.ok()) return staged_or.status();
  StagedDir staged = std::move(staged_or).value();
  std::vector<Spec> shard1 = {{"model.embed_tokens.weight", {kVocab, kHidden}, 0.02f}};
  for (const Spec& s : layer_specs(0, false)) shard1.push_back(s);
  for (const Spec& s : layer_specs(1, false)) shard1.push_back(s);
  std::vector<Spec> shard2 = layer_specs(2, true);
  shard2.push_back({"model.norm.weight", {kHidden}, 0.1f});
  shard2.push_back({"lm_head.weight", {kVocab, kHidden}, 0.02f});

  formats::json weight_map = formats::json::object();
  const std::string f1 = "model-00001-of-00002.safetensors", f2 = "model-00002-of-00002.safetensors";
  MXQ_RETURN_IF_ERROR(write_shard(staged.path() / f1, shard1, 1000, weight_map));
  MXQ_RETURN_IF_ERROR(write_shard(staged.path() / f2, shard2, 2000, weight_map));
  const uint64_t total = std::filesystem::file_size(staged.path() / f1) +
                         std::filesystem::file_size(staged.path() / f2);
  const formats::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  MXQ_RETURN_IF_ERROR(
      write_text_file(staged.path() / "model.safetensors.index.json", index.dump(2) + "\n"));
  const formats::json config = {
      {"architectures", {"GptOssForCausalLM"}},
      {"model_type", "gpt_oss"},
      {"hidden_size", kHidden},
      {"intermediate_size", kMoeInter},
      {"num_hidden_layers", 3},
      {"num_local_experts", kExperts},
      {"num_experts_per_tok", 2},
      {"swiglu_limit", 7.0},
      {"vocab_size", kVocab},
      {"torch_dtype", "bfloat16"},
      {"mxq_sample", "deterministic sample model written by `mxq sample`; layers 0-1 dense, "
                     "layer 2 MoE with interleaved gate/up experts"}};
  MXQ_RETURN_IF_ERROR(write_text_file(staged.path() / "config.json", config.dump(2) + "\n"));
  return staged.commit();
}

}  // namespace mxq::io
