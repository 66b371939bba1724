// The AMD Quark adapter: global, per-layer and per-layer-type specs, excludes, W4A8 / W4A4 / fp6
// variants and malformed exports, each written as Quark writes it and read back byte for byte
// (fixture: formats_fixture.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "formats_fixture.h"

namespace mxq::io {
namespace {


// w_mxfp4_a_fp8 globally, an fp6_e2m3 override for "*.mlp.*", a re: exclude for the router.
TEST_F(FormatsTest, QuarkW4A8WithOverrideAndExclude) {
  json layer = {{"*.mlp.*", {{"weight", quark_spec("fp6_e2m3")},
                             {"input_tensors", quark_fp8_static()},
                             {"output_tensors", nullptr},
                             {"bias", nullptr}}}};
  write_json("config.json", quark_config(quark_spec("fp4"), quark_fp8_static(), layer,
                                         {"lm_head", "re:.*\\.mlp\\.gate$"}));
  const MXMatrix q = make_mx(ElemType::kE2M1, 64, 64, 10, ScaleRule::kEven);
  const MXMatrix d = make_mx(ElemType::kE2M3, 32, 64, 11, ScaleRule::kEven);
  const std::string a = "model.layers.0.self_attn.q_proj", m = "model.layers.0.mlp.down_proj";
  add_mx(a + ".weight", StDType::kU8, {64, 32}, a + ".weight_scale", StDType::kU8, {64, 2}, q);
  add(a + ".input_scale", StDType::kF32, {}, f32_scalar(0.125f));
  add_mx(m + ".weight", StDType::kU8, {32, 48}, m + ".weight_scale", StDType::kU8, {32, 2}, d);
  add(m + ".input_scale", StDType::kF32, {1}, f32_scalar(0.5f));
  add("model.layers.0.mlp.gate.weight", StDType::kBF16, {4, 64}, random_bytes(512, 12));
  add("lm_head.weight", StDType::kBF16, {8, 64}, random_bytes(1024, 13));

  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const ModelInfo& info = r.value();
  EXPECT_EQ(info.format, "quark");
  EXPECT_EQ(info.scheme, "w_mxfp4_a_fp8");
  EXPECT_EQ(info.act, ActScheme::kFp8Static);
  EXPECT_EQ(info.scale_rule, ScaleRule::kEven);
  EXPECT_EQ(info.ignored, (std::vector<std::string>{"lm_head", "re:.*\\.mlp\\.gate$"}));
  ASSERT_EQ(info.weights.size(), 2u);
  expect_weight(info.weights[0], m, ElemType::kE2M3, {32, 64}, d, GateUpLayout::kNone, "",
                m + ".input_scale");
  expect_weight(info.weights[1], a, ElemType::kE2M1, {64, 64}, q, GateUpLayout::kNone, "",
                a + ".input_scale");
}

TEST_F(FormatsTest, QuarkMxfp4A4AndLegacyMxDtype) {
  json act = quark_spec("fp4");
  act["is_dynamic"] = true;
  json w = quark_spec("mx");
  w["mx_element_dtype"] = "fp4";
  w.erase("scale_format");
  w["scale_calculation_mode"] = "floor";
  write_json("config.json", quark_config(w, act));
  const MXMatrix q = make_mx(ElemType::kE2M1, 16, 96, 20);
  const std::string a = "model.layers.3.self_attn.o_proj";
  add_mx(a + ".weight", StDType::kU8, {16, 48}, a + ".weight_scale", StDType::kU8, {16, 3}, q);
  add(a + ".bias", StDType::kBF16, {16}, random_bytes(32, 21));
  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().scheme, "w_mxfp4_a_mxfp4");
  EXPECT_EQ(r.value().act, ActScheme::kMxfp4);
  EXPECT_EQ(r.value().act_scale_rule, ScaleRule::kEven);  // the activation spec's own mode
  json bad = act;
  bad["scale_calculation_mode"] = "ceil";
  write_json("config.json", quark_config(w, bad));
  auto rb = read();
  ASSERT_FALSE(rb.ok());
  EXPECT_NE(rb.status().message().find("input_tensors.scale_calculation_mode is \"ceil\""),
            std::string::npos) << rb.status().message();
  write_json("config.json", quark_config(w, act));
  EXPECT_EQ(r.value().scale_rule, ScaleRule::kFloor);
  ASSERT_EQ(r.value().weights.size(), 1u);
  expect_weight(r.value().weights[0], a, ElemType::kE2M1, {16, 96}, q, GateUpLayout::kNone,
                a + ".bias");
}

TEST_F(FormatsTest, QuarkFp6WeightOnly) {
  write_json("config.json", quark_config(quark_spec("fp6_e3m2"), nullptr));
  const MXMatrix q = make_mx(ElemType::kE3M2, 8, 128, 30, ScaleRule::kEven);
  const std::string a = "model.layers.0.mlp.up_proj";
  add_mx(a + ".weight", StDType::kU8, {8, 96}, a + ".weight_scale", StDType::kU8, {8, 4}, q);
  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().scheme, "w_mxfp6_e3m2");
  EXPECT_EQ(r.value().act, ActScheme::kNone);
  ASSERT_EQ(r.value().weights.size(), 1u);
  expect_weight(r.value().weights[0], a, ElemType::kE3M2, {8, 128}, q);
}

