// Atomic output directories: missing parent directories are created (like mkdir -p), everything is
// written under "<target>.tmp-<pid>" and renamed onto <target> by commit() (an existing target is
// swapped with one renameat2(RENAME_EXCHANGE), so it is the old or the new output at every
// instant); a StagedDir destroyed without commit() removes what it wrote. create() first removes
// the temp directories of dead writers of the same target (and renames a dead writer's
// "<target>.old-<pid>" back when the target is missing: see output_dir.cc).
#pragma once

#include <filesystem>
#include <string>

#include "mxq/status.h"

namespace mxq::io {

class StagedDir {
 public:
  static StatusOr<StagedDir> create(const std::string& target, bool overwrite);
  StagedDir(StagedDir&& o) noexcept;
  StagedDir& operator=(StagedDir&&) = delete;
  ~StagedDir();

  const std::filesystem::path& path() const { return tmp_; }  // write here
  Status commit();                                             // rename onto the target

 private:
  StagedDir() = default;
  std::filesystem::path target_, tmp_;
  bool overwrite_ = false, done_ = false;
};

// Writes `text` to `path` (inside a staged directory, so no temp-name dance is needed).
Status write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace mxq::io
