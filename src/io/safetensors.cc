// safetensors reader: dtype table, checked tensor sizes, and the validating parser behind
// SafetensorsFile::open (mmap) and SafetensorsFile::parse (caller-owned bytes).
//
// Validation order follows the file: length prefix, header bytes (UTF-8, '{', JSON, duplicate
// keys), each entry (types, dtype, shape, offsets, byte length), then the buffer as a whole
// (offsets tile [0, size) exactly; nothing after the last tensor). Every error is kDataLoss and
// reads "<file>: <rule>".
#include "mxq/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <tuple>

#include "io/internal.h"

namespace mxq::io {

using internal::data_loss;
using internal::quote;
using nlohmann::json;

namespace {

struct DTypeRow {
  StDType dtype;
  const char* name;
  int bits;
};
constexpr std::array<DTypeRow, 19> kDTypes{{
    {StDType::kBool, "BOOL", 8},       {StDType::kU8, "U8", 8},
    {StDType::kI8, "I8", 8},           {StDType::kU16, "U16", 16},
    {StDType::kI16, "I16", 16},        {StDType::kU32, "U32", 32},
    {StDType::kI32, "I32", 32},        {StDType::kU64, "U64", 64},
    {StDType::kI64, "I64", 64},        {StDType::kF16, "F16", 16},
    {StDType::kBF16, "BF16", 16},      {StDType::kF32, "F32", 32},
    {StDType::kF64, "F64", 64},        {StDType::kF8_E4M3, "F8_E4M3", 8},
    {StDType::kF8_E5M2, "F8_E5M2", 8}, {StDType::kF8_E8M0, "F8_E8M0", 8},
    {StDType::kF6_E2M3, "F6_E2M3", 6}, {StDType::kF6_E3M2, "F6_E3M2", 6},
    {StDType::kF4, "F4", 4},
}};

const DTypeRow* row(StDType d) {
  for (const auto& r : kDTypes) {
    if (r.dtype == d) return &r;
  }
  return nullptr;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON integer that is >= 0 and fits in int64 (shape dims) / uint64 (offsets).
bool as_nonneg_u64(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = uint64_t(v.get<int64_t>());
    return true;
  }
  return false;
}

struct Parsed {
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  size_t data_start = 0;
  uint64_t data_size = 0;
};

// One header entry: `{"dtype": D, "shape": [..], "data_offsets": [b, e]}`.
StatusOr<TensorInfo> parse_entry(const std::string& file, const std::string& name, const json& v,
                                 uint64_t data_size) {
  const std::string t = "tensor " + quote(name) + ": ";
  if (!v.is_object()) return data_loss(file, t + "entry is not a JSON object");
  TensorInfo info;
  info.name = name;

  auto dt = v.find("dtype");
  if (dt == v.end()) return data_loss(file, t + "missing \"dtype\"");
  if (!dt->is_string()) return data_loss(file, t + "\"dtype\" is not a string");
  auto parsed_dt = parse_st_dtype(dt->get_ref<const std::string&>());
  if (!parsed_dt.ok()) return data_loss(file, t + parsed_dt.status().message());
  info.dtype = parsed_dt.value();

  auto sh = v.find("shape");
  if (sh == v.end()) return data_loss(file, t + "missing \"shape\"");
  if (!sh->is_array()) return data_loss(file, t + "\"shape\" is not an array");
  info.shape.reserve(sh->size());
  for (const auto& d : *sh) {
    if (!d.is_number_integer()) {
      return data_loss(file, t + "shape dimension " + d.dump() + " is not an integer");
    }
    if (d.is_number_unsigned()) {
      if (d.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
        return data_loss(file, t + "shape dimension " + d.dump() + " does not fit in int64");
      }
      info.shape.push_back(int64_t(d.get<uint64_t>()));
    } else {
      if (d.get<int64_t>() < 0) {
        return data_loss(file, t + "negative shape dimension " + d.dump());
      }
      info.shape.push_back(d.get<int64_t>());
    }
  }

  auto off = v.find("data_offsets");
  if (off == v.end()) return data_loss(file, t + "missing \"data_offsets\"");
  if (!off->is_array() || off->size() != 2 || !as_nonneg_u64((*off)[0], info.begin) ||
      !as_nonneg_u64((*off)[1], info.end)) {
    return data_loss(file, t + "\"data_offsets\" must be an array of 2 non-negative integers, got " +
                               off->dump().substr(0, 100));
  }
  const std::string range = "[" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "]";
  if (info.end < info.begin) {
    return data_loss(file, t + "data_offsets " + range + " has end < begin");
  }
  if (info.end > data_size) {
    return data_loss(file, t + "data_offsets " + range + " out of range of the " +
                               std::to_string(data_size) + "-byte data buffer");
  }
  auto want = tensor_bytes(info.dtype, info.shape);
  if (!want.ok()) return data_loss(file, t + want.status().message());
  if (info.nbytes() != want.value()) {
    return data_loss(file, t + "byte length " + std::to_string(info.nbytes()) +
                               " != numel * bits / 8 = " + std::to_string(want.value()) + " for " +
                               st_dtype_name(info.dtype));
  }
  return info;
}

StatusOr<Parsed> parse_image(const uint8_t* p, size_t size, const std::string& file) {
  if (size < 8) {
    return data_loss(file, "file is " + std::to_string(size) +
                               " bytes, shorter than the 8-byte header length prefix");
  }
  const uint64_t n = read_le64(p);
  if (n > internal::kMaxHeaderBytes) {
    return data_loss(file, "header length " + std::to_string(n) + " exceeds the limit of " +
                               std::to_string(internal::kMaxHeaderBytes) + " bytes");
  }
  // n <= 1e8 so n + 8 cannot overflow; compare without forming it anyway.
  if (n > size - 8) {
    return data_loss(file, "header length " + std::to_string(n) +
                               " + 8 extends beyond the end of the file (" + std::to_string(size) +
                               " bytes)");
  }
  const std::string_view header(reinterpret_cast<const char*>(p + 8), size_t(n));
  if (header.empty() || header.front() != '{') {
    return data_loss(file, "header does not start with '{'");
  }
  auto doc = internal::parse_json_strict(header, file, "header");
  if (!doc.ok()) return doc.status();
  const json& root = doc.value();
  if (!root.is_object()) return data_loss(file, "header is not a JSON object");

  Parsed out;
  out.data_start = 8 + size_t(n);
  out.data_size = size - out.data_start;
  out.tensors.reserve(root.size());
  for (const auto& [key, v] : root.items()) {
    if (key == "__metadata__") {
      if (!v.is_object()) return data_loss(file, "__metadata__ is not an object of strings");
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string()) {
          return data_loss(file, "__metadata__ is not an object of strings: value of " + quote(mk) +
                                     " is " + mv.type_name());
        }
        out.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    auto info = parse_entry(file, key, v, out.data_size);
    if (!info.ok()) return info.status();
    out.tensors.push_back(std::move(info).value());
  }

  // Tiling: sorted by (begin, end), each tensor starts where the previous one ended. Zero-size
  // tensors sort before a non-empty one at the same offset, so they never look like overlaps.
  std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t pos = 0;
  for (const auto& t : out.tensors) {
    if (t.begin > pos) {
      return data_loss(file, "data_offsets do not tile the buffer: gap of " +
                                 std::to_string(t.begin - pos) + " bytes at offset " +
                                 std::to_string(pos) + " before tensor " + quote(t.name));
    }
    if (t.begin < pos) {
      return data_loss(file, "data_offsets do not tile the buffer: tensor " + quote(t.name) +
                                 " at [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                                 "] overlaps the previous tensor, which ends at " +
                                 std::to_string(pos));
    }
    pos = t.end;
  }
  if (pos != out.data_size) {
    return data_loss(file, "trailing bytes: " + std::to_string(out.data_size - pos) +
                               " bytes after the last tensor (data buffer is " +
                               std::to_string(out.data_size) + " bytes, tensors end at " +
                               std::to_string(pos) + ")");
  }
  return out;
}

}  // namespace

