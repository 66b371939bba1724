// Format adapters (gpt-oss, ModelOpt, DeepSeek; Quark in formats_quark_test.cc): each test
// writes a small checkpoint in the format's exact tensor layout and config, with packed bytes
// made by mxq::quantize, then checks read_model()'s view of it byte for byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "formats_fixture.h"

namespace mxq::io {
namespace {

// ---- compressed-tensors input_activations -----------------------------------------------------

json ct_config(const json& input_activations) {
  return {{"quantization_config",
           {{"quant_method", "compressed-tensors"},
            {"format", "mxfp4-pack-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"weights",
                 {{"num_bits", 4}, {"type", "float"}, {"symmetric", true}, {"strategy", "group"},
                  {"group_size", 32}, {"dynamic", false}}},
                {"input_activations", input_activations},
                {"format", "mxfp4-pack-quantized"}}}}},
            {"ignore", {"lm_head"}}}}};
}

json fp8_act(const char* strategy, bool dynamic) {
  return {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}, {"strategy", strategy},
          {"dynamic", dynamic}, {"observer", nullptr}};
}

// llm-compressor's FP8 activations with a dynamic per-tensor scale (strategy "tensor", dynamic
// true) read as fp8-dynamic-tensor (they were refused before); "token" stays per token,
// "tensor" without dynamic static; FP8 per group of 128 dynamic (the MXFP4XFP8 preset) is
// fp8-dynamic-group128. Integer, static-group, other-group and non-E8M0 group-32 schemes are
// refused, never read as the nearest known one.
TEST_F(FormatsTest, CompressedTensorsFp8ActivationStrategies) {
  const MXMatrix q = make_mx(ElemType::kE2M1, 16, 64, 90, ScaleRule::kEvenFp4Mantissa);
  add_mx("l.weight_packed", StDType::kU8, {16, 32}, "l.weight_scale", StDType::kU8, {16, 2}, q);
  struct Want {
    json act;
    ActScheme scheme;
  };
  json g128 = fp8_act("group", true);
  g128["group_size"] = 128;
  for (const Want& w : {Want{fp8_act("tensor", true), ActScheme::kFp8DynamicTensor},
                        Want{fp8_act("token", true), ActScheme::kFp8Dynamic},
                        Want{fp8_act("tensor", false), ActScheme::kFp8Static},
                        Want{g128, ActScheme::kFp8DynamicGroup128}}) {
    SCOPED_TRACE(w.act.dump());
    write_json("config.json", ct_config(w.act));
    auto r = read();
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r.value().format, "compressed-tensors");
    EXPECT_EQ(r.value().act, w.scheme);
    EXPECT_FALSE(r.value().act_scale_rule.has_value());  // FP8 keys have no block scale rule
    ASSERT_EQ(r.value().weights.size(), 1u);
    expect_weight(r.value().weights[0], "l", ElemType::kE2M1, {16, 64}, q);
  }
  EXPECT_STREQ(act_scheme_name(ActScheme::kFp8DynamicTensor), "fp8-dynamic-tensor");
  EXPECT_EQ(parse_act_scheme("fp8-dynamic-tensor").value(), ActScheme::kFp8DynamicTensor);
  EXPECT_STREQ(act_scheme_name(ActScheme::kFp8DynamicGroup128), "fp8-dynamic-group128");
  EXPECT_EQ(parse_act_scheme("fp8-dynamic-group128").value(), ActScheme::kFp8DynamicGroup128);

  // Refused, each with the reason in the message.
  struct Bad {
    json act;
    const char* says;
  };
  json int_token = fp8_act("token", true);
  int_token["type"] = "int";  // INT8 per-token (W4A8-INT), not FP8
  json no_type = fp8_act("tensor", false);
  no_type.erase("type");  // compressed-tensors' default type is int
  json static_g128 = g128;
  static_g128["dynamic"] = false;
  json g64 = g128;
  g64["group_size"] = 64;
  json fp8_g32 = fp8_act("group", true);  // float group 32 without E8M0 scales: FP32 scales
  fp8_g32["group_size"] = 32;
  json int_g32 = fp8_g32;
  int_g32["type"] = "int";
  int_g32["scale_dtype"] = "torch.uint8";
  for (const Bad& b : {Bad{int_token, "describes an activation scheme mxq does not know"},
                       Bad{no_type, "describes an activation scheme mxq does not know"},
                       Bad{static_g128, "8-bit float activations with a static scale per group of 128"},
                       Bad{g64, "8-bit float activations with a dynamic scale per group of 64"},
                       Bad{fp8_g32, "8-bit float activations with a dynamic scale per group of 32"},
                       Bad{int_g32, "8-bit integer activations with a dynamic scale per group of 32"}}) {
    SCOPED_TRACE(b.act.dump());
    write_json("config.json", ct_config(b.act));
    auto bad = read();
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), StatusCode::kUnimplemented);
    EXPECT_NE(bad.status().message().find(b.says), std::string::npos) << bad.status().message();
    EXPECT_NE(bad.status().message().find("FP8 per-128-group dynamic"), std::string::npos)
        << bad.status().message();
  }
}

