// MoE assembly in the model layer (issue 15): per-expert 2-D tensors in each naming the table in
// src/select/layers.cc knows, written with the project's safetensors writer, become one MoE layer
// per block whose stacked views equal the canonical stacked layout bit for bit; malformed expert
// sets are errors naming the tensor and the rule.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/checkpoint_fixtures.h"
#include "cpu/backends.h"
#include "mxq/layers.h"
#include "mxq/model.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"
#include "mxq/safetensors.h"

namespace mxq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The experts' weights, quantized with the even rule (as Quark and compressed-tensors do).
MXMatrix make_mx(ElemType elem, int64_t rows, int64_t k, uint32_t seed) {
  return test::make_mx(elem, rows, k, seed, ScaleRule::kEven);
}

// BF16 values of modest magnitude (random bit patterns would include NaN / huge values).
std::vector<uint8_t> bf16_bytes(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  std::vector<uint8_t> b(n * 2);
  for (size_t i = 0; i < n; ++i) {
    const uint16_t v = num::f32_to_bf16(nd(g));
    std::memcpy(b.data() + 2 * i, &v, 2);
  }
  return b;
}

std::vector<uint8_t> slice(const std::vector<uint8_t>& b, size_t part, size_t parts) {
  const size_t n = b.size() / parts;
  return {b.begin() + long(part * n), b.begin() + long((part + 1) * n)};
}

using test::has_all;
using test::quark_fp8_static;
using test::quark_spec;

// A Quark w_mxfp4 config (weight-only unless `input` is given) with the model's keys merged in.
json quark_config(json model, json layer = json::object(), json input = nullptr) {
  model["quantization_config"] = test::quark_quantization_config(
      quark_spec("fp4"), std::move(input), std::move(layer), json::array({"lm_head"}), "0.13");
  return model;
}

constexpr int64_t kE = 4, kH = 64, kI = 32;

struct Tensor {
  std::string name;
  io::StDType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

class MoEAssemblyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("mxq_moe_asm_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(root_);
  }
  void TearDown() override {
    ck_.clear();
    info_.clear();
    fs::remove_all(root_);
  }
  // Writes `tensors` (in this order) and config.json into a fresh directory, opens and reads it.
  struct Opened {
    const io::Checkpoint* ck;
    const io::ModelInfo* info;
  };
  Opened write(const std::string& sub, const std::vector<Tensor>& tensors, const json& config) {
    const fs::path d = root_ / sub;
    fs::create_directories(d);
    std::ofstream(d / "config.json") << config.dump(2);
    std::vector<io::SafetensorsWriter::Decl> decls;
    for (const auto& t : tensors) decls.push_back({t.name, t.dtype, t.shape});
    auto w = io::SafetensorsWriter::create((d / "model.safetensors").string(), decls);
    EXPECT_TRUE(w.ok()) << w.status().to_string();
    for (const auto& t : tensors) EXPECT_TRUE(w.value()->write(t.bytes).ok()) << t.name;
    EXPECT_TRUE(w.value()->finish().ok());
    auto c = io::Checkpoint::open(d.string());
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    ck_.push_back(std::make_unique<io::Checkpoint>(std::move(c).value()));
    auto info = io::read_model(*ck_.back());
    EXPECT_TRUE(info.ok()) << info.status().to_string();
    info_.push_back(std::make_unique<io::ModelInfo>(std::move(info).value()));
    return {ck_.back().get(), info_.back().get()};
  }
  StatusOr<std::vector<LayerSpec>> layers(const std::string& sub, const std::vector<Tensor>& t,
                                          const json& config) {
    const Opened o = write(sub, t, config);
    return model_layers(*o.ck, *o.info, 3);
  }

  fs::path root_;
  std::vector<std::unique_ptr<io::Checkpoint>> ck_;
  std::vector<std::unique_ptr<io::ModelInfo>> info_;
};

void add_mx(std::vector<Tensor>& t, const std::string& m, const MXMatrix& q, int64_t n, int64_t k) {
  t.push_back({m + ".weight", io::StDType::kU8, {n, k / 2}, q.packed});
  t.push_back({m + ".weight_scale", io::StDType::kU8, {n, k / 32}, q.scales});
}

// Separate gate/up/down per expert: [E*I, H] gate, [E*I, H] up, [E*H, I] down, one matrix each.
struct SeparateExperts {
  MXMatrix gate = make_mx(ElemType::kE2M1, kE * kI, kH, 1);
  MXMatrix up = make_mx(ElemType::kE2M1, kE * kI, kH, 2);
  MXMatrix down = make_mx(ElemType::kE2M1, kE * kH, kI, 3);

  std::vector<Tensor> tensors(const std::string& block, const char* g, const char* u,
                              const char* d, const char* router = ".gate") const {
    std::vector<Tensor> t;
    for (int64_t e = 0; e < kE; ++e) {
      const std::string p = block + ".experts." + std::to_string(e) + ".";
      add_mx(t, p + g, {ElemType::kE2M1, kI, kH, slice(gate.packed, e, kE), slice(gate.scales, e, kE)}, kI, kH);
      add_mx(t, p + u, {ElemType::kE2M1, kI, kH, slice(up.packed, e, kE), slice(up.scales, e, kE)}, kI, kH);
      add_mx(t, p + d, {ElemType::kE2M1, kH, kI, slice(down.packed, e, kE), slice(down.scales, e, kE)}, kH, kI);
    }
    t.push_back({block + router + ".weight", io::StDType::kBF16, {kE, kH}, bf16_bytes(kE * kH, 9)});
    return t;
  }
};

