// safetensors writer -> reader round trips (every dtype, scalars, zero-size tensors, metadata,
// arbitrary UTF-8 names), the writer's layout and error paths, and Checkpoint loading of single
// files, directories and sharded directories with an index.
#include "mxq/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "io_test_util.h"

namespace mxq::io {
namespace {

using testing::image;
using testing::read_file;
using testing::write_file;
using testing::write_text;

constexpr StDType kAll[] = {
    StDType::kBool,    StDType::kU8,      StDType::kI8,      StDType::kU16,     StDType::kI16,
    StDType::kU32,     StDType::kI32,     StDType::kU64,     StDType::kI64,     StDType::kF16,
    StDType::kBF16,    StDType::kF32,     StDType::kF64,     StDType::kF8_E4M3, StDType::kF8_E5M2,
    StDType::kF8_E8M0, StDType::kF6_E2M3, StDType::kF6_E3M2, StDType::kF4,
};

// Deterministic, tensor-specific contents.
std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 12345u;
  for (auto& b : v) {
    x = x * 1103515245u + 12345u;
    b = uint8_t(x >> 16);
  }
  return v;
}

struct Tensor {
  SafetensorsWriter::Decl decl;
  std::vector<uint8_t> bytes;
};

Tensor make(std::string name, StDType dt, std::vector<int64_t> shape, uint32_t seed) {
  const uint64_t n = tensor_bytes(dt, shape).value();
  return {{std::move(name), dt, std::move(shape)}, pattern(size_t(n), seed)};
}

Status write_all(const std::string& path, const std::vector<Tensor>& ts,
                 const std::map<std::string, std::string>& md = {}) {
  std::vector<SafetensorsWriter::Decl> decls;
  for (const auto& t : ts) decls.push_back(t.decl);
  auto w = SafetensorsWriter::create(path, decls, md);
  if (!w.ok()) return w.status();
  for (const auto& t : ts) MXQ_RETURN_IF_ERROR(w.value()->write(t.bytes));
  return w.value()->finish();
}

void expect_contents(const SafetensorsFile& f, const std::vector<Tensor>& ts) {
  ASSERT_EQ(f.tensors().size(), ts.size());
  for (const auto& t : ts) {
    const TensorInfo* info = f.find(t.decl.name);
    ASSERT_NE(info, nullptr) << t.decl.name;
    EXPECT_EQ(info->name, t.decl.name);
    EXPECT_EQ(info->dtype, t.decl.dtype) << t.decl.name;
    EXPECT_EQ(info->shape, t.decl.shape) << t.decl.name;
    const auto d = f.data(*info);
    EXPECT_EQ(std::vector<uint8_t>(d.begin(), d.end()), t.bytes) << t.decl.name;
  }
}

using SafetensorsTest = testing::TempDirTest;
using WriterTest = testing::TempDirTest;
using CheckpointTest = testing::TempDirTest;

TEST(DType, NamesParseBackAndBits) {
  const std::map<std::string, int> bits = {
      {"BOOL", 8}, {"U8", 8}, {"I8", 8}, {"U16", 16}, {"I16", 16}, {"U32", 32}, {"I32", 32},
      {"U64", 64}, {"I64", 64}, {"F16", 16}, {"BF16", 16}, {"F32", 32}, {"F64", 64},
      {"F8_E4M3", 8}, {"F8_E5M2", 8}, {"F8_E8M0", 8}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"F4", 4}};
  std::set<std::string> seen;
  for (StDType d : kAll) {
    const std::string name = st_dtype_name(d);
    seen.insert(name);
    ASSERT_TRUE(bits.contains(name)) << name;
    EXPECT_EQ(st_dtype_bits(d), bits.at(name)) << name;
    auto back = parse_st_dtype(name);
    ASSERT_TRUE(back.ok()) << name;
    EXPECT_EQ(back.value(), d);
  }
  EXPECT_EQ(seen.size(), bits.size());
  for (const char* bad : {"f32", "F8", "F4_E2M1", "", "FLOAT"}) {
    auto r = parse_st_dtype(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("unknown dtype"), std::string::npos);
  }
}