TEST_F(FormatsTest, QuarkFp6Activations) {
  for (const char* d : {"fp6_e2m3", "fp6_e3m2"}) {
    tensors_.clear();
    json act = quark_spec(d);
    act["is_dynamic"] = true;
    write_json("config.json", quark_config(quark_spec(d), act));
    const ElemType t = std::string(d) == "fp6_e2m3" ? ElemType::kE2M3 : ElemType::kE3M2;
    const MXMatrix q = make_mx(t, 8, 128, 31, ScaleRule::kEven);
    const std::string a = "model.layers.0.mlp.up_proj";
    add_mx(a + ".weight", StDType::kU8, {8, 96}, a + ".weight_scale", StDType::kU8, {8, 4}, q);
    auto r = read();
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    const std::string e = t == ElemType::kE2M3 ? "e2m3" : "e3m2";
    EXPECT_EQ(r.value().scheme, "w_mxfp6_" + e + "_a_mxfp6_" + e);
    EXPECT_EQ(r.value().act, t == ElemType::kE2M3 ? ActScheme::kMxfp6E2M3 : ActScheme::kMxfp6E3M2);
    EXPECT_EQ(std::string(act_scheme_name(r.value().act)), "mxfp6-" + e);
  }
}

// Global weight null: everything quantized comes from name patterns.
TEST_F(FormatsTest, QuarkLayerOnlySpecsAndConflicts) {
  json act = quark_spec("fp4");
  act["is_dynamic"] = true;
  json layer = {{"*.self_attn.*", {{"weight", quark_spec("fp4")}, {"input_tensors", act}}},
                {"*.mlp.*", {{"weight", quark_spec("fp6_e2m3")}, {"input_tensors", act}}}};
  write_json("config.json", quark_config(nullptr, nullptr, layer));
  const MXMatrix q = make_mx(ElemType::kE2M1, 8, 64, 130);
  const MXMatrix d = make_mx(ElemType::kE2M3, 8, 64, 131);
  add_mx("l.self_attn.k_proj.weight", StDType::kU8, {8, 32}, "l.self_attn.k_proj.weight_scale",
         StDType::kU8, {8, 2}, q);
  add_mx("l.mlp.up_proj.weight", StDType::kU8, {8, 48}, "l.mlp.up_proj.weight_scale",
         StDType::kU8, {8, 2}, d);
  auto r = read();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().scheme, "w_mxfp4_a_mxfp4+w_mxfp6_e2m3_a_mxfp4");
  EXPECT_EQ(r.value().act, ActScheme::kMxfp4);
  EXPECT_EQ(r.value().scale_rule, ScaleRule::kEven);
  ASSERT_EQ(r.value().weights.size(), 2u);
  expect_weight(r.value().weights[0], "l.mlp.up_proj", ElemType::kE2M3, {8, 64}, d);
  expect_weight(r.value().weights[1], "l.self_attn.k_proj", ElemType::kE2M1, {8, 64}, q);

  // Two patterns matching one module with different specs.
  layer["l.mlp.*"] = {{"weight", quark_spec("fp4")}, {"input_tensors", act}};
  write_json("config.json", quark_config(nullptr, nullptr, layer));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"l.mlp.up_proj", "\"*.mlp.*\"", "\"l.mlp.*\""}));

  // Different activation schemes per layer cannot be recorded.
  layer.erase("l.mlp.*");
  layer["*.mlp.*"]["input_tensors"] = quark_fp8_static();
  write_json("config.json", quark_config(nullptr, nullptr, layer));
  add("l.mlp.up_proj.input_scale", StDType::kF32, {}, f32_scalar(1.0f));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kUnimplemented,
                      {"l.self_attn.k_proj", "fp8-static", "mxfp4", "one activation scheme"}));
}