// ---- gpt-oss -------------------------------------------------------------------------------

json gpt_oss_config() {
  return {{"architectures", {"GptOssForCausalLM"}},
          {"quantization_config",
           {{"quant_method", "mxfp4"},
            {"modules_to_not_convert",
             {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
              "lm_head"}}}}};
}

// E = 2 experts, H = 64, I = 32: gate_up [E, 2I, H/32, 16], down [E, H, I/32, 16].
constexpr int64_t kE = 2, kH = 64, kI = 32;

TEST_F(FormatsTest, GptOssInterleavedExperts) {
  write_json("config.json", gpt_oss_config());
  const std::string p = "model.layers.0.mlp.experts.";
  const MXMatrix gu = make_mx(ElemType::kE2M1, kE * 2 * kI, kH, 1, ScaleRule::kRoundUp);
  const MXMatrix down = make_mx(ElemType::kE2M1, kE * kH, kI, 2, ScaleRule::kRoundUp);
  add(p + "down_proj_bias", StDType::kBF16, {kE, kH}, random_bytes(kE * kH * 2, 3));
  add_mx(p + "down_proj_blocks", StDType::kU8, {kE, kH, kI / 32, 16}, p + "down_proj_scales",
         StDType::kU8, {kE, kH, kI / 32}, down);
  add(p + "gate_up_proj_bias", StDType::kBF16, {kE, 2 * kI}, random_bytes(kE * 2 * kI * 2, 4));
  add_mx(p + "gate_up_proj_blocks", StDType::kU8, {kE, 2 * kI, kH / 32, 16},
         p + "gate_up_proj_scales", StDType::kU8, {kE, 2 * kI, kH / 32}, gu);
  add("model.layers.0.mlp.router.weight", StDType::kBF16, {kE, kH}, random_bytes(kE * kH * 2, 5));
  add("model.layers.0.mlp.router.bias", StDType::kBF16, {kE}, random_bytes(kE * 2, 6));

  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const ModelInfo& info = r.value();
  EXPECT_EQ(info.format, "gpt-oss");
  EXPECT_EQ(info.scheme, "mxfp4");
  EXPECT_EQ(info.act, ActScheme::kNone);
  EXPECT_EQ(info.scale_rule, ScaleRule::kRoundUp);
  EXPECT_EQ(info.ignored, (std::vector<std::string>{"lm_head", "model.embed_tokens",
                                                    "model.layers.*.mlp.router",
                                                    "model.layers.*.self_attn"}));
  ASSERT_EQ(info.weights.size(), 2u);
  expect_weight(info.weights[0], p + "down_proj", ElemType::kE2M1, {kE, kH, kI}, down,
                GateUpLayout::kNone, p + "down_proj_bias");
  expect_weight(info.weights[1], p + "gate_up_proj", ElemType::kE2M1, {kE, 2 * kI, kH}, gu,
                GateUpLayout::kInterleaved, p + "gate_up_proj_bias");
  EXPECT_EQ(info.weights[1].batch(), kE);
  for (const char* n : {"model.layers.0.mlp.router.weight", "model.layers.0.mlp.router.bias"})
    EXPECT_NE(std::find(info.passthrough.begin(), info.passthrough.end(), n),
              info.passthrough.end())
        << n;
}

