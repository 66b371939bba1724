// Real-producer fixtures (issue 15, deliverable 6): tiny checkpoints written by llm-compressor /
// compressed-tensors, AMD Quark and NVIDIA ModelOpt themselves (tests/fixtures/producers/,
// made by make_fixtures.py there), each with reference.safetensors holding the producer's own
// dequantized value of every quantized weight in BF16. For each fixture mxq must
//   - detect the format, the scheme and the activation scheme the producer recorded,
//   - decode every MX weight to exactly the producer's BF16 bits (mxq decodes to F32; each
//     value must be a BF16 value, i.e. low 16 bits zero, and its high 16 bits must equal the
//     reference's bits), with no reference weight left unmatched,
//   - see one MoE layer per MoE block (the per-expert 2-D tensors assembled) with the right
//     expert count, top-k, gate/up layout and the checkpoint's activation key,
//   - where original.safetensors is there, re-quantize it to the producer's exact bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "cpu/common/act_quant.h"
#include "mxq/layers.h"
#include "mxq/model.h"
#include "mxq/numerics.h"
#include "mxq/problem.h"
#include "mxq/quantize.h"
#include "mxq/safetensors.h"

namespace mxq {
namespace {

const std::string kDir = std::string(MXQ_SOURCE_DIR) + "/tests/fixtures/producers/";

struct Fixture {
  const char* dir;
  const char* format;
  const char* scheme;
  const char* act;       // io::act_scheme_name of the checkpoint's activation scheme
  const char* act_key;   // act_key_name of the layers' default activation key
  size_t weights;        // MX weights (per-expert ones counted one by one)
  int64_t experts;       // 0: dense; else one MoE layer "model.layers.0.mlp" with these experts
  io::GateUpLayout layout = io::GateUpLayout::kNone;  // the MoE layer's gate/up layout
};

void PrintTo(const Fixture& f, std::ostream* os) { *os << f.dir; }

// 7 dense Linear weights per tiny Llama (q, k, v, o, gate, up, down); MoE models: 4 attention +
// 4 experts x (gate, up, down) or 4 experts x (gate_up, down).
const Fixture kFixtures[] = {
    {"llmc-mxfp4a16-llama", "compressed-tensors", "mxfp4-pack-quantized", "none", "bf16", 7, 0},
    {"llmc-mxfp4-llama", "compressed-tensors", "mxfp4-pack-quantized", "mxfp4", "mxfp4-dynamic",
     7, 0},
    {"llmc-mxfp8-llama", "compressed-tensors", "mxfp8-quantized", "mxfp8", "mxfp8-dynamic", 7, 0},
    {"llmc-mxfp4a16-qwen3moe", "compressed-tensors", "mxfp4-pack-quantized", "none", "bf16", 16,
     4, io::GateUpLayout::kSeparate},
    {"llmc-mxfp4-gptoss", "compressed-tensors", "mxfp4-pack-quantized", "mxfp4", "mxfp4-dynamic",
     16, 4, io::GateUpLayout::kSeparate},
    {"quark-mxfp4wo-llama", "quark", "w_mxfp4", "none", "bf16", 7, 0},
    {"quark-mxfp4-llama", "quark", "w_mxfp4_a_mxfp4", "mxfp4", "mxfp4-dynamic", 7, 0},
    {"quark-mxfp4-fp8-llama", "quark", "w_mxfp4_a_fp8", "fp8-static", "fp8-static-tensor", 7, 0},
    {"quark-mxfp6e2m3-llama", "quark", "w_mxfp6_e2m3_a_mxfp6_e2m3", "mxfp6-e2m3",
     "mxfp6-e2m3-dynamic", 7, 0},
    {"quark-mxfp6e3m2-llama", "quark", "w_mxfp6_e3m2_a_mxfp6_e3m2", "mxfp6-e3m2",
     "mxfp6-e3m2-dynamic", 7, 0},
    {"quark-mxfp4-mxfp6e2m3-llama", "quark", "w_mxfp4_a_mxfp6_e2m3", "mxfp6-e2m3",
     "mxfp6-e2m3-dynamic", 7, 0},
    {"quark-mxfp4-qwen3moe", "quark", "w_mxfp4_a_mxfp4", "mxfp4", "mxfp4-dynamic", 16, 4,
     io::GateUpLayout::kSeparate},
    {"quark-mxfp4-gptoss", "quark", "w_mxfp4_a_mxfp4", "mxfp4", "mxfp4-dynamic", 12, 4,
     io::GateUpLayout::kInterleaved},
    {"modelopt-mxfp8-llama", "modelopt", "MXFP8", "mxfp8", "mxfp8-dynamic", 7, 0},
    {"modelopt-mxfp4-llama", "modelopt", "mxfp4", "mxfp4", "mxfp4-dynamic", 7, 0},
    {"modelopt-mxfp4-qwen3moe", "modelopt", "mxfp4", "mxfp4", "mxfp4-dynamic", 16, 4,
     io::GateUpLayout::kSeparate},
    // W4A8_MXFP4_FP8_CFG with "algorithm": "max" (the stock config calibrates nothing).
    {"modelopt-w4a8max-mxfp4-fp8-llama", "modelopt", "W4A8_MXFP4_FP8", "fp8-static",
     "fp8-static-tensor", 7, 0},
    // compressed-tensors 0.20 alone (its preset schemes, no llm-compressor).
    {"ct020-mxfp4-llama", "compressed-tensors", "mxfp4-pack-quantized", "mxfp4", "mxfp4-dynamic",
     7, 0},
    {"ct020-mxfp8a16-llama", "compressed-tensors", "mxfp8-quantized", "none", "bf16", 7, 0},
    {"ct020-mxfp6a16-llama", "compressed-tensors", "mxfp6-pack-quantized", "none", "bf16", 7, 0},
    {"ct020-mxfp6a8-llama", "compressed-tensors", "mxfp6-pack-quantized", "mxfp8",
     "mxfp8-dynamic", 7, 0},
    {"ct020-mxfp4-qwen3moe", "compressed-tensors", "mxfp4-pack-quantized", "mxfp4",
     "mxfp4-dynamic", 16, 4, io::GateUpLayout::kSeparate},
    {"ct020-mxfp4xfp8-llama", "compressed-tensors", "mxfp4-pack-quantized",
     "fp8-dynamic-group128", "fp8-dynamic-group128", 7, 0},
};

class ProducerFixture : public ::testing::TestWithParam<Fixture> {};

TEST_P(ProducerFixture, FormatSchemeAndBitExactDecode) {
  const Fixture& f = GetParam();
  auto ck = io::Checkpoint::open(kDir + f.dir);
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  auto info = io::read_model(ck.value());
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  EXPECT_EQ(info.value().format, f.format);
  EXPECT_EQ(info.value().scheme, f.scheme);
  EXPECT_STREQ(io::act_scheme_name(info.value().act), f.act);
  ASSERT_EQ(info.value().weights.size(), f.weights);

  auto ref = io::SafetensorsFile::open(kDir + f.dir + "/reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  ASSERT_EQ(ref.value()->tensors().size(), f.weights) << "every reference weight is an MX weight";
  std::set<int> codes;
  for (const io::MXWeight& w : info.value().weights) {
    const io::TensorInfo* t = ref.value()->find(w.module + ".weight");
    ASSERT_NE(t, nullptr) << w.module << " has no producer reference";
    ASSERT_EQ(t->dtype, io::StDType::kBF16) << w.module;
    ASSERT_EQ(t->shape, w.shape) << w.module;
    for (uint8_t c : w.scales) codes.insert(c);
    auto got = io::dequantize_weight(w, 1);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    const std::span<const uint8_t> want = ref.value()->data(*t);
    ASSERT_EQ(want.size(), got.value().size() * 2) << w.module;
    size_t mismatches = 0, first = 0;
    for (size_t i = 0; i < got.value().size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &got.value()[i], 4);
      uint16_t rb;
      std::memcpy(&rb, want.data() + 2 * i, 2);
      if ((bits & 0xFFFFu) != 0 || uint16_t(bits >> 16) != rb) {
        if (mismatches++ == 0) first = i;
      }
    }
    if (mismatches != 0) {
      uint16_t rb;
      std::memcpy(&rb, want.data() + 2 * first, 2);
      ADD_FAILURE() << f.dir << " " << w.module << ": " << mismatches << " of "
                    << got.value().size() << " values differ from the producer's; first at "
                    << first << ": mxq " << got.value()[first] << ", producer BF16 0x" << std::hex
                    << rb;
    }
  }
  // The fixtures are built so that the E8M0 scales cover many codes (make_fixtures.py).
  EXPECT_GE(codes.size(), 15u) << "scale codes used";
}

TEST_P(ProducerFixture, LayersOneMoELayerPerBlockAndTheCheckpointsActivationKey) {
  const Fixture& f = GetParam();
  auto ck = io::Checkpoint::open(kDir + f.dir);
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  auto info = io::read_model(ck.value());
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  auto layers = model_layers(ck.value(), info.value(), 3);
  ASSERT_TRUE(layers.ok()) << layers.status().to_string();
  size_t moe = 0, linear = 0;
  for (const LayerSpec& l : layers.value()) {
    EXPECT_STREQ(act_key_name(l.problem.act), f.act_key) << l.name;
    if (l.problem.op == Op::kMoE) {
      ++moe;
      EXPECT_EQ(l.name, "model.layers.0.mlp");
      EXPECT_EQ(l.problem.moe.experts, f.experts) << l.name;
      EXPECT_EQ(l.problem.moe.topk, 2) << l.name;
      EXPECT_EQ(l.problem.moe.layout, f.layout) << l.name;
      EXPECT_EQ(l.problem.n, 64) << l.name;  // hidden (moe_problem: n = hidden, k = inter)
      EXPECT_EQ(l.problem.k, 32) << l.name;  // moe_intermediate_size / intermediate_size
      EXPECT_FALSE(l.router_weight.empty()) << l.name;
      auto mw = moe_weights(ck.value(), l);
      EXPECT_TRUE(mw.ok()) << mw.status().to_string();
    } else {
      ++linear;
      auto lw = linear_weights(ck.value(), l);
      EXPECT_TRUE(lw.ok()) << lw.status().to_string();
    }
  }
  EXPECT_EQ(moe, f.experts > 0 ? 1u : 0u);
  EXPECT_EQ(linear, f.experts > 0 ? 4u : 7u);  // attention q/k/v/o (+ gate/up/down when dense)
}

INSTANTIATE_TEST_SUITE_P(Producers, ProducerFixture, ::testing::ValuesIn(kFixtures),
                         [](const auto& p) {
                           std::string n = p.param.dir;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// Fixtures that also hold original.safetensors, the BF16 weights the producer quantized
// (compressed-tensors 0.20 alone; ModelOpt's dense exports, whose scales are rceil): mxq
// quantizing them with the scale rule and element rounding it reads for the checkpoint
// (ModelInfo::scale_rule and ::rounding, saturating) must write the producer's exact bytes,
// elements and E8M0 scales. compressed-tensors 0.20 rounds the group amax at a 1-bit
// mantissa for FP4 / FP8 (even_fp4_mantissa) but at E2M3's 3-bit mantissa for MXFP6 (even);
// ModelOpt's MXFP4 export rounds element ties toward zero (under RNE 14-35 of 3072 bytes per
// MLP weight differ).
class ProducerBytes : public ::testing::TestWithParam<const char*> {};

TEST_P(ProducerBytes, OriginalQuantizedWithTheReadScaleRuleIsTheProducersBytes) {
  const std::string dir = kDir + GetParam();
  auto ck = io::Checkpoint::open(dir);
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  auto info = io::read_model(ck.value());
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  ASSERT_TRUE(info.value().scale_rule.has_value()) << "the reader names no scale rule";
  auto orig = io::SafetensorsFile::open(dir + "/original.safetensors");
  ASSERT_TRUE(orig.ok()) << orig.status().to_string();
  ASSERT_EQ(orig.value()->tensors().size(), info.value().weights.size());
  for (const io::MXWeight& w : info.value().weights) {
    const io::TensorInfo* t = orig.value()->find(w.module + ".weight");
    ASSERT_NE(t, nullptr) << w.module;
    ASSERT_EQ(t->dtype, io::StDType::kBF16) << w.module;
    ASSERT_EQ(t->shape, w.shape) << w.module;
    QuantOptions q;
    q.elem = w.elem;
    q.scale_rule = *info.value().scale_rule;
    q.rounding = info.value().rounding;
    q.threads = 1;
    const int64_t rows = w.batch() * w.n();
    std::vector<uint8_t> packed(w.packed.size()), scales(w.scales.size());
    ASSERT_TRUE(quantize(orig.value()->data(*t).data(), DType::kBF16, rows, w.k(), q,
                         packed.data(), scales.data())
                    .ok());
    size_t bad_scales = 0, bad_bytes = 0;
    for (size_t i = 0; i < scales.size(); ++i) bad_scales += scales[i] != w.scales[i];
    for (size_t i = 0; i < packed.size(); ++i) bad_bytes += packed[i] != w.packed[i];
    EXPECT_EQ(bad_scales, 0u) << w.module << ": of " << scales.size() << " scales under "
                              << scale_rule_name(q.scale_rule);
    EXPECT_EQ(bad_bytes, 0u) << w.module << ": of " << packed.size() << " element bytes under "
                             << scale_rule_name(q.scale_rule) << ", "
                             << rounding_name(q.rounding);
  }
}

INSTANTIATE_TEST_SUITE_P(Producers, ProducerBytes,
                         ::testing::Values("ct020-mxfp4-llama", "ct020-mxfp8a16-llama",
                                           "ct020-mxfp6a16-llama", "ct020-mxfp6a8-llama",
                                           "ct020-mxfp4-qwen3moe", "ct020-mxfp4xfp8-llama",
                                           "modelopt-w4a8max-mxfp4-fp8-llama",
                                           "modelopt-mxfp4-llama", "modelopt-mxfp8-llama"),
                         [](const auto& p) {
                           std::string n = p.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// compressed-tensors 0.20's MXFP4XFP8 preset: MXFP4 weights, FP8 activations with a dynamic
// scale per token and 128-group, read as fp8-dynamic-group128 (kFixtures above). The fixture's
// activation_fake_quant.safetensors holds compressed-tensors' own fake-quant of a BF16 tensor
// [16, 384] (make_fixtures.py ct-act). compressed-tensors computes in the activation dtype: the
// scale bf16(amax / 448) (an all-zero group: BF16's eps 2^-7), the quotient bf16(x / s), then
// E4M3 (RNE, clamped to +-448), the value bf16(decode * s). mxq's key keeps the FP32 scale
// amax / 448 apart from the E4M3 code, as an engine's FP8 GEMM does (vLLM's per-token-group
// quantization, as we read it): the same codes mostly, a different scale, so values differ by
// up to one E4M3 step. Checked: (1) this BF16 model of compressed-tensors reproduces the
// producer's bits, so the difference is understood, not guessed; (2) mxq's values are within
// one E4M3 step (plus BF16 rounding) of the producer's everywhere, and differ in a fraction
// of them (docs/numerics.md gives the count).
TEST(ProducerFixtureCompressedTensors, Fp8Group128ActivationsAgainstTheProducersFakeQuant) {
  auto f = io::SafetensorsFile::open(kDir + "ct020-mxfp4xfp8-llama/activation_fake_quant.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  const io::TensorInfo* xt = f.value()->find("x");
  const io::TensorInfo* qt = f.value()->find("fake_quant");
  ASSERT_TRUE(xt != nullptr && qt != nullptr);
  ASSERT_EQ(xt->dtype, io::StDType::kBF16);
  ASSERT_EQ(xt->shape, (std::vector<int64_t>{16, 384}));
  ASSERT_EQ(qt->shape, xt->shape);
  const int64_t rows = 16, k = 384;
  std::vector<uint16_t> x(size_t(rows * k)), want(size_t(rows * k));
  std::memcpy(x.data(), f.value()->data(*xt).data(), x.size() * 2);
  std::memcpy(want.data(), f.value()->data(*qt).data(), want.size() * 2);
  auto bf = [](float v) { return num::bf16_to_f32(num::f32_to_bf16(v)); };
  auto e4m3 = [](float q) {
    return num::decode_elem(ElemType::kE4M3, num::encode_elem(ElemType::kE4M3, num::f32_bits(q), 0,
                                                              Rounding::kRne, Saturation::kSaturate));
  };
  std::vector<float> mxq;
  ASSERT_TRUE(cpu::act_quantize(ActKey::kFP8DynamicGroup128, {x.data(), DType::kBF16, rows, k},
                                1.0f, mxq).ok());
  size_t model_mismatch = 0, differ = 0, beyond_a_step = 0, zero_groups = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < k; g += 128) {
      float amax = 0.0f;
      for (int64_t c = g; c < g + 128; ++c) amax = std::max(amax, std::fabs(num::bf16_to_f32(x[size_t(r * k + c)])));
      zero_groups += amax == 0.0f;
      const float s_bf16 = amax == 0.0f ? 0.0078125f : bf(amax / 448.0f);
      const float s_f32 = amax == 0.0f ? 1.0f : amax / 448.0f;
      for (int64_t c = g; c < g + 128; ++c) {
        const size_t i = size_t(r * k + c);
        const float xv = num::bf16_to_f32(x[i]), producer = num::bf16_to_f32(want[i]);
        model_mismatch += num::f32_to_bf16(bf(e4m3(bf(xv / s_bf16)) * s_bf16)) != want[i];
        differ += num::f32_to_bf16(mxq[i]) != want[i];
        // One E4M3 step at the larger of the two values (2^(e - 3) in binade e, 2^-9 below the
        // normals; they may sit on either side of a binade edge) in units of the group scale,
        // plus BF16's rounding of the producer's value.
        const float u = std::max(std::fabs(producer), std::fabs(mxq[i])) / s_f32;
        const float step = u < 0.015625f ? 0.001953125f : std::ldexp(1.0f, std::ilogb(u) - 3);
        beyond_a_step += std::fabs(mxq[i] - producer) > 1.01f * step * s_f32 + 0.004f * std::fabs(producer);
      }
    }
  EXPECT_EQ(zero_groups, 1u) << "the fixture has one all-zero group (make_fixtures.py)";
  EXPECT_EQ(model_mismatch, 0u) << "the BF16 model of compressed-tensors' fake-quant";
  EXPECT_EQ(beyond_a_step, 0u) << "values more than one E4M3 step from the producer's";
  EXPECT_GT(differ, 0u) << "the BF16 and FP32 scale arithmetic differ somewhere (docs)";
  EXPECT_LT(differ, x.size() / 2) << differ << " of " << x.size();
  std::printf("fp8-dynamic-group128 vs compressed-tensors 0.20's BF16 fake-quant: %zu of %zu "
              "values differ (each within one E4M3 step)\n", differ, x.size());
}

// ModelOpt 0.47's stock W4A8_MXFP4_FP8_CFG has "algorithm": None: mtq.quantize calibrates
// nothing, the FP8 input quantizers have no amax (they compute one per tensor at run time) and
// export_hf_checkpoint writes no input_scale. mxq refuses that export, naming the tensor (with
// "algorithm": "max" the export has them: modelopt-w4a8max-mxfp4-fp8-llama above).
TEST(ProducerFixtureModelOpt, W4A8WithoutInputScaleIsRefusedByName) {
  auto ck = io::Checkpoint::open(kDir + "modelopt-w4a8-mxfp4-fp8-llama");
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  auto info = io::read_model(ck.value());
  ASSERT_FALSE(info.ok());
  EXPECT_NE(info.status().message().find("static activation scale "
                                         "'model.layers.0.mlp.down_proj.input_scale'"),
            std::string::npos)
      << info.status().message();
}

}  // namespace
}  // namespace mxq
