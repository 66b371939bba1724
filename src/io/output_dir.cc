#include "output_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>  // renameat2
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fstream>

namespace mxq::io {

namespace fs = std::filesystem;

namespace {

// "<target>.tmp-<pid>" / "<target>.old-<pid>" left by a process that was killed mid-write (its
// pid no longer runs): removed by the next write of the same target. A live pid's are kept.
// A dead writer's "<target>.old-<pid>" is the complete previous output, moved aside by the
// fallback commit (file systems without RENAME_EXCHANGE): when the writer died before the new
// output took its place (no <target>), it is renamed back instead of removed.
void remove_stale_siblings(const fs::path& t) {
  std::error_code ec;
  const std::string base = t.filename().string();
  for (const char* tag : {".tmp-", ".old-"}) {
    const std::string prefix = base + tag;
    for (fs::directory_iterator it(t.parent_path(), ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string digits = name.substr(prefix.size());
      if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9)
        continue;
      const pid_t pid = pid_t(std::stol(digits));
      if (pid == ::getpid() || (::kill(pid, 0) == 0 || errno == EPERM)) continue;  // alive
      std::error_code rm;
      if (tag[1] == 'o' && !fs::exists(fs::symlink_status(t, rm))) {
        fs::rename(it->path(), t, rm);
        if (!rm) continue;
      }
      fs::remove_all(it->path(), rm);
    }
  }
}

}  // namespace

StatusOr<StagedDir> StagedDir::create(const std::string& target, bool overwrite) {
  std::error_code ec;
  fs::path t = fs::absolute(fs::path(target), ec).lexically_normal();
  if (ec) return invalid_argument("output path '" + target + "': " + ec.message());
  if (t.filename().empty()) t = t.parent_path();  // "out/model/" names "out/model"
  // First, so that a restored old output counts as existing for the check below.
  if (t.has_parent_path() && t != t.root_path() && fs::is_directory(t.parent_path(), ec))
    remove_stale_siblings(t);
  ec.clear();
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
  if (fs::exists(fs::symlink_status(target_, ec))) {
    // One atomic swap: <target> is the old output until the exchange and the new one after it,
    // never absent. The old output is then at the temp name and removed; a writer killed before
    // that leaves it as its "<target>.tmp-<pid>", which the next write removes.
    if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) == 0) {
      done_ = true;
      fs::remove_all(tmp_, ec);
      return Status::Ok();
    }
    const int err = errno;
    if (err != EINVAL && err != ENOSYS && err != ENOTSUP)
      return invalid_argument("cannot replace '" + target_.string() + "' with '" +
                              tmp_.string() + "': " + std::strerror(err));
    // No RENAME_EXCHANGE here: move the old directory aside first so the swap leaves either the
    // old or the new model (a writer killed between the two renames leaves the old one as
    // "<target>.old-<pid>", which the next write renames back).
    const fs::path old = target_.string() + ".old-" + std::to_string(::getpid());
    fs::rename(target_, old, ec);
    if (ec) return invalid_argument("cannot replace '" + target_.string() + "': " + ec.message());
    fs::rename(tmp_, target_, ec);
    if (ec) {
      std::error_code back;
      fs::rename(old, target_, back);
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