TEST_F(FormatsTest, GptOssBlocksWithoutScales) {
  write_json("config.json", gpt_oss_config());
  const MXMatrix gu = make_mx(ElemType::kE2M1, kE * 2 * kI, kH, 1);
  add("model.layers.0.mlp.experts.gate_up_proj_blocks", StDType::kU8, {kE, 2 * kI, kH / 32, 16},
      gu.packed);
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"model.layers.0.mlp.experts.gate_up_proj_blocks",
                       "model.layers.0.mlp.experts.gate_up_proj_scales", "U8 [2, 64, 2]"}));
}

TEST_F(FormatsTest, GptOssWrongScaleShape) {
  write_json("config.json", gpt_oss_config());
  const std::string p = "model.layers.0.mlp.experts.";
  const MXMatrix gu = make_mx(ElemType::kE2M1, kE * 2 * kI, kH, 1);
  // Scales claim K = 32 while the blocks hold K = 64.
  add(p + "gate_up_proj_blocks", StDType::kU8, {kE, 2 * kI, kH / 32, 16}, gu.packed);
  add(p + "gate_up_proj_scales", StDType::kU8, {kE, 4 * kI, 1}, gu.scales);
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {p + "gate_up_proj_blocks", "[2, 64, 2, 16]", "expected [2, 128, 1, 16]"}));
}

TEST_F(FormatsTest, GptOssWrongDtypeAndBias) {
  write_json("config.json", gpt_oss_config());
  const std::string p = "model.layers.0.mlp.experts.";
  const MXMatrix down = make_mx(ElemType::kE2M1, kE * kH, kI, 2);
  add(p + "down_proj_blocks", StDType::kI16, {kE, kH, kI / 32, 8}, down.packed);
  add(p + "down_proj_scales", StDType::kU8, {kE, kH, kI / 32}, down.scales);
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {p + "down_proj_blocks", "I16", "U8"}));

  tensors_.clear();
  add_mx(p + "down_proj_blocks", StDType::kU8, {kE, kH, kI / 32, 16}, p + "down_proj_scales",
         StDType::kU8, {kE, kH, kI / 32}, down);
  add(p + "down_proj_bias", StDType::kBF16, {kE, kH + 1}, random_bytes(kE * (kH + 1) * 2, 3));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {p + "down_proj_bias", "[2, 65]", "expected BF16, F16 or F32 [2, 64]"}));
}

TEST_F(FormatsTest, GptOssScalesWithoutBlocks) {
  write_json("config.json", gpt_oss_config());
  const MXMatrix down = make_mx(ElemType::kE2M1, kE * kH, kI, 2);
  add("model.layers.0.mlp.experts.down_proj_scales", StDType::kU8, {kE, kH, 1}, down.scales);
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"down_proj_scales", "model.layers.0.mlp.experts.down_proj_blocks",
                       "U8 [2, 64, 1, 16]"}));
}

// ---- ModelOpt -----------------------------------------------------------------------------

json modelopt_hf(const std::string& algo, int group = 32) {
  return {{"producer", {{"name", "modelopt"}, {"version", "0.37.0"}}},
          {"quantization",
           {{"quant_algo", algo},
            {"kv_cache_quant_algo", nullptr},
            {"group_size", group},
            {"exclude_modules", {"lm_head", "model.layers.*.mlp.gate"}}}}};
}

