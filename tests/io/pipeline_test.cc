// quantize / convert / verify on whole models: bit-exact round trips, recorded config, the
// sample model, and failure paths that must leave nothing behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mxq/numerics.h"
#include "mxq/pipeline.h"

namespace mxq::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mxq_pipeline_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(write_sample_model((dir_ / "bf16").string()).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& name) const { return (dir_ / name).string(); }
  json config(const std::string& name) const {
    std::ifstream f(dir_ / name / "config.json");
    return json::parse(f);
  }
  fs::path dir_;
};

// Re-quantizes the original tensor of `w` in memory and compares bytes.
void expect_bits_equal_in_memory_quantize(const Checkpoint& orig, const MXWeight& w,
                                          const QuantOptions& q) {
  const Checkpoint::Entry* e = orig.find(w.module + ".weight");
  ASSERT_NE(e, nullptr) << w.module;
  ASSERT_EQ(e->info->shape, w.shape) << w.module;
  const int64_t rows = w.batch() * w.n();
  std::vector<uint8_t> packed(size_t(rows * packed_bytes(q.elem, w.k()))),
      scales(size_t(rows * w.k() / 32));
  ASSERT_TRUE(quantize(e->bytes().data(), DType::kBF16, rows, w.k(), q, packed.data(),
                       scales.data()).ok());
  ASSERT_EQ(packed.size(), w.packed.size()) << w.module;
  EXPECT_EQ(std::memcmp(packed.data(), w.packed.data(), packed.size()), 0) << w.module;
  ASSERT_EQ(scales.size(), w.scales.size()) << w.module;
  EXPECT_EQ(std::memcmp(scales.data(), w.scales.data(), scales.size()), 0) << w.module;
}

TEST_F(PipelineTest, QuantizeRoundTripIsBitExactForEveryScheme) {
  const Checkpoint orig = Checkpoint::open(p("bf16")).value();
  for (ElemType t : kAllElemTypes) {
    QuantizeModelOptions o;
    o.quant.elem = t;
    o.quant.scale_rule = ScaleRule::kRceil;
    const std::string out = p(std::string("q_") + elem_type_name(t));
    const QuantizeReport r = quantize_model(p("bf16"), out, o).value();
    // 2 dense layers x 7 Linears, MoE layer 4 attention + 2 expert stacks = 20.
    EXPECT_EQ(r.quantized, 20) << elem_type_name(t);
    const Checkpoint ck = Checkpoint::open(out).value();
    const ModelInfo info = read_model(ck).value();
    EXPECT_EQ(info.format, "compressed-tensors");
    ASSERT_TRUE(info.scale_rule.has_value());
    EXPECT_EQ(*info.scale_rule, ScaleRule::kRceil);  // recorded by mxq
    ASSERT_EQ(info.weights.size(), 20u);
    for (const MXWeight& w : info.weights) {
      EXPECT_EQ(w.elem, t);
      expect_bits_equal_in_memory_quantize(orig, w, o.quant);
    }
    // Everything else is copied byte for byte.
    for (const std::string& name : info.passthrough) {
      const Checkpoint::Entry* a = orig.find(name);
      const Checkpoint::Entry* b = ck.find(name);
      ASSERT_NE(a, nullptr) << name;
      ASSERT_EQ(a->bytes().size(), b->bytes().size()) << name;
      EXPECT_EQ(std::memcmp(a->bytes().data(), b->bytes().data(), a->bytes().size()), 0) << name;
    }
  }
}