TEST(DType, TensorBytesIsCheckedAndExact) {
  auto bytes = [](StDType d, std::vector<int64_t> s) { return tensor_bytes(d, s); };
  EXPECT_EQ(bytes(StDType::kF32, {2, 3}).value(), 24u);
  EXPECT_EQ(bytes(StDType::kF64, {}).value(), 8u);  // 0-d scalar: one element
  EXPECT_EQ(bytes(StDType::kBF16, {0, 5}).value(), 0u);
  EXPECT_EQ(bytes(StDType::kF4, {4}).value(), 2u);
  EXPECT_EQ(bytes(StDType::kF6_E2M3, {4}).value(), 3u);
  EXPECT_EQ(bytes(StDType::kF6_E3M2, {2, 32}).value(), 48u);
  EXPECT_FALSE(bytes(StDType::kF4, {3}).ok());
  EXPECT_FALSE(bytes(StDType::kF6_E2M3, {2}).ok());
  EXPECT_FALSE(bytes(StDType::kF4, {}).ok());  // one 4-bit element is half a byte
  EXPECT_FALSE(bytes(StDType::kU8, {-1}).ok());
  EXPECT_FALSE(bytes(StDType::kF32, {int64_t(1) << 62, 4}).ok());           // bits overflow
  EXPECT_FALSE(bytes(StDType::kU8, {int64_t(1) << 40, int64_t(1) << 40}).ok());  // numel
  EXPECT_EQ(bytes(StDType::kU8, {int64_t(1) << 40, 0, int64_t(1) << 40}).value(), 0u);
  TensorInfo t;
  t.shape = {3, 0x7fffffffffffffff};
  EXPECT_EQ(t.numel(), -1);
  t.shape = {3, 5};
  EXPECT_EQ(t.numel(), 15);
}