void expect_view(const MXWeightView& v, const MXMatrix& m, int64_t n, int64_t k) {
  EXPECT_EQ(v.elem, m.elem);
  EXPECT_EQ(v.batch, kE);
  EXPECT_EQ(v.n, n);
  EXPECT_EQ(v.k, k);
  ASSERT_NE(v.packed, nullptr);
  ASSERT_NE(v.scales, nullptr);
  EXPECT_EQ(std::memcmp(v.packed, m.packed.data(), m.packed.size()), 0);
  EXPECT_EQ(std::memcmp(v.scales, m.scales.data(), m.scales.size()), 0);
}

const LayerSpec* find(const std::vector<LayerSpec>& ls, const std::string& name) {
  for (const auto& l : ls)
    if (l.name == name) return &l;
  return nullptr;
}

TEST_F(MoEAssemblyTest, QwenPerExpertGateUpDownIsOneLayerSharedExpertStaysLinear) {
  const SeparateExperts x;
  std::vector<Tensor> t = x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj");
  const MXMatrix sh = make_mx(ElemType::kE2M1, kI, kH, 7);
  add_mx(t, "model.layers.0.mlp.shared_expert.gate_proj", sh, kI, kH);
  const json cfg = quark_config({{"model_type", "qwen3_moe"},
                                 {"num_experts", kE},
                                 {"num_experts_per_tok", 3},
                                 {"norm_topk_prob", false}});
  const Opened o = write("qwen", t, cfg);
  auto ls = model_layers(*o.ck, *o.info, 5);
  ASSERT_TRUE(ls.ok()) << ls.status().to_string();
  ASSERT_EQ(ls.value().size(), 2u);  // the MoE block and the shared expert
  const LayerSpec* moe = find(ls.value(), "model.layers.0.mlp");
  ASSERT_NE(moe, nullptr);
  const LayerSpec* shared = find(ls.value(), "model.layers.0.mlp.shared_expert.gate_proj");
  ASSERT_NE(shared, nullptr);
  EXPECT_EQ(shared->problem.op, Op::kLinear);
  const Problem& p = moe->problem;
  EXPECT_EQ(p.op, Op::kMoE);
  EXPECT_EQ(p.m, 5);
  EXPECT_EQ(p.n, kH);
  EXPECT_EQ(p.k, kI);
  EXPECT_EQ(p.moe.experts, kE);
  EXPECT_EQ(p.moe.topk, 3);
  EXPECT_EQ(p.moe.layout, io::GateUpLayout::kSeparate);
  EXPECT_EQ(p.moe.routing, Routing::kSoftmaxTopK);
  EXPECT_FALSE(p.moe.renormalize);
  EXPECT_EQ(p.moe.activation, MoEActivation::kSiluAndMul);
  EXPECT_FALSE(p.bias);
  EXPECT_EQ(moe->router_weight, "model.layers.0.mlp.gate.weight");
  ASSERT_NE(moe->w3, nullptr);
  auto mw = moe_weights(*o.ck, *moe);
  ASSERT_TRUE(mw.ok()) << mw.status().to_string();
  expect_view(mw.value().w1, x.gate, kI, kH);
  expect_view(mw.value().w3, x.up, kI, kH);
  expect_view(mw.value().w2, x.down, kH, kI);
  EXPECT_EQ(mw.value().w13.packed, nullptr);
  // Interleaved packed/scale tensors are not back to back: the stack is a copy.
  EXPECT_NE(mw.value().w1.packed, o.ck->find("model.layers.0.mlp.experts.0.gate_proj.weight")->bytes().data());
  EXPECT_EQ(moe->w->bytes(), x.gate.packed.size() + x.gate.scales.size());
  // A second call returns the same views (filled once).
  auto mw2 = moe_weights(*o.ck, *moe);
  ASSERT_TRUE(mw2.ok());
  EXPECT_EQ(mw2.value().w1.packed, mw.value().w1.packed);

  // The cpu-reference runs the layer (4 experts, top-3, silu).
  auto ref = make_cpu_reference_backend();
  auto prep = ref->prepare_moe(p, mw.value());
  ASSERT_TRUE(prep.ok()) << prep.status().to_string();
}

TEST_F(MoEAssemblyTest, ExpertsBackToBackInTheFileAreZeroCopy) {
  const SeparateExperts x;
  std::vector<Tensor> all = x.tensors("model.layers.1.mlp", "gate_proj", "up_proj", "down_proj");
  // Same tensors, declared weight-major: each role's packed (and scale) tensors in expert order.
  std::vector<Tensor> t;
  for (const char* role : {"gate_proj.weight", "gate_proj.weight_scale", "up_proj.weight",
                           "up_proj.weight_scale", "down_proj.weight", "down_proj.weight_scale"})
    for (int64_t e = 0; e < kE; ++e)
      for (const auto& a : all)
        if (a.name == "model.layers.1.mlp.experts." + std::to_string(e) + "." + role) t.push_back(a);
  t.push_back(all.back());  // router
  ASSERT_EQ(t.size(), all.size());
  const Opened o = write("zc", t, quark_config({{"model_type", "qwen3_moe"}}));
  auto ls = model_layers(*o.ck, *o.info, 1);
  ASSERT_TRUE(ls.ok()) << ls.status().to_string();
  ASSERT_EQ(ls.value().size(), 1u);
  const LayerSpec& l = ls.value()[0];
  EXPECT_TRUE(l.problem.moe.renormalize);  // norm_topk_prob absent: renormalised
  EXPECT_EQ(l.problem.moe.topk, 2);
  const uint8_t* file0 = o.ck->find("model.layers.1.mlp.experts.0.gate_proj.weight")->bytes().data();
  EXPECT_EQ(l.w->packed.data(), file0);  // known before any copy
  auto mw = moe_weights(*o.ck, l);
  ASSERT_TRUE(mw.ok()) << mw.status().to_string();
  EXPECT_EQ(mw.value().w1.packed, file0);
  EXPECT_EQ(mw.value().w2.scales,
            o.ck->find("model.layers.1.mlp.experts.0.down_proj.weight_scale")->bytes().data());
  expect_view(mw.value().w1, x.gate, kI, kH);
  expect_view(mw.value().w3, x.up, kI, kH);
  expect_view(mw.value().w2, x.down, kH, kI);
}

