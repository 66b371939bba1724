// The fixture of the format-adapter tests (formats_test.cc, formats_quark_test.cc): a temp
// checkpoint directory, tensors added by name and written with the project's safetensors
// writer, read back through read_model(), and a byte-for-byte weight check.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/checkpoint_fixtures.h"
#include "io/formats/common.h"
#include "mxq/model.h"
#include "mxq/pipeline.h"
#include "mxq/quantize.h"
#include "mxq/safetensors.h"

namespace mxq::io {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::f32_scalar;
using test::has_all;
using test::make_mx;
using test::random_bytes;

class FormatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("mxq_formats_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    ckpt_.reset();
    fs::remove_all(dir_);
  }

  void add(std::string name, StDType dt, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
    tensors_.push_back({std::move(name), dt, std::move(shape), std::move(bytes)});
  }
  // A packed/scale pair from `m`, with the given stored shapes.
  void add_mx(const std::string& packed, StDType packed_dt, std::vector<int64_t> packed_shape,
              const std::string& scale, StDType scale_dt, std::vector<int64_t> scale_shape,
              const MXMatrix& m) {
    add(packed, packed_dt, std::move(packed_shape), m.packed);
    add(scale, scale_dt, std::move(scale_shape), m.scales);
  }
  void write_json(const char* file, const json& j) {
    std::ofstream(dir_ / file) << j.dump(2);
  }

  StatusOr<ModelInfo> read() {
    ckpt_.reset();
    std::vector<SafetensorsWriter::Decl> decls;
    for (const auto& t : tensors_) decls.push_back({t.name, t.dtype, t.shape});
    auto w = SafetensorsWriter::create((dir_ / "model.safetensors").string(), decls);
    EXPECT_TRUE(w.ok()) << w.status().to_string();
    for (const auto& t : tensors_) EXPECT_TRUE(w.value()->write(t.bytes).ok()) << t.name;
    EXPECT_TRUE(w.value()->finish().ok());
    auto c = Checkpoint::open(dir_.string());
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    ckpt_.emplace(std::move(c).value());
    return read_model(*ckpt_);
  }

  // Checks one weight against the matrix its bytes came from.
  static void expect_weight(const MXWeight& w, const std::string& module, ElemType elem,
                            const std::vector<int64_t>& shape, const MXMatrix& m,
                            GateUpLayout gate_up = GateUpLayout::kNone,
                            const std::string& bias = "", const std::string& input_scale = "") {
    SCOPED_TRACE(module);
    EXPECT_EQ(w.module, module);
    EXPECT_EQ(w.elem, elem);
    EXPECT_EQ(w.shape, shape);
    EXPECT_EQ(w.gate_up, gate_up);
    EXPECT_EQ(w.bias_name, bias);
    EXPECT_EQ(w.input_scale_name, input_scale);
    ASSERT_EQ(w.packed.size(), m.packed.size());
    ASSERT_EQ(w.scales.size(), m.scales.size());
    EXPECT_EQ(std::memcmp(w.packed.data(), m.packed.data(), m.packed.size()), 0);
    EXPECT_EQ(std::memcmp(w.scales.data(), m.scales.data(), m.scales.size()), 0);
    auto got = dequantize_weight(w);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    auto want = dequantize(m);
    ASSERT_TRUE(want.ok());
    ASSERT_EQ(got.value().size(), want.value().size());
    EXPECT_EQ(std::memcmp(got.value().data(), want.value().data(), want.value().size() * 4), 0);
  }

  struct Tensor {
    std::string name;
    StDType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  fs::path dir_;
  std::vector<Tensor> tensors_;
  std::optional<Checkpoint> ckpt_;
};

// A Quark export's config.json: `weight` / `input` the global specs (test::quark_spec, ...).
inline json quark_config(json weight, json input, json layer = json::object(),
                         json exclude = json::array({"lm_head"})) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"quantization_config", test::quark_quantization_config(std::move(weight), std::move(input),
                                                                   std::move(layer),
                                                                   std::move(exclude), "0.9")}};
}
using test::quark_fp8_static;
using test::quark_spec;

}  // namespace mxq::io