TEST_F(SafetensorsTest, RoundTripsEveryDtype) {
  std::vector<Tensor> ts;
  uint32_t seed = 1;
  for (StDType d : kAll) ts.push_back(make(std::string("t.") + st_dtype_name(d), d, {2, 4}, seed++));
  ASSERT_TRUE(write_all(path("all.safetensors"), ts).ok());
  auto f = SafetensorsFile::open(path("all.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  expect_contents(*f.value(), ts);
  EXPECT_EQ(f.value()->path(), path("all.safetensors"));
  EXPECT_EQ(f.value()->find("t.F4")->nbytes(), 4u);
  EXPECT_EQ(f.value()->find("t.F6_E2M3")->nbytes(), 6u);
  // tensors() is ordered by offset, which is declaration order for our writer.
  uint64_t pos = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorInfo& t = f.value()->tensors()[i];
    EXPECT_EQ(t.name, ts[i].decl.name);
    EXPECT_EQ(t.begin, pos);
    pos = t.end;
  }
  EXPECT_EQ(f.value()->find("absent"), nullptr);
}

TEST_F(SafetensorsTest, RoundTripsScalarsZeroSizeAndMetadata) {
  const std::vector<Tensor> ts = {
      make("scalar", StDType::kF32, {}, 1),        make("empty", StDType::kBF16, {0}, 2),
      make("empty3", StDType::kF4, {3, 0, 2}, 3),  make("ones", StDType::kU8, {1, 1, 1, 1}, 4),
      make("odd", StDType::kF16, {17, 33}, 5),     make("e8m0", StDType::kF8_E8M0, {7, 1}, 6),
      make("empty_last", StDType::kI64, {5, 0}, 7),
  };
  const std::map<std::string, std::string> md = {
      {"format", "pt"}, {"ünïcödé", "値"}, {"empty", ""}};
  ASSERT_TRUE(write_all(path("m.safetensors"), ts, md).ok());
  auto f = SafetensorsFile::open(path("m.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  expect_contents(*f.value(), ts);
  EXPECT_EQ(f.value()->metadata(), md);
  const TensorInfo* s = f.value()->find("scalar");
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->numel(), 1);
  EXPECT_EQ(f.value()->data(*s).size(), 4u);
  EXPECT_EQ(f.value()->find("empty3")->numel(), 0);
  EXPECT_EQ(f.value()->data(*f.value()->find("empty_last")).size(), 0u);
}

TEST_F(SafetensorsTest, RoundTripsArbitraryUtf8Names) {
  const std::vector<std::string> names = {
      "", "ü/日本語.weight", "quote\"back\\slash", "tab\tnew\nline", std::string("nul\0in", 6),
      "\x01\x1f", "🙂", "__metadata__x", "model.layers.0.mlp.experts.gate_up_proj_blocks"};
  std::vector<Tensor> ts;
  uint32_t seed = 10;
  for (const auto& n : names) ts.push_back(make(n, StDType::kU8, {3}, seed++));
  ASSERT_TRUE(write_all(path("u.safetensors"), ts).ok());
  auto f = SafetensorsFile::open(path("u.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  expect_contents(*f.value(), ts);
}

TEST_F(SafetensorsTest, EmptyFilesAreValid) {
  // Writer with nothing declared: "{}" padded to 8 bytes, empty buffer.
  auto w = SafetensorsWriter::create(path("e.safetensors"), {});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w.value()->current(), "");
  ASSERT_TRUE(w.value()->finish().ok());
  EXPECT_EQ(read_file(path("e.safetensors")), image("{}      "));
  for (const auto& bytes : {image("{}"), image("{}      "), image("{ }"), image("{\"z\":{\"dtype\":"
                                                                          "\"F32\",\"shape\":[0],"
                                                                          "\"data_offsets\":[0,0]}}")}) {
    auto f = SafetensorsFile::parse(bytes, "mem");
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    EXPECT_TRUE(f.value()->metadata().empty());
  }
  auto f = SafetensorsFile::open(path("e.safetensors"));
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f.value()->tensors().empty());
}

TEST_F(SafetensorsTest, ReaderDoesNotAssumeAlignmentAndIgnoresUnknownEntryFields) {
  // Header of odd length 71, so the buffer starts at file offset 79.
  const std::string h =
      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},"a":{"dtype":"F32","shape":[],)"
      R"("data_offsets":[0,4]}})";
  const std::string h2 =
      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6],"x":[1]},"a":{"dtype":"F32",)"
      R"("shape":[],"data_offsets":[0,4]}})";
  for (const std::string& header : {h, h2}) {
    const auto bytes = image(header, 6);
    auto f = SafetensorsFile::parse(bytes, "mem");
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    ASSERT_EQ(f.value()->tensors().size(), 2u);
    EXPECT_EQ(f.value()->tensors()[0].name, "a");  // ordered by offset, not header order
    const auto b = f.value()->data(*f.value()->find("b"));
    ASSERT_EQ(b.size(), 2u);
    EXPECT_EQ(b.data(), bytes.data() + 8 + header.size() + 4);
    EXPECT_EQ(b[0], uint8_t(4 * 7 + 1));
  }
}

TEST_F(SafetensorsTest, OpenMissingFileIsNotFound) {
  auto f = SafetensorsFile::open(path("nope.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find(path("nope.safetensors")), std::string::npos);
  auto d = SafetensorsFile::open(dir_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("not a regular file"), std::string::npos);
}

// ---- writer ----

TEST_F(WriterTest, HeaderIsPaddedOrderedAndTilesInDeclarationOrder) {
  const std::vector<Tensor> ts = {make("z", StDType::kF32, {3}, 1), make("a", StDType::kF4, {6}, 2),
                                  make("m", StDType::kBF16, {2, 2}, 3)};
  ASSERT_TRUE(write_all(path("h.safetensors"), ts, {{"k", "v"}}).ok());
  const auto raw = read_file(path("h.safetensors"));
  ASSERT_GE(raw.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | raw[size_t(i)];
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(raw.size(), 8 + n + 12 + 3 + 8);
  const std::string header(raw.begin() + 8, raw.begin() + 8 + long(n));
  EXPECT_EQ(header.front(), '{');
  const size_t close = header.find_last_of('}');
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos);  // space padding only
  EXPECT_LT(header.size() - close - 1, 8u);
  const auto j = nlohmann::ordered_json::parse(header);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "z", "a", "m"}));
  EXPECT_EQ(j["z"]["data_offsets"], nlohmann::json::parse("[0,12]"));
  EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json::parse("[12,15]"));
  EXPECT_EQ(j["m"]["data_offsets"], nlohmann::json::parse("[15,23]"));
  EXPECT_EQ(j["a"]["dtype"], "F4");
  EXPECT_EQ(j["m"]["shape"], nlohmann::json::parse("[2,2]"));
}