TEST_F(FormatsTest, ModelOptMxfp8TwoAndThreeD) {
  write_json("config.json", {{"architectures", {"Qwen3MoeForCausalLM"}}});
  write_json("hf_quant_config.json", modelopt_hf("MXFP8"));
  const MXMatrix o = make_mx(ElemType::kE4M3, 32, 64, 70, ScaleRule::kRceil);
  const MXMatrix e = make_mx(ElemType::kE4M3, 2 * 16, 96, 71, ScaleRule::kRceil);
  const std::string a = "model.layers.0.self_attn.o_proj", x = "model.layers.0.mlp.experts.down";
  add_mx(a + ".weight", StDType::kF8_E4M3, {32, 64}, a + ".weight_scale", StDType::kU8, {32, 2},
         o);
  add_mx(x + ".weight", StDType::kF8_E4M3, {2, 16, 96}, x + ".weight_scale", StDType::kU8,
         {2, 16, 3}, e);
  add("model.layers.0.mlp.gate.weight", StDType::kBF16, {2, 64}, random_bytes(256, 72));
  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const ModelInfo& info = r.value();
  EXPECT_EQ(info.format, "modelopt");
  EXPECT_EQ(info.scheme, "MXFP8");
  EXPECT_EQ(info.act, ActScheme::kMxfp8);
  EXPECT_EQ(info.scale_rule, ScaleRule::kRceil);
  EXPECT_EQ(info.ignored, (std::vector<std::string>{"lm_head", "model.layers.*.mlp.gate"}));
  ASSERT_EQ(info.weights.size(), 2u);
  expect_weight(info.weights[0], x, ElemType::kE4M3, {2, 16, 96}, e);
  expect_weight(info.weights[1], a, ElemType::kE4M3, {32, 64}, o);
  EXPECT_EQ(info.passthrough, std::vector<std::string>{"model.layers.0.mlp.gate.weight"});
}

TEST_F(FormatsTest, ModelOptConfigJsonW4A8) {
  write_json("config.json", {{"quantization_config",
                              {{"quant_method", "modelopt"},
                               {"quant_algo", "W4A8_MXFP4_FP8"},
                               {"exclude_modules", {"lm_head"}}}}});
  const MXMatrix q = make_mx(ElemType::kE2M1, 16, 64, 80, ScaleRule::kRceil);
  add_mx("l.weight", StDType::kU8, {16, 32}, "l.weight_scale", StDType::kU8, {16, 2}, q);
  add("l.input_scale", StDType::kF32, {}, f32_scalar(2.0f));
  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().scheme, "W4A8_MXFP4_FP8");
  EXPECT_EQ(r.value().act, ActScheme::kFp8Static);
  ASSERT_EQ(r.value().weights.size(), 1u);
  expect_weight(r.value().weights[0], "l", ElemType::kE2M1, {16, 64}, q, GateUpLayout::kNone, "",
                "l.input_scale");
}

TEST_F(FormatsTest, ModelOptNvfp4Unimplemented) {
  write_json("hf_quant_config.json", modelopt_hf("NVFP4", 16));
  add("l.weight", StDType::kU8, {16, 32}, random_bytes(512, 1));
  add("l.weight_scale", StDType::kF8_E4M3, {16, 4}, random_bytes(64, 2));
  add("l.weight_scale_2", StDType::kF32, {}, f32_scalar(1.0f));
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kUnimplemented,
                      {"quant_algo \"NVFP4\"", "not MX", "MXFP8", "W4A8_MXFP4_FP8"}));
}