TEST_F(MoEAssemblyTest, MixtralW1W3W2) {
  const SeparateExperts x;
  const auto t = x.tensors("model.layers.3.block_sparse_moe", "w1", "w3", "w2");
  auto ls = layers("mixtral", t, quark_config({{"model_type", "mixtral"}, {"num_local_experts", kE},
                                               {"num_experts_per_tok", 2}}));
  ASSERT_TRUE(ls.ok()) << ls.status().to_string();
  ASSERT_EQ(ls.value().size(), 1u);
  const LayerSpec& l = ls.value()[0];
  EXPECT_EQ(l.name, "model.layers.3.block_sparse_moe");
  EXPECT_EQ(l.problem.moe.layout, io::GateUpLayout::kSeparate);
  EXPECT_EQ(l.router_weight, "model.layers.3.block_sparse_moe.gate.weight");
  auto mw = moe_weights(*ck_.back(), l);
  ASSERT_TRUE(mw.ok()) << mw.status().to_string();
  expect_view(mw.value().w1, x.gate, kI, kH);  // w1 = gate
  expect_view(mw.value().w3, x.up, kI, kH);    // w3 = up
  expect_view(mw.value().w2, x.down, kH, kI);
}

TEST_F(MoEAssemblyTest, DeepSeekSigmoidGroupedRoutingFromConfig) {
  const SeparateExperts x;
  auto t = x.tensors("model.layers.2.mlp", "gate_proj", "up_proj", "down_proj");
  std::vector<uint8_t> cb(kE * 4);
  for (int64_t e = 0; e < kE; ++e) {
    const float v = 0.25f * float(e);
    std::memcpy(cb.data() + 4 * e, &v, 4);
  }
  t.push_back({"model.layers.2.mlp.gate.e_score_correction_bias", io::StDType::kF32, {kE}, cb});
  const json cfg = quark_config({{"model_type", "deepseek_v3"}, {"n_routed_experts", kE},
                                 {"num_experts_per_tok", 2}, {"scoring_func", "sigmoid"},
                                 {"n_group", 2}, {"topk_group", 1},
                                 {"routed_scaling_factor", 2.5}, {"norm_topk_prob", true}});
  const Opened o = write("ds", t, cfg);
  auto ls = model_layers(*o.ck, *o.info, 1);
  ASSERT_TRUE(ls.ok()) << ls.status().to_string();
  ASSERT_EQ(ls.value().size(), 1u);
  const LayerSpec& l = ls.value()[0];
  EXPECT_EQ(l.problem.moe.routing, Routing::kSigmoidGroupedTopK);
  EXPECT_EQ(l.problem.moe.n_group, 2);
  EXPECT_EQ(l.problem.moe.topk_group, 1);
  EXPECT_EQ(l.problem.moe.routed_scaling, 2.5f);
  EXPECT_TRUE(l.problem.moe.correction_bias);
  EXPECT_EQ(l.correction_bias, "model.layers.2.mlp.gate.e_score_correction_bias");
  auto b = correction_bias(*o.ck, l);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  ASSERT_EQ(b.value().size(), size_t(kE));
  EXPECT_EQ(b.value()[3], 0.75f);
  const DenseView bv = f32_view(b.value());
  EXPECT_EQ(bv.dtype, DType::kF32);
  EXPECT_EQ(bv.cols, kE);
  EXPECT_EQ(num::load_dense(bv.data, DType::kF32, 3), 0.75f);

  // transformers' DeepseekV3Config saves no scoring_func: deepseek_v3 implies sigmoid.
  json no_scoring = cfg;
  no_scoring.erase("scoring_func");
  auto ns = layers("ds_no_scoring", t, no_scoring);
  ASSERT_TRUE(ns.ok()) << ns.status().to_string();
  EXPECT_EQ(ns.value()[0].problem.moe.routing, Routing::kSigmoidGroupedTopK);
  no_scoring["model_type"] = "qwen3_moe";
  ns = layers("ds_no_scoring_qwen", t, no_scoring);
  ASSERT_TRUE(ns.ok()) << ns.status().to_string();
  EXPECT_EQ(ns.value()[0].problem.moe.routing, Routing::kSoftmaxTopK);

  json bad = cfg;
  bad["n_group"] = 3;  // does not divide 4 experts
  auto r = layers("ds_bad", t, bad);
  EXPECT_TRUE(has_all(r.status(), StatusCode::kInvalidArgument, {"model.layers.2.mlp", "n_group 3"}));
  bad = cfg;
  bad["scoring_func"] = "sqrtsoftplus";
  r = layers("ds_bad2", t, bad);
  EXPECT_TRUE(has_all(r.status(), StatusCode::kUnimplemented, {"scoring_func 'sqrtsoftplus'"}));
}

