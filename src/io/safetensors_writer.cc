// Streaming, atomic safetensors writer. The header (ordered: __metadata__, then the tensors in
// declaration order, offsets tiling the buffer in that order) is written first, padded with
// spaces so the data buffer starts at a multiple of 8; data follows tensor by tensor into
// "<path>.tmp.<pid>", which finish() fsyncs and renames onto <path>.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "io/internal.h"
#include "mxq/safetensors.h"

namespace mxq::io {

using internal::quote;

namespace {

Status write_all(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return {StatusCode::kDataLoss, path + ": write failed: " + std::strerror(errno)};
    }
    p += w;
    n -= size_t(w);
  }
  return Status::Ok();
}

bool valid_utf8(std::string_view s) {
  return internal::find_invalid_utf8(s) == std::string_view::npos;
}

}  // namespace

StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::create(
    const std::string& path, std::vector<Decl> tensors,
    const std::map<std::string, std::string>& metadata) {
  auto bad = [&](const std::string& what) { return invalid_argument(path + ": " + what); };
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) {
      if (!valid_utf8(k) || !valid_utf8(v)) {
        return bad("metadata entry " + quote(k) + " is not valid UTF-8");
      }
      m[k] = v;
    }
  }
  std::set<std::string_view> names;
  std::vector<uint64_t> sizes;
  sizes.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& d : tensors) {
    const std::string t = "tensor " + quote(d.name) + ": ";
    if (!valid_utf8(d.name)) return bad(t + "name is not valid UTF-8");
    if (d.name == "__metadata__") return bad(t + "name is reserved for the metadata");
    if (!names.insert(d.name).second) return bad(t + "declared twice");
    if (st_dtype_bits(d.dtype) == 0) return bad(t + "invalid dtype");
    auto nb = tensor_bytes(d.dtype, d.shape);
    if (!nb.ok()) return bad(t + nb.status().message());
    if (__builtin_add_overflow(offset, nb.value(), &offset)) return bad(t + "total size overflows");
    sizes.push_back(nb.value());
    header[d.name] = {{"dtype", st_dtype_name(d.dtype)},
                      {"shape", d.shape},
                      {"data_offsets", {offset - nb.value(), offset}}};
  }
  std::string text = header.dump();  // all strings checked as UTF-8 above, so this cannot throw
  text.append((8 - text.size() % 8) % 8, ' ');
  if (text.size() > internal::kMaxHeaderBytes) {
    return bad("header of " + std::to_string(text.size()) + " bytes exceeds the limit of " +
               std::to_string(internal::kMaxHeaderBytes) + " bytes readers accept");
  }

  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  w->tmp_path_ = path + ".tmp." + std::to_string(::getpid());
  w->decls_ = std::move(tensors);
  w->sizes_ = std::move(sizes);
  w->fd_ = ::open(w->tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w->fd_ < 0) {
    const int err = errno;
    w->tmp_path_.clear();  // nothing to clean up
    return internal::open_error(path + ".tmp." + std::to_string(::getpid()), err);
  }
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  MXQ_RETURN_IF_ERROR(write_all(w->fd_, prefix, 8, w->tmp_path_));
  MXQ_RETURN_IF_ERROR(write_all(w->fd_, reinterpret_cast<const uint8_t*>(text.data()),
                                text.size(), w->tmp_path_));
  while (w->cur_ < w->sizes_.size() && w->sizes_[w->cur_] == 0) ++w->cur_;
  return w;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

std::string_view SafetensorsWriter::current() const {
  return cur_ < decls_.size() ? std::string_view(decls_[cur_].name) : std::string_view();
}

Status SafetensorsWriter::write(std::span<const uint8_t> bytes) {
  if (finished_) return invalid_argument(path_ + ": write() after finish()");
  if (failed_) return invalid_argument(path_ + ": write() after an earlier error");
  if (bytes.empty()) return Status::Ok();
  if (cur_ >= decls_.size()) {
    return invalid_argument(path_ + ": writing " + std::to_string(bytes.size()) +
                            " bytes more than declared: all " + std::to_string(decls_.size()) +
                            " tensors are complete");
  }
  const uint64_t left = sizes_[cur_] - written_in_cur_;
  if (bytes.size() > left) {
    return invalid_argument(path_ + ": tensor " + quote(decls_[cur_].name) + ": writing " +
                            std::to_string(bytes.size()) + " bytes more than declared: only " +
                            std::to_string(left) + " of its " + std::to_string(sizes_[cur_]) +
                            " bytes are left (one write() may not span two tensors)");
  }
  if (Status s = write_all(fd_, bytes.data(), bytes.size(), tmp_path_); !s.ok()) {
    failed_ = true;
    return s;
  }
  written_in_cur_ += bytes.size();
  while (cur_ < decls_.size() && written_in_cur_ == sizes_[cur_]) {
    ++cur_;
    written_in_cur_ = 0;
  }
  return Status::Ok();
}

Status SafetensorsWriter::finish() {
  if (finished_) return invalid_argument(path_ + ": finish() called twice");
  if (failed_) return invalid_argument(path_ + ": finish() after an earlier error");
  // Any failure from here on leaves neither the temporary nor the final file.
  auto abandon = [&](Status s) {
    failed_ = true;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(tmp_path_.c_str());
    return s;
  };
  if (cur_ < decls_.size()) {
    return abandon(invalid_argument(
        path_ + ": finish() with missing bytes: tensor " + quote(decls_[cur_].name) + " has " +
        std::to_string(written_in_cur_) + " of " + std::to_string(sizes_[cur_]) +
        " bytes written, " + std::to_string(decls_.size() - cur_ - 1) +
        " later tensors follow; nothing was written to " + path_));
  }
  auto io_error = [&](const std::string& what, int err) {
    return Status(StatusCode::kDataLoss, tmp_path_ + ": " + what + ": " + std::strerror(err));
  };
  if (::fsync(fd_) != 0) return abandon(io_error("fsync failed", errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return abandon(io_error("close failed", errno));
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    return abandon(io_error("rename onto " + path_ + " failed", err));
  }
  finished_ = true;
  // Make the rename itself durable (best effort: some filesystems refuse fsync on directories).
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

}  // namespace mxq::io