TEST_F(FormatsTest, ModelOptMalformed) {
  write_json("hf_quant_config.json", modelopt_hf("MXFP8"));
  const MXMatrix o = make_mx(ElemType::kE4M3, 8, 64, 90);
  add_mx("l.weight", StDType::kBF16, {8, 32}, "l.weight_scale", StDType::kU8, {8, 2}, o);
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {"'l.weight'", "BF16", "F8_E4M3"}));
  tensors_.clear();
  add_mx("l.weight", StDType::kF8_E4M3, {8, 64}, "l.weight_scale", StDType::kU8, {4, 4}, o);
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {"'l.weight'", "[8, 64]", "[4, 128]"}));
  tensors_.clear();
  add("l.weight_scale", StDType::kU8, {8, 2}, o.scales);
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"l.weight_scale", "'l.weight' F8_E4M3 [8, 64]"}));
  tensors_.clear();
  add("l.weight", StDType::kF8_E4M3, {8, 64}, o.packed);
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"'l.weight'", "'l.weight_scale' U8 [8, 2]"}));
  tensors_.clear();
  write_json("hf_quant_config.json", modelopt_hf("MXFP8", 16));
  add_mx("l.weight", StDType::kF8_E4M3, {8, 64}, "l.weight_scale", StDType::kU8, {8, 2}, o);
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {"group_size is 16", "expected 32"}));
}

// ---- DeepSeek -----------------------------------------------------------------------------

TEST_F(FormatsTest, DeepSeekV4ScaleNamesAndAliases) {
  write_json("config.json", {{"architectures", {"DeepseekV4ForCausalLM"}}});
  const std::string e0 = "layers.0.ffn.experts.0.";
  const MXMatrix w1 = make_mx(ElemType::kE2M1, 32, 64, 100);
  const MXMatrix w2 = make_mx(ElemType::kE2M1, 64, 32, 101);
  const MXMatrix w3 = make_mx(ElemType::kE2M1, 32, 64, 102);
  const MXMatrix f8 = make_mx(ElemType::kE4M3, 16, 64, 103);
  const MXMatrix w13 = make_mx(ElemType::kE2M1, 2 * 2 * 16, 64, 104);
  add_mx(e0 + "w1.weight", StDType::kI8, {32, 32}, e0 + "w1.scale", StDType::kF8_E8M0, {32, 2},
         w1);
  add_mx(e0 + "w2.weight", StDType::kU8, {64, 16}, e0 + "w2.scale", StDType::kF8_E8M0, {64, 1},
         w2);
  // The historical alias: "_inv" holds E8M0 multipliers, not inverses.
  add_mx(e0 + "w3.weight", StDType::kU8, {32, 32}, e0 + "w3.weight_scale_inv", StDType::kU8,
         {32, 2}, w3);
  add_mx("layers.0.ffn.shared_experts.w2.weight", StDType::kF8_E4M3, {16, 64},
         "layers.0.ffn.shared_experts.w2.weight_scale", StDType::kF8_E8M0, {16, 2}, f8);
  add_mx("layers.1.ffn.experts.w13_weight", StDType::kU8, {2, 32, 32},
         "layers.1.ffn.experts.w13_weight_scale_inv", StDType::kU8, {2, 32, 2}, w13);
  add("layers.0.attn_norm.weight", StDType::kBF16, {64}, random_bytes(128, 105));
  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const ModelInfo& info = r.value();
  EXPECT_EQ(info.format, "deepseek");
  EXPECT_EQ(info.scheme, "mxfp4+mxfp8");
  EXPECT_EQ(info.act, ActScheme::kNone);
  EXPECT_FALSE(info.scale_rule.has_value());
  ASSERT_EQ(info.weights.size(), 5u);
  expect_weight(info.weights[0], e0 + "w1", ElemType::kE2M1, {32, 64}, w1,
                GateUpLayout::kSeparate);
  expect_weight(info.weights[1], e0 + "w2", ElemType::kE2M1, {64, 32}, w2);
  expect_weight(info.weights[2], e0 + "w3", ElemType::kE2M1, {32, 64}, w3,
                GateUpLayout::kSeparate);
  expect_weight(info.weights[3], "layers.0.ffn.shared_experts.w2", ElemType::kE4M3, {16, 64},
                f8);
  expect_weight(info.weights[4], "layers.1.ffn.experts.w13", ElemType::kE2M1, {2, 32, 64}, w13,
                GateUpLayout::kChunked);
  EXPECT_EQ(info.weights[2].scale_name, e0 + "w3.weight_scale_inv");
  EXPECT_EQ(info.passthrough, std::vector<std::string>{"layers.0.attn_norm.weight"});
}