// transformers saves DeepSeek-V3's e_score_correction_bias in the model dtype (BF16), F16 is as
// plausible: both load, converted exactly, to the same F32 values as an F32 bias; another dtype or
// a wrong element count is an error naming the tensor.
TEST_F(MoEAssemblyTest, CorrectionBiasBF16AndF16LoadExactlyAsF32) {
  const SeparateExperts x;
  const std::string name = "model.layers.2.mlp.gate.e_score_correction_bias";
  // Values with 8 significant bits (exact in BF16 and F16), signs, a tiny and a large one.
  const float vals[kE] = {0.25f, -1.3671875f, 0.0078125f, 96.5f};
  std::vector<uint8_t> f32(kE * 4), bf16(kE * 2), f16(kE * 2);
  for (int64_t e = 0; e < kE; ++e) {
    std::memcpy(f32.data() + 4 * e, &vals[e], 4);
    const uint16_t b = num::f32_to_bf16(vals[e]), h = num::f32_to_f16(vals[e]);
    ASSERT_EQ(num::bf16_to_f32(b), vals[e]);
    ASSERT_EQ(num::f16_to_f32(h), vals[e]);
    std::memcpy(bf16.data() + 2 * e, &b, 2);
    std::memcpy(f16.data() + 2 * e, &h, 2);
  }
  const json cfg = quark_config({{"model_type", "deepseek_v3"}, {"n_routed_experts", kE},
                                 {"num_experts_per_tok", 2}, {"n_group", 2}, {"topk_group", 1},
                                 {"routed_scaling_factor", 2.5}, {"norm_topk_prob", true}});
  auto load = [&](const std::string& sub, io::StDType d, std::vector<int64_t> shape,
                  const std::vector<uint8_t>& bytes) {
    auto t = x.tensors("model.layers.2.mlp", "gate_proj", "up_proj", "down_proj");
    t.push_back({name, d, std::move(shape), bytes});
    const Opened o = write(sub, t, cfg);
    auto ls = model_layers(*o.ck, *o.info, 1);
    EXPECT_TRUE(ls.ok()) << ls.status().to_string();
    if (!ls.ok()) return StatusOr<std::vector<float>>(ls.status());
    EXPECT_EQ(ls.value().size(), 1u);
    EXPECT_EQ(ls.value()[0].correction_bias, name);
    return correction_bias(*o.ck, ls.value()[0]);
  };
  auto want = load("f32", io::StDType::kF32, {kE}, f32);
  ASSERT_TRUE(want.ok()) << want.status().to_string();
  ASSERT_EQ(want.value(), std::vector<float>(vals, vals + kE));
  for (auto [sub, d, bytes] : {std::tuple{"bf16", io::StDType::kBF16, &bf16},
                               std::tuple{"f16", io::StDType::kF16, &f16}}) {
    auto got = load(sub, d, {kE}, *bytes);
    ASSERT_TRUE(got.ok()) << sub << ": " << got.status().to_string();
    ASSERT_EQ(got.value().size(), size_t(kE)) << sub;
    for (int64_t e = 0; e < kE; ++e)  // bit for bit
      EXPECT_EQ(num::f32_bits(got.value()[size_t(e)]), num::f32_bits(vals[e])) << sub << " " << e;
  }
  // [1, E] is the same tensor.
  auto row = load("bf16_row", io::StDType::kBF16, {1, kE}, bf16);
  ASSERT_TRUE(row.ok()) << row.status().to_string();
  EXPECT_EQ(row.value(), want.value());

  auto bad = load("i32", io::StDType::kI32, {kE}, f32);
  EXPECT_TRUE(has_all(bad.status(), StatusCode::kInvalidArgument,
                      {"'" + name + "'", "dtype I32", "F32, BF16 or F16"}));
  bad = load("f64", io::StDType::kF64, {kE / 2}, f32);
  EXPECT_TRUE(has_all(bad.status(), StatusCode::kInvalidArgument, {"'" + name + "'", "dtype F64"}));
  bad = load("short", io::StDType::kBF16, {kE - 1}, std::vector<uint8_t>(bf16.begin(), bf16.end() - 2));
  EXPECT_TRUE(has_all(bad.status(), StatusCode::kInvalidArgument,
                      {"'" + name + "'", "3 elements", "expected 1 x 4"}));
}

