#include "output_dir.h"

#include <unistd.h>

#include <fstream>

namespace mxq::io {

namespace fs = std::filesystem;

StatusOr<StagedDir> StagedDir::create(const std::string& target, bool overwrite) {
  std::error_code ec;
  fs::path t = fs::absolute(fs::path(target), ec).lexically_normal();
  if (ec) return invalid_argument("output path '" + target + "': " + ec.message());
  if (t.filename().empty()) t = t.parent_path();  // "out/model/" names "out/model"
  if (fs::exists(t, ec) && !overwrite && !(fs::is_directory(t) && fs::is_empty(t)))
    return invalid_argument("output '" + target +
                            "' already exists and is not empty (choose another path or "
                            "pass --overwrite)");
  if (!t.has_parent_path() || t == t.root_path())
    return invalid_argument("output '" + target + "': not a directory that can be written");
  // Missing parents are created (like mkdir -p); only the output itself is staged and renamed,
  // so an interrupted run leaves at most empty parent directories, never a partial model.
  if (!fs::is_directory(t.parent_path(), ec)) {
    ec.clear();
    fs::create_directories(t.parent_path(), ec);
    if (ec || !fs::is_directory(t.parent_path()))
      return invalid_argument("output '" + target + "': cannot create parent directory '" +
                              t.parent_path().string() + "'" +
                              (ec ? ": " + ec.message() : std::string()));
  }
  StagedDir d;
  d.target_ = t;
  d.overwrite_ = overwrite;
  d.tmp_ = t.parent_path() / (t.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(d.tmp_, ec);
  if (!fs::create_directory(d.tmp_, ec) || ec)
    return invalid_argument("cannot create '" + d.tmp_.string() + "': " + ec.message());
  return d;
}

StagedDir::StagedDir(StagedDir&& o) noexcept
    : target_(std::move(o.target_)), tmp_(std::move(o.tmp_)), overwrite_(o.overwrite_),
      done_(o.done_) {
  o.done_ = true;
}

StagedDir::~StagedDir() {
  if (done_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

Status StagedDir::commit() {
  std::error_code ec;
  if (fs::exists(target_, ec)) {
    // Move the old directory aside first so the swap leaves either the old or the new model.
    const fs::path old = target_.string() + ".old-" + std::to_string(::getpid());
    fs::rename(target_, old, ec);
    if (ec) return invalid_argument("cannot replace '" + target_.string() + "': " + ec.message());
    fs::rename(tmp_, target_, ec);
    if (ec) {
      fs::rename(old, target_);
      return invalid_argument("cannot rename '" + tmp_.string() + "': " + ec.message());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp_, target_, ec);
    if (ec) return invalid_argument("cannot rename '" + tmp_.string() + "' to '" +
                                    target_.string() + "': " + ec.message());
  }
  done_ = true;
  return Status::Ok();
}

Status write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) return invalid_argument("cannot write '" + path.string() + "'");
  return Status::Ok();
}

}  // namespace mxq::io
