// libFuzzer target: arbitrary bytes through SafetensorsFile::parse. Rejections must be clean
// kDataLoss errors naming the input; accepted images must satisfy every invariant the reader
// promises, and every tensor's bytes are read so ASan sees any out-of-bounds span.
#include <cstddef>
#include <cstdint>
#include <span>

#include "mxq/safetensors.h"

namespace {

[[noreturn]] void fail() { __builtin_trap(); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxq::io;
  auto parsed = SafetensorsFile::parse(std::span<const uint8_t>(data, size), "fuzz");
  if (!parsed.ok()) {
    const auto& s = parsed.status();
    if (s.code() != mxq::StatusCode::kDataLoss || s.message().rfind("fuzz: ", 0) != 0) fail();
    return 0;
  }
  const SafetensorsFile& f = *parsed.value();
  uint64_t pos = 0;
  unsigned sum = 0;
  for (const TensorInfo& t : f.tensors()) {
    // Ordered by offset and tiling the buffer.
    if (t.begin != pos || t.end < t.begin) fail();
    pos = t.end;
    if (f.find(t.name) != &t) fail();
    auto want = tensor_bytes(t.dtype, t.shape);
    if (!want.ok() || want.value() != t.nbytes() || t.numel() < 0) fail();
    const auto bytes = f.data(t);
    if (bytes.size() != t.nbytes()) fail();
    if (!bytes.empty() && (bytes.data() < data || bytes.data() + bytes.size() > data + size)) fail();
    for (uint8_t b : bytes) sum += b;
  }
  if (pos > size) fail();
  volatile unsigned sink = sum;
  (void)sink;
  return 0;
}