// gpt-oss as Quark writes it (per-expert fused gate_up_proj with interleaved rows, biases, a
// router with a bias) against the same weights in the stacked gpt-oss layout: the same problem,
// the same bytes, and cpu-reference gives the same output bit for bit.
TEST_F(MoEAssemblyTest, GptOssPerExpertFusedEqualsStacked) {
  const MXMatrix gu = make_mx(ElemType::kE2M1, kE * 2 * kI, kH, 11);
  const MXMatrix dn = make_mx(ElemType::kE2M1, kE * kH, kI, 12);
  const std::vector<uint8_t> gu_bias = bf16_bytes(kE * 2 * kI, 13), dn_bias = bf16_bytes(kE * kH, 14);
  const std::vector<uint8_t> router = bf16_bytes(kE * kH, 15), router_bias = bf16_bytes(kE, 16);
  const std::string blk = "model.layers.0.mlp";

  std::vector<Tensor> st;  // stacked gpt-oss
  const std::string p = blk + ".experts.";
  st.push_back({p + "down_proj_bias", io::StDType::kBF16, {kE, kH}, dn_bias});
  st.push_back({p + "down_proj_blocks", io::StDType::kU8, {kE, kH, kI / 32, 16}, dn.packed});
  st.push_back({p + "down_proj_scales", io::StDType::kU8, {kE, kH, kI / 32}, dn.scales});
  st.push_back({p + "gate_up_proj_bias", io::StDType::kBF16, {kE, 2 * kI}, gu_bias});
  st.push_back({p + "gate_up_proj_blocks", io::StDType::kU8, {kE, 2 * kI, kH / 32, 16}, gu.packed});
  st.push_back({p + "gate_up_proj_scales", io::StDType::kU8, {kE, 2 * kI, kH / 32}, gu.scales});
  st.push_back({blk + ".router.weight", io::StDType::kBF16, {kE, kH}, router});
  st.push_back({blk + ".router.bias", io::StDType::kBF16, {kE}, router_bias});
  const json gcfg = {{"model_type", "gpt_oss"},
                     {"num_local_experts", kE},
                     {"num_experts_per_tok", 2},
                     {"swiglu_limit", 5.0},
                     {"quantization_config",
                      {{"quant_method", "mxfp4"},
                       {"modules_to_not_convert", {"model.layers.*.mlp.router", "lm_head"}}}}};
  const Opened a = write("stacked", st, gcfg);

  std::vector<Tensor> pe;  // per expert, Quark naming
  for (int64_t e = 0; e < kE; ++e) {
    const std::string m = p + std::to_string(e) + ".";
    add_mx(pe, m + "gate_up_proj",
           {ElemType::kE2M1, 2 * kI, kH, slice(gu.packed, e, kE), slice(gu.scales, e, kE)}, 2 * kI, kH);
    pe.push_back({m + "gate_up_proj.bias", io::StDType::kBF16, {2 * kI}, slice(gu_bias, e, kE)});
    add_mx(pe, m + "down_proj",
           {ElemType::kE2M1, kH, kI, slice(dn.packed, e, kE), slice(dn.scales, e, kE)}, kH, kI);
    pe.push_back({m + "down_proj.bias", io::StDType::kBF16, {kH}, slice(dn_bias, e, kE)});
  }
  pe.push_back({blk + ".router.weight", io::StDType::kBF16, {kE, kH}, router});
  pe.push_back({blk + ".router.bias", io::StDType::kBF16, {kE}, router_bias});
  json qcfg = quark_config({{"model_type", "gpt_oss"}, {"num_local_experts", kE},
                            {"num_experts_per_tok", 2}, {"swiglu_limit", 5.0}});
  qcfg["quantization_config"]["exclude"] = {"lm_head", "*router*"};
  const Opened b = write("per_expert", pe, qcfg);

  auto la = model_layers(*a.ck, *a.info, 4);
  auto lb = model_layers(*b.ck, *b.info, 4);
  ASSERT_TRUE(la.ok()) << la.status().to_string();
  ASSERT_TRUE(lb.ok()) << lb.status().to_string();
  ASSERT_EQ(la.value().size(), 1u);
  ASSERT_EQ(lb.value().size(), 1u);
  const LayerSpec &sa = la.value()[0], &sb = lb.value()[0];
  EXPECT_EQ(sb.name, blk);
  EXPECT_EQ(sb.problem.to_string(), sa.problem.to_string());
  EXPECT_EQ(sb.problem.moe.layout, io::GateUpLayout::kInterleaved);
  EXPECT_EQ(sb.problem.moe.activation, MoEActivation::kSwigluOAI);
  EXPECT_EQ(sb.problem.moe.routing, Routing::kTopKSoftmax);
  EXPECT_EQ(sb.problem.moe.swiglu_limit, 5.0f);
  EXPECT_EQ(sa.problem.moe.swiglu_limit, 5.0f);
  EXPECT_TRUE(sb.problem.bias);
  EXPECT_EQ(sb.router_bias, blk + ".router.bias");
  auto wa = moe_weights(*a.ck, sa);
  auto wb = moe_weights(*b.ck, sb);
  ASSERT_TRUE(wa.ok()) << wa.status().to_string();
  ASSERT_TRUE(wb.ok()) << wb.status().to_string();
  expect_view(wb.value().w13, gu, 2 * kI, kH);
  expect_view(wb.value().w2, dn, kH, kI);
  ASSERT_EQ(wb.value().bias13.rows, kE);
  ASSERT_EQ(wb.value().bias13.cols, 2 * kI);
  EXPECT_EQ(wb.value().bias13.dtype, DType::kBF16);
  EXPECT_EQ(std::memcmp(wb.value().bias13.data, gu_bias.data(), gu_bias.size()), 0);
  EXPECT_EQ(std::memcmp(wb.value().bias2.data, dn_bias.data(), dn_bias.size()), 0);

  // Run both through cpu-reference: outputs bit-identical.
  const Problem& pr = sb.problem;
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint16_t> xs(size_t(pr.m * kH));
  for (auto& v : xs) v = num::f32_to_bf16(nd(g));
  auto logits_a = router_logits(*a.ck, sa, xs);
  auto logits_b = router_logits(*b.ck, sb, xs);
  ASSERT_TRUE(logits_a.ok() && logits_b.ok());
  EXPECT_EQ(logits_a.value(), logits_b.value());
  auto ref = make_cpu_reference_backend();
  auto run = [&](const MoEWeights& w) {
    std::vector<uint16_t> y(size_t(pr.m * kH));
    auto prep = ref->prepare_moe(pr, w);
    EXPECT_TRUE(prep.ok()) << prep.status().to_string();
    const MoERouting rt{{logits_b.value().data(), DType::kF32, pr.m, kE}, {}, nullptr};
    const Status s = ref->run_moe(pr, *prep.value(), {xs.data(), DType::kBF16, pr.m, kH}, rt,
                                  {y.data(), pr.out, pr.m, kH});
    EXPECT_TRUE(s.ok()) << s.to_string();
    return y;
  };
  const auto ya = run(wa.value()), yb = run(wb.value());
  EXPECT_EQ(ya, yb);
  EXPECT_NE(ya, std::vector<uint16_t>(ya.size(), 0));
}

// ---- the checkpoint's activation scheme is the layers' default ----------------------------

