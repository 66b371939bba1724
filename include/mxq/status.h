// Status: the error type of every mxq entry point that can fail on bad input.
//
// Library functions return Status (or StatusOr<T>); front ends (CLI, Python) turn a failed
// Status into an exit code or an exception. Messages name the offending thing (tensor, shape,
// option, expected value) so a user can act on them without reading mxq's source.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace mxq {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad shape, bad option, bad value from the caller
  kNotFound,         // missing file / tensor
  kDataLoss,         // malformed file contents
  kUnimplemented,    // valid request that this build or backend cannot serve
  kInternal,         // a bug in mxq
  kResourceExhausted,  // an allocation failed (host or device memory): names what and how much
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: K = 33 is not a multiple of 32 ..."
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string msg) {
  return {StatusCode::kInvalidArgument, std::move(msg)};
}
inline Status unimplemented(std::string msg) { return {StatusCode::kUnimplemented, std::move(msg)}; }
// "resource exhausted: out of device memory allocating 268435456 bytes for <what>: <detail>"
Status resource_exhausted(const std::string& where, const std::string& what, size_t bytes,
                          const std::string& detail = "");

// Exception thrown at API boundaries that cannot return a Status (constructors, operators,
// the *_or_throw convenience wrappers). Carries the Status it came from.
class Error : public std::runtime_error {
 public:
  explicit Error(Status s) : std::runtime_error(s.to_string()), status_(std::move(s)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

inline void throw_if_error(const Status& s) {
  if (!s.ok()) throw Error(s);
}

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T val) : v_(std::move(val)) {}  // NOLINT(google-explicit-constructor)
  StatusOr(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "StatusOr built from Ok");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  T& value() & {
    if (!ok()) throw Error(std::get<Status>(v_));
    return std::get<T>(v_);
  }
  const T& value() const& {
    if (!ok()) throw Error(std::get<Status>(v_));
    return std::get<T>(v_);
  }
  T&& value() && {
    if (!ok()) throw Error(std::get<Status>(v_));
    return std::get<T>(std::move(v_));
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mxq

// Early-return helper for functions returning Status or StatusOr.
#define MXQ_RETURN_IF_ERROR(expr)            \
  do {                                       \
    ::mxq::Status mxq_status_ = (expr);      \
    if (!mxq_status_.ok()) return mxq_status_; \
  } while (0)