const char* st_dtype_name(StDType d) {
  const DTypeRow* r = row(d);
  return r ? r->name : "?";
}

StatusOr<StDType> parse_st_dtype(std::string_view s) {
  for (const auto& r : kDTypes) {
    if (s == r.name) return r.dtype;
  }
  return invalid_argument("unknown dtype " + quote(s));
}

int st_dtype_bits(StDType d) {
  const DTypeRow* r = row(d);
  return r ? r->bits : 0;
}

int64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d != 0 && n > uint64_t(std::numeric_limits<int64_t>::max()) / uint64_t(d))) {
      return -1;
    }
    n *= uint64_t(d);
  }
  return int64_t(n);
}

StatusOr<uint64_t> tensor_bytes(StDType dtype, std::span<const int64_t> shape) {
  const int bits = st_dtype_bits(dtype);
  if (bits == 0) return invalid_argument("invalid dtype value " + std::to_string(int(dtype)));
  // numel must fit in int64 (TensorInfo::numel) and numel * bits in uint64.
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) return invalid_argument("negative shape dimension " + std::to_string(d));
    uint64_t next;
    if (__builtin_mul_overflow(numel, uint64_t(d), &next) ||
        next > uint64_t(std::numeric_limits<int64_t>::max())) {
      return invalid_argument("element count overflows: the shape's product does not fit in int64");
    }
    numel = next;
  }
  uint64_t total_bits;
  if (__builtin_mul_overflow(numel, uint64_t(bits), &total_bits)) {
    return invalid_argument("byte length overflows: numel " + std::to_string(numel) + " * " +
                            std::to_string(bits) + " bits does not fit in 64 bits");
  }
  if (total_bits % 8 != 0) {
    return invalid_argument("numel " + std::to_string(numel) + " * " + std::to_string(bits) +
                            " bits of " + st_dtype_name(dtype) + " is not a whole number of bytes");
  }
  return total_bits / 8;
}

// ---- SafetensorsFile ----

