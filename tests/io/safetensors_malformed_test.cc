// One test per rule a safetensors reader must enforce (docs FORMATS.md, "safetensors"): each
// crafts the bytes by hand and checks that open() and parse() both reject them with kDataLoss and
// a message naming the file and the rule. Also: the fuzz seed corpus says what it claims, and
// every input the fuzzer ever crashed on is now a clean error.
#include <gtest/gtest.h>

#include <filesystem>

#include "io_test_util.h"
#include "mxq/safetensors.h"

namespace mxq::io {
namespace {

using testing::image;
using testing::le64;

// `"name":{"dtype":D,"shape":S,"data_offsets":O}` with the JSON fragments given verbatim.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":" + dtype + ",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

class MalformedTest : public testing::TempDirTest {
 protected:
  void expect_rejected(const std::vector<uint8_t>& bytes, const std::string& rule) {
    const std::string file = path("case" + std::to_string(n_++) + ".safetensors");
    testing::write_file(file, bytes);
    auto f = SafetensorsFile::open(file);
    ASSERT_FALSE(f.ok()) << "accepted a file breaking: " << rule;
    EXPECT_EQ(f.status().code(), StatusCode::kDataLoss) << f.status().message();
    EXPECT_EQ(f.status().message().rfind(file + ": ", 0), 0u) << f.status().message();
    EXPECT_NE(f.status().message().find(rule), std::string::npos)
        << "want \"" << rule << "\" in: " << f.status().message();

    auto p = SafetensorsFile::parse(bytes, "mem.safetensors");
    ASSERT_FALSE(p.ok()) << rule;
    EXPECT_EQ(p.status().code(), StatusCode::kDataLoss);
    EXPECT_EQ(p.status().message().rfind("mem.safetensors: ", 0), 0u) << p.status().message();
    EXPECT_NE(p.status().message().find(rule), std::string::npos) << p.status().message();
  }
  // The header `{<entries>}` followed by `data` bytes.
  void expect_rejected(const std::string& entries, size_t data, const std::string& rule) {
    expect_rejected(image("{" + entries + "}", data), rule);
  }
  int n_ = 0;
};

TEST_F(MalformedTest, FileShorterThan8Bytes) {
  for (size_t n : {0, 1, 7}) {
    expect_rejected(std::vector<uint8_t>(n, 0), "shorter than the 8-byte header length prefix");
  }
}

TEST_F(MalformedTest, HeaderLengthOverLimit) {
  const std::string rule = "exceeds the limit of 100000000 bytes";
  expect_rejected(image("{}", 0, 100'000'001), rule);
  expect_rejected(le64(UINT64_MAX), rule);         // N + 8 would overflow
  expect_rejected(le64(UINT64_MAX - 7), rule);     // N + 8 would wrap to 0
  expect_rejected(le64(uint64_t(1) << 63), rule);
}

TEST_F(MalformedTest, HeaderBeyondEndOfFile) {
  const std::string rule = "+ 8 extends beyond the end of the file";
  expect_rejected(image("{}", 0, 3), rule);
  expect_rejected(image("{\"a\":1}", 0, 100'000'000), rule);
  expect_rejected(le64(1), rule);
}

TEST_F(MalformedTest, HeaderNotUtf8) {
  const std::string rule = "header is not valid UTF-8";
  for (const char* bad : {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe6\x97",
                          "\x80"}) {
    expect_rejected(image(std::string("{\"") + bad + "\":{}}"), rule);
  }
  expect_rejected(image("{} \xc3"), rule);  // even in the padding
}

TEST_F(MalformedTest, HeaderNotStartingWithBrace) {
  const std::string rule = "header does not start with '{'";
  expect_rejected(image(" {}"), rule);
  expect_rejected(image("[]"), rule);
  expect_rejected(image("\"{}\""), rule);
  expect_rejected(image(""), rule);  // N = 0
  expect_rejected(image("\n{}"), rule);
}

TEST_F(MalformedTest, HeaderNotJson) {
  const std::string rule = "header is not valid JSON";
  expect_rejected(image("{\"a\":}"), rule);
  expect_rejected(image("{"), rule);
  expect_rejected(image("{} x"), rule);               // trailing garbage
  // nlohmann's lexer stops at NUL: without an explicit check these parsed as "{}".
  expect_rejected(image(std::string("{}\0\0\0\0\0\0", 8)), rule + ": NUL byte at header offset 2");
  expect_rejected(image(std::string("{}\0garbage", 10)), "NUL byte");
  expect_rejected(image(std::string("{\"a\0\":1}", 8)), "NUL byte");
  expect_rejected(image("{/*c*/}"), rule);            // no comments
  expect_rejected(image("{'a':1}"), rule);
  expect_rejected(image("{}{}"), rule);
  expect_rejected(image("{\"a\":\"\\ud800\"}"), rule);  // lone surrogate escape
}

TEST_F(MalformedTest, HeaderNestedTooDeep) {
  std::string deep = "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],\"x\":";
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  expect_rejected(image(deep + "}}"), "nests deeper than 64 levels");
}

TEST_F(MalformedTest, DuplicateKeys) {
  const std::string a = entry("a", "\"U8\"", "[1]", "[0,1]");
  expect_rejected(a + "," + a, 1, "duplicate key \"a\"");
  expect_rejected("\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}",
                  1, "duplicate key \"dtype\"");
  expect_rejected("\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}", 0, "duplicate key \"k\"");
  expect_rejected("\"__metadata__\":{},\"__metadata__\":{}", 0, "duplicate key \"__metadata__\"");
  // The same name spelled with an escape is the same key.
  expect_rejected(a + "," + entry("\\u0061", "\"U8\"", "[0]", "[1,1]"), 1, "duplicate key \"a\"");
}

TEST_F(MalformedTest, EntryMissingFields) {
  expect_rejected("\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}", 1, "tensor \"a\": missing \"dtype\"");
  expect_rejected("\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}", 1, "tensor \"a\": missing \"shape\"");
  expect_rejected("\"a\":{\"dtype\":\"U8\",\"shape\":[1]}", 1, "tensor \"a\": missing \"data_offsets\"");
}

TEST_F(MalformedTest, EntryFieldsOfWrongJsonType) {
  expect_rejected("\"a\":5", 0, "tensor \"a\": entry is not a JSON object");
  expect_rejected("\"a\":[]", 0, "entry is not a JSON object");
  expect_rejected("\"a\":null", 0, "entry is not a JSON object");
  expect_rejected(entry("a", "5", "[1]", "[0,1]"), 1, "\"dtype\" is not a string");
  expect_rejected(entry("a", "[\"U8\"]", "[1]", "[0,1]"), 1, "\"dtype\" is not a string");
  expect_rejected(entry("a", "\"U8\"", "1", "[0,1]"), 1, "\"shape\" is not an array");
  expect_rejected(entry("a", "\"U8\"", "{}", "[0,1]"), 1, "\"shape\" is not an array");
  expect_rejected(entry("a", "\"U8\"", "[1.0]", "[0,1]"), 1, "shape dimension 1.0 is not an integer");
  expect_rejected(entry("a", "\"U8\"", "[\"1\"]", "[0,1]"), 1, "is not an integer");
  expect_rejected(entry("a", "\"U8\"", "[true]", "[0,1]"), 1, "is not an integer");
  expect_rejected(entry("a", "\"U8\"", "[1e0]", "[0,1]"), 1, "is not an integer");
  expect_rejected(entry("a", "\"U8\"", "[18446744073709551615]", "[0,1]"), 1,
                  "does not fit in int64");
}

TEST_F(MalformedTest, UnknownDtype) {
  for (const char* d : {"\"F7\"", "\"f32\"", "\"\"", "\"F32 \"", "\"C64\""}) {
    expect_rejected(entry("a", d, "[1]", "[0,4]"), 4, "tensor \"a\": unknown dtype");
  }
}

TEST_F(MalformedTest, NegativeShapeDimension) {
  expect_rejected(entry("a", "\"U8\"", "[-1]", "[0,0]"), 0, "negative shape dimension -1");
  expect_rejected(entry("a", "\"U8\"", "[2,-3]", "[0,0]"), 0, "negative shape dimension -3");
}

TEST_F(MalformedTest, DataOffsetsNotTwoNonNegativeIntegers) {
  const std::string rule = "\"data_offsets\" must be an array of 2 non-negative integers";
  for (const char* off : {"[0]", "[0,1,2]", "[]", "[-1,0]", "[0,-1]", "[0.0,1]", "[0,1.5]",
                          "[0,1e30]", "[0,18446744073709551616]", "\"0,1\"", "{\"0\":1}",
                          "[null,1]", "[0,\"1\"]"}) {
    expect_rejected(entry("a", "\"U8\"", "[1]", off), 1, rule);
  }
}

TEST_F(MalformedTest, DataOffsetsEndBeforeBegin) {
  expect_rejected(entry("a", "\"U8\"", "[0]", "[4,0]"), 4, "data_offsets [4, 0] has end < begin");
}

TEST_F(MalformedTest, DataOffsetsOutOfRange) {
  const std::string rule = "out of range of the 4-byte data buffer";
  expect_rejected(entry("a", "\"U8\"", "[8]", "[0,8]"), 4, rule);
  expect_rejected(entry("a", "\"U8\"", "[0]", "[5,5]"), 4, rule);
  expect_rejected(entry("a", "\"U8\"", "[1]", "[18446744073709551614,18446744073709551615]"), 4,
                  rule);
}

TEST_F(MalformedTest, OffsetsWithGapsDoNotTile) {
  const std::string rule = "data_offsets do not tile the buffer: gap of";
  // Hole in the middle.
  expect_rejected(entry("a", "\"U8\"", "[4]", "[0,4]") + "," + entry("b", "\"U8\"", "[4]", "[8,12]"),
                  12, rule + " 4 bytes at offset 4 before tensor \"b\"");
  // Hole at the start.
  expect_rejected(entry("a", "\"U8\"", "[4]", "[4,8]"), 8, rule + " 4 bytes at offset 0");
  // A zero-size tensor does not close a hole.
  expect_rejected(entry("a", "\"U8\"", "[0]", "[2,2]") + "," + entry("b", "\"U8\"", "[2]", "[2,4]"),
                  4, rule);
}

TEST_F(MalformedTest, OffsetsThatOverlapDoNotTile) {
  const std::string rule = "data_offsets do not tile the buffer: tensor";
  expect_rejected(entry("a", "\"F32\"", "[2]", "[0,8]") + "," + entry("b", "\"F32\"", "[2]", "[4,12]"),
                  12, rule + " \"b\" at [4, 12] overlaps the previous tensor, which ends at 8");
  // Two tensors on the same bytes.
  expect_rejected(entry("a", "\"U8\"", "[4]", "[0,4]") + "," + entry("b", "\"U8\"", "[4]", "[0,4]"),
                  4, "overlaps the previous tensor");
  // A zero-size tensor inside another one.
  expect_rejected(entry("a", "\"U8\"", "[4]", "[0,4]") + "," + entry("b", "\"U8\"", "[0]", "[2,2]"),
                  4, "overlaps the previous tensor");
}

TEST_F(MalformedTest, ByteLengthDiffersFromShape) {
  expect_rejected(entry("a", "\"F32\"", "[3]", "[0,8]"), 8,
                  "tensor \"a\": byte length 8 != numel * bits / 8 = 12 for F32");
  expect_rejected(entry("a", "\"BF16\"", "[]", "[0,4]"), 4, "byte length 4 != numel * bits / 8 = 2");
  expect_rejected(entry("a", "\"F4\"", "[4]", "[0,4]"), 4, "byte length 4 != numel * bits / 8 = 2");
  expect_rejected(entry("a", "\"F6_E3M2\"", "[4]", "[0,4]"), 4, "!= numel * bits / 8 = 3");
  expect_rejected(entry("a", "\"U8\"", "[0]", "[0,1]"), 1, "byte length 1 != numel * bits / 8 = 0");
}

TEST_F(MalformedTest, ByteLengthOverflowIsAnError) {
  // numel * 32 overflows 64 bits, numel itself fits.
  expect_rejected(entry("a", "\"F32\"", "[1152921504606846976]", "[0,0]"), 0,
                  "byte length overflows");
  expect_rejected(entry("a", "\"F32\"", "[4611686018427387904,4]", "[0,0]"), 0, "overflows");
  // numel overflows (2^40 * 2^40).
  expect_rejected(entry("a", "\"U8\"", "[1099511627776,1099511627776]", "[0,0]"), 0,
                  "element count overflows");
  // Product that wraps to exactly 0 mod 2^64 must not be mistaken for an empty tensor.
  expect_rejected(entry("a", "\"U8\"", "[4294967296,4294967296]", "[0,0]"), 0, "overflows");
}

TEST_F(MalformedTest, SubByteElementsMustFillWholeBytes) {
  const std::string rule = "is not a whole number of bytes";
  expect_rejected(entry("a", "\"F4\"", "[3]", "[0,2]"), 2, rule);
  expect_rejected(entry("a", "\"F4\"", "[]", "[0,1]"), 1, rule);
  expect_rejected(entry("a", "\"F6_E2M3\"", "[2]", "[0,2]"), 2, rule);
  expect_rejected(entry("a", "\"F6_E3M2\"", "[3,1]", "[0,3]"), 3, rule);
}

TEST_F(MalformedTest, TrailingBytesAfterLastTensor) {
  expect_rejected("", 4, "trailing bytes: 4 bytes after the last tensor");
  expect_rejected(entry("a", "\"U8\"", "[4]", "[0,4]"), 6, "trailing bytes: 2 bytes after");
  expect_rejected(entry("a", "\"U8\"", "[0]", "[0,0]"), 1, "trailing bytes: 1 bytes after");
}

TEST_F(MalformedTest, MetadataNotAnObjectOfStrings) {
  const std::string rule = "__metadata__ is not an object of strings";
  for (const char* md : {"5", "null", "[]", "\"x\"", "{\"k\":1}", "{\"k\":null}", "{\"k\":{}}",
                         "{\"k\":[\"v\"]}", "{\"a\":\"1\",\"k\":true}"}) {
    expect_rejected(std::string("\"__metadata__\":") + md, 0, rule);
  }
}

// ---- the fuzz corpus and regressions ----

std::vector<std::filesystem::path> files_in(const std::string& rel) {
  std::vector<std::filesystem::path> out;
  const std::filesystem::path dir = std::filesystem::path(MXQ_SOURCE_DIR) / rel;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(FuzzCorpus, SeedFilesAreWhatTheirNamesSay) {
  int valid = 0, invalid = 0;
  for (const auto& p : files_in("tests/fuzz/corpus/safetensors")) {
    const std::string name = p.filename().string();
    auto f = SafetensorsFile::open(p.string());
    if (name.rfind("valid_", 0) == 0) {
      EXPECT_TRUE(f.ok()) << name << ": " << f.status().message();
      ++valid;
    } else {
      ASSERT_EQ(name.rfind("invalid_", 0), 0u) << name << " must start with valid_ or invalid_";
      ASSERT_FALSE(f.ok()) << name;
      EXPECT_EQ(f.status().code(), StatusCode::kDataLoss) << name;
      ++invalid;
    }
  }
  EXPECT_GE(valid, 4);
  EXPECT_GE(invalid, 4);
}

TEST(FuzzRegressions, EveryRecordedInputIsACleanError) {
  const auto files = files_in("tests/fuzz/regressions");
  EXPECT_FALSE(files.empty());
  for (const auto& p : files) {
    if (p.extension() == ".md") continue;
    auto f = SafetensorsFile::open(p.string());
    ASSERT_FALSE(f.ok()) << p;
    EXPECT_EQ(f.status().code(), StatusCode::kDataLoss) << p;
    EXPECT_EQ(f.status().message().rfind(p.string() + ": ", 0), 0u) << f.status().message();
  }
}

}  // namespace
}  // namespace mxq::io