TEST_F(FormatsTest, QuarkConfigErrors) {
  const MXMatrix q = make_mx(ElemType::kE2M1, 8, 64, 40);
  add_mx("m.weight", StDType::kU8, {8, 32}, "m.weight_scale", StDType::kU8, {8, 2}, q);
  struct Case {
    const char* key;
    json value;
    std::vector<std::string> parts;
  };
  const Case cases[] = {
      {"scale_format", "e4m3", {"global_quant_config.weight.scale_format", "\"e8m0\""}},
      {"group_size", 16, {"global_quant_config.weight.group_size is 16", "expected 32"}},
      {"qscheme", "per_channel", {"global_quant_config.weight.qscheme", "\"per_group\""}},
      {"scale_calculation_mode", "stochastic",
       {"global_quant_config.weight.scale_calculation_mode", "stochastic", "\"even\""}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    json w = quark_spec("fp4");
    w[c.key] = c.value;
    write_json("config.json", quark_config(w, nullptr));
    auto r = read();
    ASSERT_FALSE(r.ok());
    for (const std::string& p : c.parts)
      EXPECT_NE(r.status().message().find(p), std::string::npos) << r.status().message();
  }
  write_json("config.json", quark_config(quark_spec("int4"), nullptr));
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kUnimplemented,
                      {"global_quant_config.weight.dtype", "int4", "fp4"}));
}