TEST_F(PipelineTest, ConfigRecordsSchemeIgnoresAndInterleavedExperts) {
  QuantizeModelOptions o;
  o.act = ActScheme::kMxfp8;
  ASSERT_TRUE(quantize_model(p("bf16"), p("q"), o).ok());
  const json q = config("q")["quantization_config"];
  EXPECT_EQ(q["quant_method"], "compressed-tensors");
  EXPECT_EQ(q["format"], "mxfp4-pack-quantized");
  EXPECT_EQ(q["quantization_status"], "compressed");
  const json& g = q["config_groups"]["group_0"];
  EXPECT_EQ(g["weights"]["num_bits"], 4);
  EXPECT_EQ(g["weights"]["group_size"], 32);
  EXPECT_EQ(g["input_activations"]["num_bits"], 8);
  EXPECT_EQ(g["input_activations"]["dynamic"], true);
  const auto ignore = q["ignore"].get<std::vector<std::string>>();
  for (const char* m : {"lm_head", "model.embed_tokens", "model.layers.2.mlp.router"})
    EXPECT_NE(std::find(ignore.begin(), ignore.end(), m), ignore.end()) << m;
  EXPECT_EQ(q["mxq"]["gate_up_layout"]["model.layers.2.mlp.experts.gate_up_proj"], "interleaved");
  EXPECT_EQ(config("q")["model_type"], "gpt_oss");  // other keys kept
  const ModelInfo info = read_model(Checkpoint::open(p("q")).value()).value();
  EXPECT_EQ(info.act, ActScheme::kMxfp8);
  // compressed-tensors' run-time activation scales use its weight scale function.
  EXPECT_EQ(info.act_scale_rule, ScaleRule::kEvenFp4Mantissa);
  bool found = false;
  for (const MXWeight& w : info.weights)
    if (w.module == "model.layers.2.mlp.experts.gate_up_proj") {
      found = true;
      EXPECT_EQ(w.gate_up, GateUpLayout::kInterleaved);
      EXPECT_EQ(w.shape, (std::vector<int64_t>{8, 512, 256}));
      EXPECT_EQ(w.bias_name, "model.layers.2.mlp.experts.gate_up_proj.bias");
    }
  EXPECT_TRUE(found);
  // Sharding is mirrored: two shards and an index naming the new tensor names.
  std::ifstream idx(dir_ / "q" / "model.safetensors.index.json");
  const json index = json::parse(idx);
  EXPECT_EQ(index["weight_map"]["lm_head.weight"], "model-00002-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["model.layers.0.mlp.up_proj.weight_packed"],
            "model-00001-of-00002.safetensors");
}

// The compressed-tensors writer and reader agree on every FP8 activation scheme: per-tensor
// dynamic is written as strategy "tensor", dynamic true and read back as fp8-dynamic-tensor.
TEST_F(PipelineTest, Fp8ActivationSchemesRoundTripThroughTheConfig) {
  struct Want {
    ActScheme act;
    const char* strategy;
    bool dynamic;
  };
  for (const Want& w : {Want{ActScheme::kFp8DynamicTensor, "tensor", true},
                        Want{ActScheme::kFp8Dynamic, "token", true},
                        Want{ActScheme::kFp8Static, "tensor", false},
                        Want{ActScheme::kFp8DynamicGroup128, "group", true}}) {
    SCOPED_TRACE(act_scheme_name(w.act));
    QuantizeModelOptions o;
    o.act = w.act;
    o.overwrite = true;
    ASSERT_TRUE(quantize_model(p("bf16"), p("q"), o).ok());
    const json cfg = config("q");
    const json& a = cfg["quantization_config"]["config_groups"]["group_0"]["input_activations"];
    EXPECT_EQ(a["num_bits"], 8);
    EXPECT_EQ(a["strategy"], w.strategy);
    EXPECT_EQ(a["dynamic"], w.dynamic);
    EXPECT_EQ(a["type"], "float");
    if (w.act == ActScheme::kFp8DynamicGroup128) {  // compressed-tensors' MXFP4XFP8 preset
      EXPECT_EQ(a["group_size"], 128);
      EXPECT_FALSE(a.contains("scale_dtype"));  // FP32 scales, not E8M0
    }
    const ModelInfo info = read_model(Checkpoint::open(p("q")).value()).value();
    EXPECT_EQ(info.act, w.act);
  }
}

TEST_F(PipelineTest, UserIgnorePatternsAndNoDefaults) {
  QuantizeModelOptions o;
  o.ignore = {"re:.*self_attn.*", "model.layers.0.mlp.down_proj"};
  const QuantizeReport r = quantize_model(p("bf16"), p("q"), o).value();
  EXPECT_EQ(r.quantized, 20 - 12 - 1);
  QuantizeModelOptions all;
  all.default_ignores = false;
  // Adds lm_head, embed_tokens (K = 256) and the router (K = 256); norms are 1-D.
  EXPECT_EQ(quantize_model(p("bf16"), p("q_all"), all).value().quantized, 23);
}

TEST_F(PipelineTest, VerifyAgainstOriginalIsBitExactWithRecordedRule) {
  QuantizeModelOptions o;
  o.quant.scale_rule = ScaleRule::kEvenFp4Mantissa;
  ASSERT_TRUE(quantize_model(p("bf16"), p("q"), o).ok());
  const VerifyReport r = verify_model(p("q"), p("bf16")).value();
  EXPECT_TRUE(r.problems.empty()) << r.problems.front();
  ASSERT_EQ(r.layers.size(), 20u);
  for (const VerifyLayer& l : r.layers) {
    EXPECT_TRUE(l.compared) << l.module;
    EXPECT_EQ(l.bit_exact, 1) << l.module;
    EXPECT_GT(l.rel_error, 0.01) << l.module;  // MXFP4 is lossy ...
    EXPECT_LT(l.rel_error, 0.25) << l.module;  // ... but not broken
    EXPECT_EQ(l.nan_blocks, 0);
  }
}