std::vector<uint8_t> bf16_scalar(float v) {
  const uint16_t b = num::f32_to_bf16(v);
  return {uint8_t(b & 0xff), uint8_t(b >> 8)};
}

// Quark w_mxfp4_a_fp8 as Quark 0.13 writes it: BF16 [] input scales. The layers run
// fp8-static-tensor with the exact scale; MoE takes the max of its experts' scales per GEMM.
TEST_F(MoEAssemblyTest, QuarkW4A8Bf16InputScalesAreTheDefault) {
  const SeparateExperts x;
  auto t = x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj");
  for (int64_t e = 0; e < kE; ++e) {
    const std::string p = "model.layers.0.mlp.experts." + std::to_string(e) + ".";
    t.push_back({p + "gate_proj.input_scale", io::StDType::kBF16, {}, bf16_scalar(0.125f * float(e + 1))});
    t.push_back({p + "up_proj.input_scale", io::StDType::kBF16, {}, bf16_scalar(0.0625f)});
    t.push_back({p + "down_proj.input_scale", io::StDType::kBF16, {}, bf16_scalar(e == 2 ? 3.0f : 1.5f)});
  }
  const MXMatrix q = make_mx(ElemType::kE2M1, 16, kH, 70);
  add_mx(t, "model.layers.0.self_attn.q_proj", q, 16, kH);
  t.push_back({"model.layers.0.self_attn.q_proj.input_scale", io::StDType::kBF16, {1},
               bf16_scalar(0.01171875f)});  // 3 * 2^-8: exact in BF16
  const Opened o = write("w4a8", t, quark_config({{"model_type", "qwen3_moe"}}, json::object(),
                                                  quark_fp8_static()));
  EXPECT_EQ(o.info->act, io::ActScheme::kFp8Static);
  auto ls = model_layers(*o.ck, *o.info, 2);
  ASSERT_TRUE(ls.ok()) << ls.status().to_string();
  ASSERT_EQ(ls.value().size(), 2u);
  const LayerSpec* moe = find(ls.value(), "model.layers.0.mlp");
  const LayerSpec* lin = find(ls.value(), "model.layers.0.self_attn.q_proj");
  ASSERT_TRUE(moe != nullptr && lin != nullptr);
  EXPECT_EQ(moe->problem.act, ActKey::kFP8StaticTensor);
  EXPECT_EQ(lin->problem.act, ActKey::kFP8StaticTensor);
  auto lw = linear_weights(*o.ck, *lin);
  ASSERT_TRUE(lw.ok()) << lw.status().to_string();
  EXPECT_EQ(lw.value().input_scale, 0.01171875f);
  auto mw = moe_weights(*o.ck, *moe);
  ASSERT_TRUE(mw.ok()) << mw.status().to_string();
  EXPECT_EQ(mw.value().input_scale13, 0.5f);  // max over gate (0.125 .. 0.5) and up (0.0625)
  EXPECT_EQ(mw.value().input_scale2, 3.0f);
}

TEST_F(MoEAssemblyTest, W4A4CheckpointRunsMxfp4DynamicByDefault) {
  json act = quark_spec("fp4");
  act["is_dynamic"] = true;
  std::vector<Tensor> t;
  add_mx(t, "model.layers.0.self_attn.o_proj", make_mx(ElemType::kE2M1, 16, kH, 80), 16, kH);
  auto ls = layers("w4a4", t, quark_config({{"model_type", "llama"}}, json::object(), act));
  ASSERT_TRUE(ls.ok()) << ls.status().to_string();
  ASSERT_EQ(ls.value().size(), 1u);
  EXPECT_EQ(ls.value()[0].problem.act, ActKey::kMXFP4Dynamic);
  // Quark names the activations' scale rule (scale_calculation_mode "even"): the layer runs it.
  EXPECT_EQ(ls.value()[0].problem.act_rule, ScaleRule::kEven);
  EXPECT_NE(ls.value()[0].problem.to_string().find("mxfp4-dynamic(even)"), std::string::npos)
      << ls.value()[0].problem.to_string();
  json floor_act = act;
  floor_act["scale_calculation_mode"] = "floor";
  auto lf = layers("w4a4floor", t, quark_config({{"model_type", "llama"}}, json::object(), floor_act));
  ASSERT_TRUE(lf.ok()) << lf.status().to_string();
  EXPECT_EQ(lf.value()[0].problem.act_rule, ScaleRule::kFloor);
  EXPECT_EQ(lf.value()[0].problem.to_string().find("(floor)"), std::string::npos);
  // Weight-only stays bf16.
  auto lw = layers("w4a16", t, quark_config({{"model_type", "llama"}}));
  ASSERT_TRUE(lw.ok()) << lw.status().to_string();
  EXPECT_EQ(lw.value()[0].problem.act, ActKey::kBF16);
  // fp8-static-tensor on a weight without input_scale: the layer lists, its weights refuse.
  LayerSpec st = lw.value()[0];
  st.problem.act = ActKey::kFP8StaticTensor;
  EXPECT_TRUE(has_all(linear_weights(*ck_.back(), st).status(), StatusCode::kInvalidArgument,
                      {"model.layers.0.self_attn.o_proj", "fp8-static-tensor", "no input_scale"}));
}