TEST_F(FormatsTest, QuarkMalformedTensors) {
  write_json("config.json", quark_config(quark_spec("fp4"), quark_fp8_static()));
  const MXMatrix q = make_mx(ElemType::kE2M1, 8, 64, 50);
  // Missing input_scale for static FP8 activations.
  add_mx("m.weight", StDType::kU8, {8, 32}, "m.weight_scale", StDType::kU8, {8, 2}, q);
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kNotFound, {"m.input_scale", "F32, BF16 or F16 scalar"}));
  // Wrong scale shape: [8, 3] claims K = 96, the weight holds 64.
  tensors_.clear();
  add("m.weight", StDType::kU8, {8, 32}, q.packed);
  add("m.weight_scale", StDType::kU8, {8, 3}, random_bytes(24, 1));
  add("m.input_scale", StDType::kF32, {}, f32_scalar(1.0f));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"'m.weight'", "[8, 32]", "expected [8, 48]", "m.weight_scale"}));
  // Wrong scale dtype.
  tensors_.clear();
  add("m.weight", StDType::kU8, {8, 32}, q.packed);
  add("m.weight_scale", StDType::kBF16, {8, 2}, random_bytes(32, 1));
  add("m.input_scale", StDType::kF32, {}, f32_scalar(1.0f));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {"m.weight_scale", "BF16", "U8"}));
  // Packed weight without its scale partner.
  tensors_.clear();
  add("m.weight", StDType::kU8, {8, 32}, q.packed);
  r = read();
  EXPECT_TRUE(
      has_all(r.status(), StatusCode::kDataLoss, {"'m.weight'", "'m.weight_scale' U8 [8, 2]"}));
  // Scale without its packed partner.
  tensors_.clear();
  add("m.weight_scale", StDType::kU8, {8, 2}, q.scales);
  r = read();
  EXPECT_TRUE(
      has_all(r.status(), StatusCode::kDataLoss, {"m.weight_scale", "'m.weight' U8 [8, 32]"}));
  // input_scale in BF16 (Quark 0.13) or F16 is accepted (exact in F32); other dtypes and
  // non-scalars are not.
  for (StDType ok : {StDType::kBF16, StDType::kF16}) {
    tensors_.clear();
    add_mx("m.weight", StDType::kU8, {8, 32}, "m.weight_scale", StDType::kU8, {8, 2}, q);
    add("m.input_scale", ok, {}, {0x00, 0x3c});
    r = read();
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r.value().weights.at(0).input_scale_name, "m.input_scale");
  }
  tensors_.clear();
  add_mx("m.weight", StDType::kU8, {8, 32}, "m.weight_scale", StDType::kU8, {8, 2}, q);
  add("m.input_scale", StDType::kI16, {}, random_bytes(2, 1));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"m.input_scale", "I16", "expected an F32, BF16 or F16 scalar"}));
  tensors_.clear();
  add_mx("m.weight", StDType::kU8, {8, 32}, "m.weight_scale", StDType::kU8, {8, 2}, q);
  add("m.input_scale", StDType::kBF16, {2}, random_bytes(4, 1));
  r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {"m.input_scale", "BF16 [2]"}));
}

TEST_F(FormatsTest, QuarkExcludedModuleWithScalesIsAnError) {
  write_json("config.json",
             quark_config(quark_spec("fp4"), nullptr, json::object(), {"re:.*\\.q_proj"}));
  const MXMatrix q = make_mx(ElemType::kE2M1, 8, 64, 60);
  add_mx("a.q_proj.weight", StDType::kU8, {8, 32}, "a.q_proj.weight_scale", StDType::kU8,
         {8, 2}, q);
  auto r = read();
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {"a.q_proj", "exclude"}));
}

TEST(FormatsHelpers, GlobAndExcludePatterns) {
  using formats::glob_match;
  EXPECT_TRUE(glob_match("*.mlp.*", "model.layers.0.mlp.down_proj"));
  EXPECT_FALSE(glob_match("*.mlp.*", "model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(glob_match("model.layers.?.mlp.gate", "model.layers.7.mlp.gate"));
  EXPECT_FALSE(glob_match("model.layers.?.mlp.gate", "model.layers.17.mlp.gate"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("a*b*c", "aXbYbZc"));
  EXPECT_FALSE(glob_match("a*b*c", "aXbYbZ"));
  EXPECT_TRUE(glob_match("lm_head", "lm_head"));
  EXPECT_FALSE(glob_match("lm_head", "lm_head2"));
  EXPECT_TRUE(glob_match("*lm_head", "model.lm_head"));
  const std::vector<std::string> ex = {"lm_head", "re:.*\\.gate$", "*.router"};
  EXPECT_TRUE(formats::matches_pattern(ex, "lm_head"));
  EXPECT_TRUE(formats::matches_pattern(ex, "model.layers.0.mlp.gate"));
  EXPECT_FALSE(formats::matches_pattern(ex, "model.layers.0.mlp.gate_proj"));
  EXPECT_TRUE(formats::matches_pattern(ex, "model.layers.0.mlp.router"));
  EXPECT_FALSE(formats::matches_pattern(ex, "model.layers.0.mlp.experts"));
}

}  // namespace
}  // namespace mxq::io
