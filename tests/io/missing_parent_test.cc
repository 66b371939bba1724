// Every command that writes a model directory (sample, quantize, convert, dequantize) creates
// missing parent directories of its output (issue 13), still writing through a staged temp
// directory renamed into place: afterwards only the output exists, no temp or old directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mxq/pipeline.h"

namespace mxq::io {
namespace {

namespace fs = std::filesystem;

class MissingParentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mxq_missing_parent_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& rel) const { return (dir_ / rel).string(); }
  // Names in `d` other than `keep`: leftovers such as "<out>.tmp-<pid>" or "<out>.old-<pid>".
  std::vector<std::string> others(const fs::path& d, const std::string& keep) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(d))
      if (e.path().filename() != keep) out.push_back(e.path().filename().string());
    return out;
  }
  void expect_model_dir(const std::string& rel) const {
    const fs::path d = dir_ / rel;
    ASSERT_TRUE(fs::is_directory(d)) << d;
    EXPECT_TRUE(fs::exists(d / "config.json")) << d;
    EXPECT_TRUE(others(d.parent_path(), d.filename().string()).empty()) << d.parent_path();
  }
  fs::path dir_;
};

TEST_F(MissingParentTest, SampleCreatesParents) {
  ASSERT_FALSE(fs::exists(dir_ / "a"));
  const Status s = write_sample_model(p("a/b/c/sample"));
  ASSERT_TRUE(s.ok()) << s.to_string();
  expect_model_dir("a/b/c/sample");
  // A trailing slash names the same directory (no "sample/.tmp-<pid>" inside it).
  const Status again = write_sample_model(p("a/b/c/sample/"), /*overwrite=*/true);
  ASSERT_TRUE(again.ok()) << again.to_string();
  expect_model_dir("a/b/c/sample");
  EXPECT_TRUE(others(dir_ / "a/b/c/sample", "").size() >= 3u);
  for (const auto& e : fs::directory_iterator(dir_ / "a/b/c/sample"))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST_F(MissingParentTest, QuantizeCreatesParents) {
  ASSERT_TRUE(write_sample_model(p("bf16")).ok());
  auto r = quantize_model(p("bf16"), p("x/y/q"), QuantizeModelOptions{});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_model_dir("x/y/q");
  EXPECT_TRUE(verify_model(p("x/y/q"), p("bf16")).ok());
}

TEST_F(MissingParentTest, ConvertCreatesParents) {
  ASSERT_TRUE(write_sample_model(p("bf16")).ok());
  ASSERT_TRUE(quantize_model(p("bf16"), p("q"), QuantizeModelOptions{}).ok());
  auto r = convert_model(p("q"), p("deep/er/ct"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_model_dir("deep/er/ct");
}

TEST_F(MissingParentTest, DequantizeCreatesParents) {
  ASSERT_TRUE(write_sample_model(p("bf16")).ok());
  ASSERT_TRUE(quantize_model(p("bf16"), p("q"), QuantizeModelOptions{}).ok());
  auto r = dequantize_model(p("q"), p("d1/d2/dense"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_model_dir("d1/d2/dense");
}

TEST_F(MissingParentTest, ParentThatIsAFileIsAClearError) {
  std::ofstream(dir_ / "file") << "not a directory";
  const Status s = write_sample_model(p("file/sub/sample"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("cannot create parent directory"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("file/sub"), std::string::npos) << s.message();
  // Nothing was written next to the file.
  EXPECT_EQ(others(dir_, "file").size(), 0u);
}

}  // namespace
}  // namespace mxq::io