SafetensorsFile::~SafetensorsFile() {
  internal::unguard_mapping(guard_);
  if (map_ != nullptr) munmap(map_, map_size_);
  if (fd_ >= 0) ::close(fd_);
}

namespace {
int64_t ns(const struct timespec& t) { return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }
}  // namespace

Status SafetensorsFile::check_unchanged() const {
  if (map_ == nullptr) return Status::Ok();
  const int64_t fault = internal::mapping_fault_offset(guard_);
  struct stat st {};
  const bool have_stat = fd_ >= 0 && ::fstat(fd_, &st) == 0;
  const std::string now =
      have_stat ? " (now " + std::to_string(uint64_t(st.st_size)) + " bytes, " +
                      std::to_string(map_size_) + " when opened)"
                : std::string();
  if (fault >= 0) {
    std::string what = "byte " + std::to_string(fault) + " of the file";
    const uint64_t start = uint64_t(buffer_ - static_cast<const uint8_t*>(map_));
    if (uint64_t(fault) >= start) {
      const uint64_t d = uint64_t(fault) - start;
      for (const TensorInfo& t : tensors_)
        if (d >= t.begin && d < t.end) what = "tensor " + quote(t.name);
    }
    return data_loss(path_, "changed while being read: truncated by another process after it "
                            "was opened" + now + "; " + what +
                            " could not be read (it read as zeros)");
  }
  if (!have_stat) return Status::Ok();
  if (uint64_t(st.st_size) != map_size_)
    return data_loss(path_, "changed while being read: its size changed after it was opened" +
                                now + " (another process is writing it?)");
  if (ns(st.st_mtim) != mtime_ns_)
    return data_loss(path_, "changed while being read: another process wrote to it after it "
                            "was opened (modification time changed), so the bytes read may mix "
                            "old and new contents");
  return Status::Ok();
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::parse(std::span<const uint8_t> bytes,
                                                                  std::string name_for_errors) {
  auto parsed = parse_image(bytes.data(), bytes.size(), name_for_errors);
  if (!parsed.ok()) return parsed.status();
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = std::move(name_for_errors);
  Parsed& p = parsed.value();
  f->tensors_ = std::move(p.tensors);
  f->metadata_ = std::move(p.metadata);
  f->buffer_ = bytes.data() + p.data_start;
  f->buffer_size_ = p.data_size;
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_.emplace(f->tensors_[i].name, i);
  return f;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return internal::open_error(path, errno);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return internal::open_error(path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(StatusCode::kInvalidArgument, path + ": not a regular file");
  }
  const auto size = uint64_t(st.st_size);
  if (size > std::numeric_limits<size_t>::max()) {
    ::close(fd);
    return data_loss(path, "file too large to map");
  }
  if (size < 8) {  // mmap cannot map an empty file; let the parser word the error.
    ::close(fd);
    const uint8_t none[8] = {};
    return parse_image(none, size_t(size), path).status();
  }
  void* map = mmap(nullptr, size_t(size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  if (map == MAP_FAILED) {
    ::close(fd);
    return data_loss(path, std::string("mmap failed: ") + std::strerror(map_err));
  }
  // Guarded before the first read (the parser's): a file truncated from here on gives zeros and
  // a recorded fault instead of SIGBUS.
  const int guard = internal::guard_mapping(map, size_t(size));
  auto f = parse({static_cast<const uint8_t*>(map), size_t(size)}, path);
  if (!f.ok()) {
    const bool truncated = internal::mapping_fault_offset(guard) >= 0;
    internal::unguard_mapping(guard);
    munmap(map, size_t(size));
    ::close(fd);
    if (truncated)
      return data_loss(path, "changed while being read: truncated by another process while "
                             "its header was read (" + std::to_string(size) +
                             " bytes when opened)");
    return f.status();
  }
  SafetensorsFile& file = *f.value();  // owns the mapping and fd from here on
  file.map_ = map;
  file.map_size_ = size_t(size);
  file.fd_ = fd;
  file.guard_ = guard;
  file.mtime_ns_ = ns(st.st_mtim);
  // Truncated or rewritten since the fstat above: the header may have been parsed from zeros.
  MXQ_RETURN_IF_ERROR(file.check_unchanged());
  ::madvise(map, size_t(size), MADV_SEQUENTIAL);  // streaming readers: read ahead, drop behind
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> SafetensorsFile::data(const TensorInfo& t) const {
  if (t.end < t.begin || t.end > buffer_size_) return {};
  return {buffer_ + t.begin, size_t(t.nbytes())};
}

}  // namespace mxq::io

namespace mxq::io {

void SafetensorsFile::release(std::span<const uint8_t> bytes) const {
  if (map_ == nullptr || bytes.empty()) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t base = uintptr_t(map_), end = base + map_size_;
  const uintptr_t b = uintptr_t(bytes.data()), e = b + bytes.size();
  if (b < base || e > end) return;
  // Whole pages inside the span only: a page shared with a neighbour may still be in use.
  const uintptr_t lo = (b + page - 1) & ~(page - 1), hi = e & ~(page - 1);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace mxq::io
