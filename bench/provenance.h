// What a C++ benchmark's JSON records about what was measured (issue 18), as bench/provenance.py
// does for the Python ones: the commit (MXQ_COMMIT when set, since a tree copied to another host
// may carry stale git metadata; else the commit this binary was built from, "-dirty" with
// uncommitted changes) and the sha256 of the running binary (sha256sum of /proc/<pid>/exe).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "mxq/version.h"

namespace mxq::bench {

inline std::string commit() {
  if (const char* c = std::getenv("MXQ_COMMIT"); c != nullptr && *c != '\0') return c;
  const std::string built = mxq::build_commit();
  return built.empty() ? "unknown (built outside a git checkout)" : built;
}

// "unavailable: <why>" when sha256sum cannot be run.
inline std::string binary_sha256() {
  // /proc/<pid>/exe of this process (the shell's /proc/self would be sha256sum itself).
  const std::string cmd = "sha256sum /proc/" + std::to_string(getpid()) + "/exe 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "unavailable: cannot run sha256sum";
  char buf[160] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, p);
  const int rc = pclose(p);
  std::string s(buf, n);
  const size_t sp = s.find(' ');
  if (rc != 0 || sp != 64) return "unavailable: sha256sum failed";
  return s.substr(0, 64);
}

}  // namespace mxq::bench