TEST_F(FormatsTest, DeepSeekNoScaleListsNamesTried) {
  const std::string e0 = "layers.0.ffn.experts.0.";
  const MXMatrix w = make_mx(ElemType::kE2M1, 32, 64, 110);
  add_mx(e0 + "w2.weight", StDType::kU8, {32, 32}, e0 + "w2.scale", StDType::kF8_E8M0, {32, 2},
         w);
  add(e0 + "w1.weight", StDType::kU8, {32, 32}, w.packed);
  add(e0 + "w1.scales", StDType::kF8_E8M0, {32, 2}, w.scales);  // not a known alias
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kNotFound,
                      {e0 + "w1", e0 + "w1.scale, " + e0 + "w1.weight_scale, " + e0 +
                                      "w1.weight_scale_inv",
                       e0 + "w1.weight"}));
}

TEST_F(FormatsTest, DeepSeekMalformed) {
  const MXMatrix w = make_mx(ElemType::kE2M1, 32, 64, 120);
  // Scale says K = 96; packed rows hold 64.
  add("x.w1.weight", StDType::kU8, {32, 32}, w.packed);
  add("x.w1.scale", StDType::kF8_E8M0, {32, 3}, random_bytes(96, 1));
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"'x.w1.weight'", "[32, 32]", "x.w1.scale", "U8/I8 [32, 48]"}));
  // FP32 scales for a packed FP4 weight.
  tensors_.clear();
  write_json("config.json", {{"quantization_config", {{"quant_method", "deepseek"}}}});
  add("x.w1.weight", StDType::kU8, {32, 32}, w.packed);
  add("x.w1.weight_scale", StDType::kF32, {32, 2}, random_bytes(256, 1));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {"x.w1.weight_scale", "F32", "F8_E8M0"}));
  // An E8M0 scale without its packed partner.
  tensors_.clear();
  add("x.w2.scale", StDType::kF8_E8M0, {32, 2}, w.scales);
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"x.w2.scale", "'x.w2.weight' U8/I8 [32, 32]", "F8_E4M3 [32, 64]"}));
}

TEST_F(FormatsTest, DeepSeekV3BlockFp8Unimplemented) {
  write_json("config.json", {{"architectures", {"DeepseekV3ForCausalLM"}},
                             {"quantization_config",
                              {{"quant_method", "fp8"},
                               {"activation_scheme", "dynamic"},
                               {"fmt", "e4m3"},
                               {"weight_block_size", {128, 128}}}}});
  const std::string o = "model.layers.0.self_attn.o_proj";
  add(o + ".weight", StDType::kF8_E4M3, {256, 200}, random_bytes(256 * 200, 1));
  add(o + ".weight_scale_inv", StDType::kF32, {2, 2}, random_bytes(16, 2));
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kUnimplemented,
                      {o + ".weight", "weight_block_size [128, 128]", "not MX",
                       o + ".weight_scale_inv"}));
  // V3.1: power-of-two values (scale_fmt ue8m0), same 128x128 blocks, still not MX; here the
  // scales are even stored as E8M0 bytes, and the block shape alone identifies them.
  tensors_.clear();
  write_json("config.json", {{"quantization_config",
                              {{"quant_method", "fp8"},
                               {"scale_fmt", "ue8m0"},
                               {"weight_block_size", {128, 128}}}}});
  add(o + ".weight", StDType::kF8_E4M3, {256, 256}, random_bytes(256 * 256, 1));
  add(o + ".weight_scale_inv", StDType::kF8_E8M0, {2, 2}, random_bytes(4, 2));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kUnimplemented,
                      {o + ".weight", "ue8m0", "weight_block_size [128, 128]", "not MX"}));
}

TEST_F(FormatsTest, ScaleNamedTensorsWithoutQuantizationAreUnquantized) {
  add("norm.scale", StDType::kBF16, {64}, random_bytes(128, 1));
  add("proj.weight", StDType::kBF16, {4, 64}, random_bytes(512, 2));
  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().format, "unquantized");
  EXPECT_TRUE(r.value().weights.empty());
  EXPECT_EQ(r.value().passthrough.size(), 2u);
}

}  // namespace
}  // namespace mxq::io