// Quark MXFP6 checkpoints with fp6 activations run the matching fp6 activation keys.
TEST_F(MoEAssemblyTest, Fp6ActivationsRunMxfp6DynamicKeys) {
  for (const char* d : {"fp6_e2m3", "fp6_e3m2"}) {
    json act = quark_spec(d);
    act["is_dynamic"] = true;
    const ElemType t = std::string(d) == "fp6_e2m3" ? ElemType::kE2M3 : ElemType::kE3M2;
    const MXMatrix w = make_mx(t, 16, kH, 82);
    std::vector<Tensor> v;
    const std::string a = "model.layers.0.self_attn.o_proj";
    v.push_back({a + ".weight", io::StDType::kU8, {16, kH * 6 / 8}, w.packed});
    v.push_back({a + ".weight_scale", io::StDType::kU8, {16, kH / 32}, w.scales});
    const json layer = {{a, {{"weight", quark_spec(d)}, {"input_tensors", act},
                             {"output_tensors", nullptr}, {"bias", nullptr}}}};
    auto ls = layers(std::string("w6a6_") + d, v, quark_config({{"model_type", "llama"}}, layer, act));
    ASSERT_TRUE(ls.ok()) << ls.status().to_string();
    ASSERT_EQ(ls.value().size(), 1u);
    const ActKey want = t == ElemType::kE2M3 ? ActKey::kMXFP6E2M3Dynamic : ActKey::kMXFP6E3M2Dynamic;
    EXPECT_EQ(ls.value()[0].problem.act, want) << d;
    EXPECT_NE(ls.value()[0].problem.to_string().find(act_key_name(want)), std::string::npos)
        << ls.value()[0].problem.to_string();
  }
}

TEST_F(MoEAssemblyTest, InputScaleOfAnotherDtypeIsRefusedByName) {
  std::vector<Tensor> t;
  add_mx(t, "model.layers.0.self_attn.o_proj", make_mx(ElemType::kE2M1, 16, kH, 81), 16, kH);
  t.push_back({"model.layers.0.self_attn.o_proj.input_scale", io::StDType::kI32, {}, {1, 0, 0, 0}});
  const fs::path d = root_ / "i32";
  fs::create_directories(d);
  std::ofstream(d / "config.json")
      << quark_config({{"model_type", "llama"}}, json::object(), quark_fp8_static()).dump();
  std::vector<io::SafetensorsWriter::Decl> decls;
  for (const auto& v : t) decls.push_back({v.name, v.dtype, v.shape});
  auto w = io::SafetensorsWriter::create((d / "model.safetensors").string(), decls);
  ASSERT_TRUE(w.ok());
  for (const auto& v : t) ASSERT_TRUE(w.value()->write(v.bytes).ok());
  ASSERT_TRUE(w.value()->finish().ok());
  auto c = io::Checkpoint::open(d.string());
  ASSERT_TRUE(c.ok());
  auto r = io::read_model(c.value());
  EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss,
                      {"model.layers.0.self_attn.o_proj.input_scale", "I32",
                       "expected an F32, BF16 or F16 scalar"}));
}

// ---- malformed expert sets ----------------------------------------------------------------

std::vector<Tensor> without(std::vector<Tensor> t, const std::string& prefix) {
  std::erase_if(t, [&](const Tensor& x) { return x.name.rfind(prefix, 0) == 0; });
  return t;
}

TEST_F(MoEAssemblyTest, MissingExpertNamesTheExpertAndTensor) {
  const SeparateExperts x;
  auto t = without(x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj"),
                   "model.layers.0.mlp.experts.2.down_proj");
  auto r = layers("missing", t, quark_config({{"model_type", "qwen3_moe"}}));
  EXPECT_TRUE(has_all(r.status(), StatusCode::kNotFound,
                      {"model.layers.0.mlp", "expert 2 of 4", "no down tensor",
                       "model.layers.0.mlp.experts.*.down_proj"}));
  // The last expert missing everywhere is caught by the config's count.
  auto t2 = without(x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj"),
                    "model.layers.0.mlp.experts.3.");
  r = layers("count", t2, quark_config({{"model_type", "qwen3_moe"}, {"num_experts", kE}}));
  EXPECT_TRUE(has_all(r.status(), StatusCode::kInvalidArgument,
                      {"model.layers.0.mlp", "experts 0..2 (3)", "config.json says 4 experts"}));
}

TEST_F(MoEAssemblyTest, TwoNamingsForOneProjectionIsAnError) {
  const SeparateExperts x;
  auto t = x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj");
  const MXMatrix extra = make_mx(ElemType::kE2M1, kI, kH, 40);
  add_mx(t, "model.layers.0.mlp.experts.1.w1", extra, kI, kH);
  auto r = layers("dup", t, quark_config({{"model_type", "qwen3_moe"}}));
  EXPECT_TRUE(has_all(r.status(), StatusCode::kInvalidArgument,
                      {"model.layers.0.mlp", "gate projection", "one naming per layer"}));
  // Fused and separate gate/up in one block.
  auto t2 = x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj");
  const MXMatrix f = make_mx(ElemType::kE2M1, 2 * kI, kH, 41);
  add_mx(t2, "model.layers.0.mlp.experts.0.gate_up_proj", f, 2 * kI, kH);
  r = layers("mixed", t2, quark_config({{"model_type", "qwen3_moe"}}));
  EXPECT_TRUE(has_all(r.status(), StatusCode::kInvalidArgument,
                      {"both a fused gate_up_proj", "model.layers.0.mlp.experts.0.gate_up_proj"}));
}

