// Helpers shared by the safetensors reader, writer and checkpoint loader (not public API).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mxq/status.h"

namespace mxq::io::internal {

// Largest header the reader accepts (docs FORMATS.md, "safetensors").
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// JSON nesting limit for headers and index files: valid ones nest 3 deep; this only bounds the
// work an adversarial file can cause.
inline constexpr int kMaxJsonDepth = 64;

// "<file>: <rule>" with code kDataLoss: every malformed-content error goes through here.
Status data_loss(const std::string& file, const std::string& rule);

// Offset of the first byte that is not part of well-formed UTF-8 (overlong forms, surrogates and
// code points above U+10FFFF are ill-formed), or npos when `s` is valid.
size_t find_invalid_utf8(std::string_view s);

// `s` as a JSON string literal, for error messages; long names are cut to keep messages short.
std::string quote(std::string_view s);

// Parses `text` as strict JSON: valid UTF-8, no comments, no duplicate keys at any level,
// nesting at most kMaxJsonDepth. `what` names the text in errors ("header", "index").
StatusOr<nlohmann::json> parse_json_strict(std::string_view text, const std::string& file,
                                           const char* what);

// Reads a whole (small) file; kNotFound when it does not exist.
StatusOr<std::string> read_text_file(const std::string& path);

// Status for a failed open()/stat() of `path` with `err` (errno).
Status open_error(const std::string& path, int err);

// The SIGBUS guard of the reader's mappings (map_guard.cc): a read of a page that the file no
// longer backs (truncated after mapping) gets zeros instead of killing the process, and the
// offset of the first such read is recorded. guard_mapping returns a slot (-1: none free, the
// mapping is not guarded); unguard_mapping before munmap.
int guard_mapping(const void* base, size_t size);
void unguard_mapping(int slot);
int64_t mapping_fault_offset(int slot);  // -1: no read of the mapping has faulted

}  // namespace mxq::io::internal
