// tests/cases/cases.json, the one shape list of tests and benchmarks: the embedded copy parses,
// has what its readers take, and a broken file is refused with the entry named.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "case_list.h"
#include "mxq_cases_json.h"

namespace mxq::cases {
namespace {

TEST(CaseList, EmbeddedFileParses) {
  const CaseList& c = case_list();
  EXPECT_GT(c.tests_quick_linear.awkward_nk.size(), 0u);
  EXPECT_GT(c.tests_quick_moe.size(), 0u);
  EXPECT_GT(c.tests_full_linear.shapes.size(), 0u);
  EXPECT_GT(c.tests_full_moe.size(), 0u);
  // The CPU GEMV benchmark's default set (bench/results/cpu-2core/gemv.md was measured on it).
  ASSERT_EQ(c.gemv_bench.shapes.size(), 2u);
  EXPECT_EQ(c.gemv_bench.shapes[0].n, 4096);
  EXPECT_EQ(c.gemv_bench.shapes[1].k, 8192);
  EXPECT_EQ(c.gemv_bench.ms, (std::vector<int64_t>{1, 4, 16}));
}

std::string refusal(const std::string& text) {
  try {
    parse_case_list(text);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  if (at == std::string::npos) return "";  // the edit did not apply: the caller's check fails
  return s.replace(at, from.size(), to);
}

TEST(CaseList, BrokenFilesAreRefusedWithTheEntry) {
  const std::string good = kCasesJson;
  EXPECT_EQ(refusal(good), "");
  EXPECT_NE(refusal("{").find("parse"), std::string::npos);
  EXPECT_NE(refusal("{}").find("missing \"linear_shapes\""), std::string::npos);
  EXPECT_NE(refusal("{\"linear_shapes\": {}, \"moe_layers\": {}}").find("missing \"sets\""),
            std::string::npos);
  const std::string unknown_shape = replaced(good, "\"shapes\": [\"4096x4096\", \"8192x8192\"]",
                                             "\"shapes\": [\"4096x4096\", \"8192x8193\"]");
  ASSERT_FALSE(unknown_shape.empty());
  EXPECT_NE(refusal(unknown_shape).find("missing \"8192x8193\""), std::string::npos)
      << refusal(unknown_shape);
  const std::string bad_layout =
      replaced(good, "\"layout\": \"separate\"", "\"layout\": \"sideways\"");  // deepseek-v3
  ASSERT_FALSE(bad_layout.empty());
  EXPECT_NE(refusal(bad_layout).find("layout"), std::string::npos) << refusal(bad_layout);
  const std::string zero_m = replaced(good, "\"awkward_ms\": [1,", "\"awkward_ms\": [0,");
  ASSERT_FALSE(zero_m.empty());
  EXPECT_NE(refusal(zero_m).find("awkward_ms"), std::string::npos) << refusal(zero_m);
}

}  // namespace
}  // namespace mxq::cases