TEST_F(MoEAssemblyTest, MismatchedShapeAndFormatBetweenExperts) {
  const SeparateExperts x;
  auto t = without(x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj"),
                   "model.layers.0.mlp.experts.1.up_proj");
  const MXMatrix wide = make_mx(ElemType::kE2M1, kI + 2, kH, 50);
  add_mx(t, "model.layers.0.mlp.experts.1.up_proj", wide, kI + 2, kH);
  auto r = layers("shape", t, quark_config({{"model_type", "qwen3_moe"}}));
  EXPECT_TRUE(has_all(r.status(), StatusCode::kInvalidArgument,
                      {"expert 1 'model.layers.0.mlp.experts.1.up_proj'", "shape [34, 64]",
                       "expected [32, 64]", "every expert of a layer must match"}));

  // Expert 1's up projection quantized as MXFP6 E2M3 by a Quark per-layer override.
  auto t2 = without(x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj"),
                    "model.layers.0.mlp.experts.1.up_proj");
  const MXMatrix fp6 = make_mx(ElemType::kE2M3, kI, kH, 51);
  t2.push_back({"model.layers.0.mlp.experts.1.up_proj.weight", io::StDType::kU8, {kI, kH * 6 / 8}, fp6.packed});
  t2.push_back({"model.layers.0.mlp.experts.1.up_proj.weight_scale", io::StDType::kU8, {kI, kH / 32}, fp6.scales});
  const json layer = {{"model.layers.0.mlp.experts.1.up_proj",
                       {{"weight", quark_spec("fp6_e2m3")}, {"input_tensors", nullptr},
                        {"output_tensors", nullptr}, {"bias", nullptr}}}};
  r = layers("format", t2, quark_config({{"model_type", "qwen3_moe"}}, layer));
  EXPECT_TRUE(has_all(r.status(), StatusCode::kInvalidArgument,
                      {"expert 1 'model.layers.0.mlp.experts.1.up_proj'", "format mxfp6-e2m3",
                       "expected mxfp4"}));

  // Down with the wrong orientation for every expert.
  SeparateExperts y;
  auto t3 = x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj");
  std::erase_if(t3, [](const Tensor& v) { return v.name.find("down_proj") != std::string::npos; });
  for (int64_t e = 0; e < kE; ++e)
    add_mx(t3, "model.layers.0.mlp.experts." + std::to_string(e) + ".down_proj",
           make_mx(ElemType::kE2M1, kI, kH, uint32_t(60 + e)), kI, kH);
  r = layers("down", t3, quark_config({{"model_type", "qwen3_moe"}}));
  EXPECT_TRUE(has_all(r.status(), StatusCode::kInvalidArgument,
                      {"down 'model.layers.0.mlp.experts.*.down_proj' is [32, 64]",
                       "expected [64, 32]"}));
}

TEST_F(MoEAssemblyTest, RouterMissingListsNamesTried) {
  const SeparateExperts x;
  auto t = x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj");
  t.pop_back();  // the router
  auto r = layers("norouter", t, quark_config({{"model_type", "qwen3_moe"}}));
  EXPECT_TRUE(has_all(r.status(), StatusCode::kNotFound,
                      {"MoE block 'model.layers.0.mlp'", "model.layers.0.mlp.gate.weight",
                       "model.layers.0.mlp.router.weight"}));
}

TEST_F(MoEAssemblyTest, StackedExpertCountMustAgreeWithConfig) {
  const MXMatrix gu = make_mx(ElemType::kE2M1, kE * 2 * kI, kH, 11);
  const MXMatrix dn = make_mx(ElemType::kE2M1, kE * kH, kI, 12);
  const std::string p = "model.layers.0.mlp.experts.";
  std::vector<Tensor> st;
  st.push_back({p + "down_proj_blocks", io::StDType::kU8, {kE, kH, kI / 32, 16}, dn.packed});
  st.push_back({p + "down_proj_scales", io::StDType::kU8, {kE, kH, kI / 32}, dn.scales});
  st.push_back({p + "gate_up_proj_blocks", io::StDType::kU8, {kE, 2 * kI, kH / 32, 16}, gu.packed});
  st.push_back({p + "gate_up_proj_scales", io::StDType::kU8, {kE, 2 * kI, kH / 32}, gu.scales});
  st.push_back({"model.layers.0.mlp.router.weight", io::StDType::kBF16, {kE, kH}, bf16_bytes(kE * kH, 1)});
  const json cfg = {{"model_type", "gpt_oss"},
                    {"num_local_experts", 8},
                    {"quantization_config", {{"quant_method", "mxfp4"}}}};
  auto r = layers("stacked_count", st, cfg);
  EXPECT_TRUE(has_all(r.status(), StatusCode::kInvalidArgument,
                      {"model.layers.0.mlp.experts.gate_up_proj", "stacks 4 experts",
                       "config.json says 8"}));
}

// config.json fields of the wrong type (found by the model fuzzer: `"model_type": {}` threw
// nlohmann's type_error out of model_layers) are data-loss errors naming the file and the key.
TEST_F(MoEAssemblyTest, WrongTypedConfigFieldsNameTheKey) {
  const SeparateExperts x;
  const std::vector<Tensor> t = x.tensors("model.layers.0.mlp", "gate_proj", "up_proj", "down_proj");
  const std::vector<std::pair<std::string, json>> cases = {
      {"model_type", json::object()},
      {"scoring_func", 3},
      {"norm_topk_prob", "yes"},
      {"num_experts_per_tok", 2.5},  // not an integer: the default 2 would silently change topk
  };
  int i = 0;
  for (const auto& [key, value] : cases) {
    json model = {{"model_type", "qwen3_moe"}, {"num_experts", kE}, {"num_experts_per_tok", 3}};
    model[key] = value;
    auto r = layers("wrong_type_" + std::to_string(i++), t, quark_config(model));
    EXPECT_TRUE(has_all(r.status(), StatusCode::kDataLoss, {"config.json", "\"" + key + "\"", value.dump()}))
        << key << ": " << r.status().to_string();
  }
}

}  // namespace
}  // namespace mxq