TEST_F(PipelineTest, ConvertCompressedTensorsKeepsEveryBit) {
  QuantizeModelOptions o;
  o.quant.elem = ElemType::kE4M3;
  ASSERT_TRUE(quantize_model(p("bf16"), p("q"), o).ok());
  ASSERT_TRUE(convert_model(p("q"), p("c")).ok());
  const Checkpoint a = Checkpoint::open(p("q")).value(), b = Checkpoint::open(p("c")).value();
  ASSERT_EQ(a.names(), b.names());
  const std::string fused = "model.layers.2.mlp.experts.gate_up_proj";
  for (const std::string& n : a.names()) {
    const auto x = a.find(n)->bytes(), y = b.find(n)->bytes();
    ASSERT_EQ(x.size(), y.size()) << n;
    if (n.rfind(fused, 0) != 0) {
      EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << n;
      continue;
    }
    // Fused gate/up tensors [E, 2I, row]: output row j is input row 2j (gate) for j < I and
    // 2(j - I) + 1 (up) after: the same bytes, permuted.
    const auto& shape = a.find(n)->info->shape;
    const int64_t experts = shape[0], rows = shape[1], half = rows / 2;
    const size_t row = x.size() / size_t(experts * rows);
    for (int64_t e = 0; e < experts; ++e)
      for (int64_t j = 0; j < rows; ++j) {
        const int64_t src = j < half ? 2 * j : 2 * (j - half) + 1;
        EXPECT_EQ(std::memcmp(y.data() + size_t(e * rows + j) * row,
                              x.data() + size_t(e * rows + src) * row, row), 0)
            << n << " expert " << e << " row " << j;
      }
  }
  // The interleaved gate/up of the source is de-interleaved and recorded as chunked.
  EXPECT_EQ(config("c")["quantization_config"]["mxq"]["gate_up_layout"]
                  ["model.layers.2.mlp.experts.gate_up_proj"], "chunked");
}

TEST_F(PipelineTest, FailuresLeaveNothingBehind) {
  QuantizeModelOptions o;
  // Missing input.
  auto missing = quantize_model(p("nope"), p("q"), o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  // Existing non-empty output is refused and untouched.
  fs::create_directories(dir_ / "exists");
  std::ofstream(dir_ / "exists" / "keep.txt") << "keep";
  auto exists = quantize_model(p("bf16"), p("exists"), o);
  ASSERT_FALSE(exists.ok());
  EXPECT_NE(exists.status().message().find("already exists"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir_ / "exists" / "keep.txt"));
  // A bad regex is reported before anything is written.
  o.ignore = {"re:(unclosed"};
  auto bad = quantize_model(p("bf16"), p("q"), o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("re:(unclosed"), std::string::npos);
  // Already quantized input.
  o.ignore.clear();
  ASSERT_TRUE(quantize_model(p("bf16"), p("q"), o).ok());
  auto twice = quantize_model(p("q"), p("q2"), o);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("already quantized"), std::string::npos);
  // A truncated shard fails the whole run: no output directory, no temp directory.
  fs::copy(dir_ / "bf16", dir_ / "broken", fs::copy_options::recursive);
  const fs::path shard = dir_ / "broken" / "model-00002-of-00002.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 10);
  auto trunc = quantize_model(p("broken"), p("q3"), o);
  ASSERT_FALSE(trunc.ok());
  EXPECT_NE(trunc.status().message().find("model-00002-of-00002.safetensors"), std::string::npos);
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find("q3"), std::string::npos) << e.path();
}

TEST_F(PipelineTest, SampleModelIsDeterministic) {
  ASSERT_TRUE(write_sample_model(p("again")).ok());
  for (const char* f : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                        "config.json", "model.safetensors.index.json"}) {
    std::ifstream a(dir_ / "bf16" / f, std::ios::binary), b(dir_ / "again" / f, std::ios::binary);
    const std::string sa((std::istreambuf_iterator<char>(a)), {}),
        sb((std::istreambuf_iterator<char>(b)), {});
    EXPECT_FALSE(sa.empty()) << f;
    EXPECT_EQ(sa, sb) << f;
  }
}

}  // namespace
}  // namespace mxq::io
