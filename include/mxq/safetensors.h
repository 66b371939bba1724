// safetensors: a hardened reader (mmap, every rule of docs/formats.md enforced, errors that name
// the file and the rule), sharded checkpoints, and a streaming, atomic writer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mxq/status.h"

namespace mxq::io {

// Every dtype the safetensors format defines, plus the sub-byte / MX ones.
enum class StDType : uint8_t {
  kBool, kU8, kI8, kU16, kI16, kU32, kI32, kU64, kI64,
  kF16, kBF16, kF32, kF64,
  kF8_E4M3, kF8_E5M2, kF8_E8M0, kF6_E2M3, kF6_E3M2, kF4,
};
const char* st_dtype_name(StDType d);              // "BF16", "F8_E8M0", ...
StatusOr<StDType> parse_st_dtype(std::string_view s);
int st_dtype_bits(StDType d);                      // 1 byte = 8; F4 = 4; F6_* = 6

struct TensorInfo {
  std::string name;
  StDType dtype = StDType::kU8;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data buffer, end exclusive
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// One safetensors file, memory-mapped read-only (or parsed from caller-owned bytes).
class SafetensorsFile {
 public:
  // Opens and validates `path`. The error names the file and the violated rule.
  static StatusOr<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  // Validates an in-memory image (used by the fuzzer and tests); `bytes` must outlive the object.
  static StatusOr<std::unique_ptr<SafetensorsFile>> parse(std::span<const uint8_t> bytes,
                                                          std::string name_for_errors);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // ordered by offset
  const TensorInfo* find(std::string_view name) const;                 // nullptr if absent
  std::span<const uint8_t> data(const TensorInfo& t) const;
  // Tells the kernel that `bytes` (a part of data(t) of this file) are done with: their pages
  // leave this process's resident set (they stay in the page cache; a later read maps them
  // back). Streaming pipelines call it after each chunk so peak memory stays near one chunk,
  // not the file. No-op for parse() and for spans outside the mapping.
  void release(std::span<const uint8_t> bytes) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Whether the file is still the one that was opened and every read of data() saw its bytes:
  // a kDataLoss error naming the file when another process truncated it after open() (a read of
  // the lost part got zeros instead of the SIGBUS that would have killed the process: the error
  // names the tensor), changed its size, or wrote to it (modification time; a write within the
  // file system's timestamp granularity of the open, same size, is not seen). A file deleted
  // after open() is fine: the mapping keeps its bytes. Pipelines call it after reading and
  // before committing any output. Always Ok for parse().
  Status check_unchanged() const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
  const uint8_t* buffer_ = nullptr;  // start of the data buffer
  uint64_t buffer_size_ = 0;         // bytes in the data buffer
  void* map_ = nullptr;              // mmap base (nullptr when parsed from bytes)
  size_t map_size_ = 0;
  int fd_ = -1;                      // kept open for check_unchanged()
  int guard_ = -1;                   // SIGBUS guard slot of the mapping (-1: none)
  int64_t mtime_ns_ = 0;              // modification time at open()
};

// A checkpoint: a single .safetensors file, or a directory with config.json and either one
// model.safetensors or shards listed by model.safetensors.index.json. As in transformers,
// model.safetensors wins when both exist. The index must match the shards exactly (every listed
// tensor in its named shard, every shard tensor listed, no tensor in two shards); shard names
// that leave the directory are rejected. config.json / hf_quant_config.json are read only for
// directories (a lone file does not adopt a sibling config).
class Checkpoint {
 public:
  static StatusOr<Checkpoint> open(const std::string& path);

  const std::string& root() const { return root_; }   // the directory (or the file's directory)
  bool is_directory() const { return is_dir_; }
  // config.json text ("" when there is none); hf_quant_config.json likewise.
  const std::string& config_json() const { return config_json_; }
  const std::string& hf_quant_config_json() const { return hf_quant_config_json_; }

  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
    std::span<const uint8_t> bytes() const { return file->data(*info); }
  };
  const Entry* find(std::string_view name) const;       // nullptr if absent
  const std::vector<std::string>& names() const { return names_; }  // sorted
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // SafetensorsFile::check_unchanged() of every file: the first error.
  Status check_unchanged() const;

 private:
  std::string root_;
  bool is_dir_ = false;
  std::string config_json_, hf_quant_config_json_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry, std::less<>> entries_;
  std::vector<std::string> names_;
};

// Streaming writer: the header (all names, dtypes, shapes) is fixed up front, then tensor data
// is appended in declaration order, so a model larger than RAM can be written tensor by tensor.
// Output goes to "<path>.tmp.<pid>" and is renamed onto `path` only by finish(); destroying an
// unfinished writer deletes the temporary file.
class SafetensorsWriter {
 public:
  struct Decl {
    std::string name;
    StDType dtype;
    std::vector<int64_t> shape;
  };
  static StatusOr<std::unique_ptr<SafetensorsWriter>> create(
      const std::string& path, std::vector<Decl> tensors,
      const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();

  // Appends the next tensor's bytes (may be called several times per tensor, in pieces; one call
  // may not run past the end of the current tensor). Zero-size tensors need no call. A rejected
  // call writes nothing.
  Status write(std::span<const uint8_t> bytes);
  // Checks every declared byte was written, fsyncs, renames into place. On any failure neither
  // the temporary nor a file at `path` is left, and the writer refuses further calls.
  Status finish();
  // Name of the tensor the next write() belongs to ("" when all are complete).
  std::string_view current() const;

 private:
  SafetensorsWriter() = default;
  std::string path_, tmp_path_;
  std::vector<Decl> decls_;
  std::vector<uint64_t> sizes_;
  size_t cur_ = 0;
  uint64_t written_in_cur_ = 0;
  int fd_ = -1;
  bool finished_ = false;
  bool failed_ = false;  // an I/O error or a failed finish(): every later call fails
};

// Bytes of a tensor of `dtype` and `shape` (checked multiplication); errors on overflow or a
// sub-byte element count that does not fill whole bytes.
StatusOr<uint64_t> tensor_bytes(StDType dtype, std::span<const int64_t> shape);

}  // namespace mxq::io