TEST_F(WriterTest, OutputIsByteIdenticalAcrossRuns) {
  std::vector<Tensor> ts;
  uint32_t seed = 3;
  for (StDType d : kAll) ts.push_back(make(std::string("w.") + st_dtype_name(d), d, {4, 8}, seed++));
  const std::map<std::string, std::string> md = {{"b", "2"}, {"a", "1"}};
  ASSERT_TRUE(write_all(path("one.safetensors"), ts, md).ok());
  ASSERT_TRUE(write_all(path("two.safetensors"), ts, md).ok());
  const auto one = read_file(path("one.safetensors"));
  EXPECT_GT(one.size(), 100u);
  EXPECT_EQ(one, read_file(path("two.safetensors")));
}

TEST_F(WriterTest, WritesInPiecesAndReportsCurrentTensor) {
  const std::vector<Tensor> ts = {make("z0", StDType::kU8, {0}, 1), make("a", StDType::kU8, {10}, 2),
                                  make("z1", StDType::kF32, {0, 3}, 3),
                                  make("b", StDType::kU16, {3}, 4), make("z2", StDType::kU8, {0}, 5)};
  std::vector<SafetensorsWriter::Decl> decls;
  for (const auto& t : ts) decls.push_back(t.decl);
  auto w = SafetensorsWriter::create(path("p.safetensors"), decls);
  ASSERT_TRUE(w.ok());
  auto& wr = *w.value();
  EXPECT_EQ(wr.current(), "a");  // leading zero-size tensors need no write
  const auto& a = ts[1].bytes;
  ASSERT_TRUE(wr.write(std::span(a).first(3)).ok());
  ASSERT_TRUE(wr.write({}).ok());
  EXPECT_EQ(wr.current(), "a");
  ASSERT_TRUE(wr.write(std::span(a).subspan(3)).ok());
  EXPECT_EQ(wr.current(), "b");
  for (uint8_t byte : ts[3].bytes) ASSERT_TRUE(wr.write(std::span(&byte, 1)).ok());
  EXPECT_EQ(wr.current(), "");
  ASSERT_TRUE(wr.finish().ok());
  auto f = SafetensorsFile::open(path("p.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  expect_contents(*f.value(), ts);
}

TEST_F(WriterTest, WritingMoreThanDeclaredIsAnError) {
  auto w = SafetensorsWriter::create(path("x.safetensors"), {{"a", StDType::kF32, {2}},
                                                             {"b", StDType::kU8, {1}}});
  ASSERT_TRUE(w.ok());
  const std::vector<uint8_t> nine(9, 1);
  Status s = w.value()->write(nine);  // 'a' is 8 bytes
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("more than declared"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("\"a\""), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(path("x.safetensors")), std::string::npos);
  // The rejected write wrote nothing; the writer can still complete correctly.
  ASSERT_TRUE(w.value()->write(std::span(nine).first(8)).ok());
  ASSERT_TRUE(w.value()->write(std::span(nine).first(1)).ok());
  s = w.value()->write(std::span(nine).first(1));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("more than declared"), std::string::npos) << s.message();
  ASSERT_TRUE(w.value()->finish().ok());
  auto f = SafetensorsFile::open(path("x.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f.value()->tensors().size(), 2u);
  EXPECT_FALSE(w.value()->write(std::span(nine).first(1)).ok());  // after finish
  EXPECT_FALSE(w.value()->finish().ok());                          // twice
}

TEST_F(WriterTest, FinishWithMissingBytesLeavesNoFiles) {
  auto w = SafetensorsWriter::create(path("x.safetensors"), {{"a", StDType::kF32, {2}},
                                                             {"b", StDType::kU8, {1}}});
  ASSERT_TRUE(w.ok());
  const std::vector<uint8_t> five(5, 1);
  ASSERT_TRUE(w.value()->write(five).ok());
  // While writing, only the temporary exists.
  const std::string tmp = "x.safetensors.tmp." + std::to_string(getpid());
  EXPECT_EQ(listing(), std::vector<std::string>{tmp});
  Status s = w.value()->finish();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing bytes"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("5 of 8 bytes"), std::string::npos) << s.message();
  EXPECT_TRUE(listing().empty());
  EXPECT_FALSE(w.value()->finish().ok());
  EXPECT_FALSE(w.value()->write(five).ok());
  w = Status(StatusCode::kInternal, "drop the writer");
  EXPECT_TRUE(listing().empty());
}

TEST_F(WriterTest, UnfinishedWriterRemovesItsTemporaryAndKeepsTheOldFile) {
  write_text(path("x.safetensors"), "old contents");
  {
    auto w = SafetensorsWriter::create(path("x.safetensors"), {{"a", StDType::kU8, {4}}});
    ASSERT_TRUE(w.ok());
    const std::vector<uint8_t> four(4, 9);
    ASSERT_TRUE(w.value()->write(four).ok());
    EXPECT_EQ(listing().size(), 2u);
  }  // destroyed without finish()
  EXPECT_EQ(listing(), std::vector<std::string>{"x.safetensors"});
  const std::string old = "old contents";
  EXPECT_EQ(read_file(path("x.safetensors")), std::vector<uint8_t>(old.begin(), old.end()));
}

TEST_F(WriterTest, FinishReplacesAnExistingFile) {
  write_text(path("x.safetensors"), "old contents");
  const std::vector<Tensor> ts = {make("a", StDType::kI32, {2}, 1)};
  ASSERT_TRUE(write_all(path("x.safetensors"), ts).ok());
  EXPECT_EQ(listing(), std::vector<std::string>{"x.safetensors"});
  auto f = SafetensorsFile::open(path("x.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  expect_contents(*f.value(), ts);
}

TEST_F(WriterTest, CreateRejectsBadDeclarations) {
  using D = SafetensorsWriter::Decl;
  const std::vector<std::pair<std::vector<D>, std::string>> cases = {
      {{{"a", StDType::kU8, {1}}, {"a", StDType::kU8, {2}}}, "declared twice"},
      {{{"__metadata__", StDType::kU8, {1}}}, "reserved"},
      {{{"a", StDType::kU8, {-1}}}, "negative shape dimension"},
      {{{"a", StDType::kF4, {3}}}, "whole number of bytes"},
      {{{"a", StDType::kF32, {int64_t(1) << 62, 4}}}, "overflows"},
      {{{"bad\xff", StDType::kU8, {1}}}, "not valid UTF-8"},
      {{{"a", StDType(200), {1}}}, "invalid dtype"},
  };
  for (const auto& [decls, rule] : cases) {
    auto w = SafetensorsWriter::create(path("x.safetensors"), decls);
    ASSERT_FALSE(w.ok()) << rule;
    EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(w.status().message().find(rule), std::string::npos) << w.status().message();
    EXPECT_NE(w.status().message().find(path("x.safetensors")), std::string::npos);
  }
  auto m = SafetensorsWriter::create(path("x.safetensors"), {}, {{"k", "\xc0\xaf"}});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("not valid UTF-8"), std::string::npos);
  EXPECT_TRUE(listing().empty());
  auto missing_dir = SafetensorsWriter::create(path("no/such/dir.safetensors"), {});
  ASSERT_FALSE(missing_dir.ok());
  EXPECT_EQ(missing_dir.status().code(), StatusCode::kNotFound);
}

// ---- checkpoints ----

void write_shard(const std::string& path, const std::vector<std::string>& names, uint32_t seed) {
  std::vector<Tensor> ts;
  for (const auto& n : names) ts.push_back(make(n, StDType::kBF16, {2, 3}, seed++));
  ASSERT_TRUE(write_all(path, ts).ok()) << path;
}

std::string index_json(const std::map<std::string, std::string>& wm) {
  nlohmann::json j = {{"metadata", {{"total_size", 36}}}, {"weight_map", wm}};
  return j.dump(2);
}

TEST_F(CheckpointTest, SingleFile) {
  write_shard(path("only.safetensors"), {"w", "b"}, 1);
  write_text(path("config.json"), "{\"sibling\": true}");
  auto c = Checkpoint::open(path("only.safetensors"));
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_FALSE(c.value().is_directory());
  EXPECT_EQ(c.value().root(), dir_.string());
  EXPECT_EQ(c.value().config_json(), "");  // a lone file does not adopt a sibling config
  EXPECT_EQ(c.value().names(), (std::vector<std::string>{"b", "w"}));
  ASSERT_NE(c.value().find("w"), nullptr);
  EXPECT_EQ(c.value().find("w")->bytes().size(), 12u);
  EXPECT_EQ(c.value().find("x"), nullptr);
}

TEST_F(CheckpointTest, DirectoryWithModelSafetensorsAndConfigs) {
  write_shard(path("model.safetensors"), {"a", "c", "b"}, 1);
  write_text(path("config.json"), "{\"model_type\": \"x\"}");
  write_text(path("hf_quant_config.json"), "{\"quantization\": {\"quant_algo\": \"MXFP8\"}}");
  auto c = Checkpoint::open(dir_.string());
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_TRUE(c.value().is_directory());
  EXPECT_EQ(c.value().root(), dir_.string());
  EXPECT_EQ(c.value().config_json(), "{\"model_type\": \"x\"}");
  EXPECT_EQ(c.value().hf_quant_config_json(), "{\"quantization\": {\"quant_algo\": \"MXFP8\"}}");
  EXPECT_EQ(c.value().names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.value().files().size(), 1u);
}

TEST_F(CheckpointTest, ShardedWithIndex) {
  write_shard(path("model-00001-of-00002.safetensors"), {"l0.w", "l0.b", "embed"}, 1);
  write_shard(path("model-00002-of-00002.safetensors"), {"l1.w", "l1.b"}, 7);
  write_text(path("config.json"), "{}");
  write_text(path("model.safetensors.index.json"),
             index_json({{"l0.w", "model-00001-of-00002.safetensors"},
                         {"l0.b", "model-00001-of-00002.safetensors"},
                         {"embed", "model-00001-of-00002.safetensors"},
                         {"l1.w", "model-00002-of-00002.safetensors"},
                         {"l1.b", "./model-00002-of-00002.safetensors"}}));
  auto opened = Checkpoint::open(dir_.string());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  const Checkpoint c = std::move(opened).value();  // entries must survive the move
  EXPECT_EQ(c.names(), (std::vector<std::string>{"embed", "l0.b", "l0.w", "l1.b", "l1.w"}));
  EXPECT_EQ(c.files().size(), 2u);
  EXPECT_EQ(c.config_json(), "{}");
  EXPECT_EQ(c.hf_quant_config_json(), "");
  const auto* e = c.find("l1.b");
  ASSERT_NE(e, nullptr);
  EXPECT_NE(e->file->path().find("model-00002-of-00002"), std::string::npos);
  const auto bytes = e->bytes();
  EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.end()), pattern(12, 8));
  EXPECT_EQ(c.find("l0.w")->info->dtype, StDType::kBF16);
}

struct BadIndexCase {
  const char* what;
  std::string index;
  std::string rule;
  StatusCode code = StatusCode::kDataLoss;
};

TEST_F(CheckpointTest, InconsistentOrMalformedIndexIsRejected) {
  const std::string s1 = "s1.safetensors", s2 = "s2.safetensors";
  const std::vector<BadIndexCase> cases = {
      {"listed tensor missing from its shard",
       index_json({{"a", s1}, {"b", s1}, {"c", s2}, {"d", s2}, {"ghost", s1}}),
       "weight_map lists tensor \"ghost\" in shard \"s1.safetensors\", which does not contain it"},
      {"shard tensor not listed", index_json({{"a", s1}, {"b", s1}, {"c", s2}}),
       "tensor \"d\" of shard \"s2.safetensors\" is not listed in weight_map"},
      {"tensor listed under the wrong shard", index_json({{"a", s2}, {"b", s1}, {"c", s2}, {"d", s2}}),
       "(it is in \"s1.safetensors\")"},
      {"missing shard", index_json({{"a", s1}, {"b", s1}, {"c", s2}, {"d", "s3.safetensors"}}),
       "s3.safetensors", StatusCode::kNotFound},
      {"shard outside the directory", index_json({{"a", "../s1.safetensors"}}),
       "not a file inside the checkpoint directory"},
      {"absolute shard path", index_json({{"a", "/etc/passwd"}}),
       "not a file inside the checkpoint directory"},
      {"not JSON", "{\"weight_map\": {", "index is not valid JSON"},
      {"duplicate key", R"({"weight_map": {"a": "s1.safetensors", "a": "s1.safetensors"}})",
       "duplicate key \"a\""},
      {"no weight_map", R"({"metadata": {}})", "no \"weight_map\""},
      {"weight_map not an object", R"({"weight_map": []})", "\"weight_map\" is not an object"},
      {"shard not a string", R"({"weight_map": {"a": 1}})", "is not a string"},
      {"index not an object", "[]", "index is not a JSON object"},
  };
  write_shard(path(s1), {"a", "b"}, 1);
  write_shard(path(s2), {"c", "d"}, 5);
  for (const auto& c : cases) {
    write_text(path("model.safetensors.index.json"), c.index);
    auto r = Checkpoint::open(dir_.string());
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.status().code(), c.code) << c.what << ": " << r.status().message();
    EXPECT_NE(r.status().message().find(c.rule), std::string::npos)
        << c.what << ": " << r.status().message();
    EXPECT_NE(r.status().message().find(path("model.safetensors.index.json")), std::string::npos)
        << r.status().message();
  }
}

TEST_F(CheckpointTest, DuplicateTensorAcrossShardsIsRejected) {
  write_shard(path("s1.safetensors"), {"a", "shared"}, 1);
  write_shard(path("s2.safetensors"), {"shared", "c"}, 5);
  write_text(path("model.safetensors.index.json"),
             index_json({{"a", "s1.safetensors"}, {"shared", "s1.safetensors"},
                         {"c", "s2.safetensors"}}));
  auto r = Checkpoint::open(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("duplicate tensor \"shared\" across shards"),
            std::string::npos)
      << r.status().message();
}

TEST_F(CheckpointTest, MalformedShardErrorNamesShardAndRule) {
  write_shard(path("s1.safetensors"), {"a"}, 1);
  write_file(path("s2.safetensors"), image("{}", 3));
  write_text(path("model.safetensors.index.json"),
             index_json({{"a", "s1.safetensors"}, {"b", "s2.safetensors"}}));
  auto r = Checkpoint::open(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(path("s2.safetensors") + ": trailing bytes"),
            std::string::npos)
      << r.status().message();
}

TEST_F(CheckpointTest, MissingThingsAreNotFound) {
  auto none = Checkpoint::open(path("absent"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find(path("absent")), std::string::npos);
  write_text(path("config.json"), "{}");
  auto empty = Checkpoint::open(dir_.string());
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kNotFound);
  EXPECT_NE(empty.status().message().find("neither model.safetensors nor"), std::string::npos);
}

}  // namespace
}  // namespace mxq::io
