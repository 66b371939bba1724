#include "mxq/status.h"

namespace mxq {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kDataLoss: return "data loss";
    case StatusCode::kUnimplemented: return "unimplemented";
    case StatusCode::kInternal: return "internal error";
    case StatusCode::kResourceExhausted: return "resource exhausted";
  }
  return "unknown";
}

Status resource_exhausted(const std::string& where, const std::string& what, size_t bytes,
                          const std::string& detail) {
  std::string m = "out of " + where + " memory allocating " + std::to_string(bytes) +
                  " bytes for " + what;
  if (!detail.empty()) m += ": " + detail;
  return {StatusCode::kResourceExhausted, std::move(m)};
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(status_code_name(code_)) + ": " + message_;
}

}  // namespace mxq