// ---- convert: gpt-oss -> compressed-tensors -------------------------------------------------

namespace mxq::io {
namespace {

// Row r of a [batch, rows, row_bytes] buffer after de-interleaving: gate rows first.
std::vector<uint8_t> chunked(const std::vector<uint8_t>& b, int64_t batch, int64_t rows) {
  const size_t row = b.size() / size_t(batch * rows);
  std::vector<uint8_t> out(b.size());
  for (int64_t e = 0; e < batch; ++e)
    for (int64_t j = 0; j < rows; ++j) {
      const int64_t src = j < rows / 2 ? 2 * j : 2 * (j - rows / 2) + 1;
      std::memcpy(&out[size_t(e * rows + j) * row], &b[size_t(e * rows + src) * row], row);
    }
  return out;
}

TEST_F(FormatsTest, ConvertGptOssDeinterleavesAndKeepsEveryBit) {
  write_json("config.json", gpt_oss_config());
  const std::string p = "model.layers.0.mlp.experts.";
  const MXMatrix gu = make_mx(ElemType::kE2M1, kE * 2 * kI, kH, 11, ScaleRule::kRoundUp);
  const MXMatrix down = make_mx(ElemType::kE2M1, kE * kH, kI, 12, ScaleRule::kRoundUp);
  const std::vector<uint8_t> gu_bias = random_bytes(kE * 2 * kI * 2, 13);
  add_mx(p + "gate_up_proj_blocks", StDType::kU8, {kE, 2 * kI, kH / 32, 16},
         p + "gate_up_proj_scales", StDType::kU8, {kE, 2 * kI, kH / 32}, gu);
  add(p + "gate_up_proj_bias", StDType::kBF16, {kE, 2 * kI}, gu_bias);
  add_mx(p + "down_proj_blocks", StDType::kU8, {kE, kH, kI / 32, 16}, p + "down_proj_scales",
         StDType::kU8, {kE, kH, kI / 32}, down);
  add("model.norm.weight", StDType::kBF16, {kH}, random_bytes(kH * 2, 14));
  ASSERT_TRUE(read().ok());
  const std::string out = (dir_ / "ct").string();
  auto rep = convert_model(dir_.string(), out);
  ASSERT_TRUE(rep.ok()) << rep.status().to_string();
  EXPECT_EQ(rep.value().quantized, 2);

  auto ck = Checkpoint::open(out);
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  auto info = read_model(ck.value());
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  EXPECT_EQ(info.value().format, "compressed-tensors");
  EXPECT_EQ(info.value().scale_rule, ScaleRule::kRoundUp);  // carried in the mxq section
  EXPECT_EQ(info.value().ignored.size(), 4u);
  ASSERT_EQ(info.value().weights.size(), 2u);
  MXMatrix gu_chunked = gu;
  gu_chunked.packed = chunked(gu.packed, kE, 2 * kI);
  gu_chunked.scales = chunked(gu.scales, kE, 2 * kI);
  expect_weight(info.value().weights[0], p + "down_proj", ElemType::kE2M1, {kE, kH, kI}, down);
  expect_weight(info.value().weights[1], p + "gate_up_proj", ElemType::kE2M1, {kE, 2 * kI, kH},
                gu_chunked, GateUpLayout::kChunked, p + "gate_up_proj.bias");
  const auto* bias = ck.value().find(p + "gate_up_proj.bias");
  ASSERT_NE(bias, nullptr);
  const std::vector<uint8_t> want_bias = chunked(gu_bias, kE, 2 * kI);
  EXPECT_EQ(std::memcmp(bias->bytes().data(), want_bias.data(), want_bias.size()), 0);
  const auto* norm = ck.value().find("model.norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->info->dtype, StDType::kBF16);
}

}  // namespace
}  // namespace mxq::io
