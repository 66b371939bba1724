// DLPack / buffer-protocol arrays seen by the mxq Python core: device, dtype and shape checks
// with errors that name the argument, what it is and what was expected.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::py {

namespace nb = nanobind;

enum class DevKind : uint8_t { kCPU, kCUDA };
inline const char* dev_kind_name(DevKind d) { return d == DevKind::kCPU ? "cpu" : "cuda"; }

// Any array nanobind accepts (numpy, torch, cupy, jax, ... through DLPack or the buffer
// protocol), read-only or not.
using Array = nb::ndarray<nb::ro>;
using MutArray = nb::ndarray<>;

template <typename A>
DevKind device_of(const A& a, const char* what) {
  const int t = a.device_type();
  if (t == nb::device::cpu::value || t == nb::device::cuda_host::value) return DevKind::kCPU;
  if (t == nb::device::cuda::value || t == nb::device::cuda_managed::value) return DevKind::kCUDA;
  throw Error(invalid_argument(std::string(what) + " is on DLPack device type " +
                               std::to_string(t) + "; mxq takes CPU and CUDA arrays"));
}

template <typename A>
std::string shape_str(const A& a) {
  std::string s = "[";
  for (size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + "]";
}

template <typename A>
std::string dtype_str(const A& a) {
  const auto d = a.dtype();
  const char* kind = "?";
  switch (nb::dlpack::dtype_code(d.code)) {
    case nb::dlpack::dtype_code::Int: kind = "int"; break;
    case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
    case nb::dlpack::dtype_code::Float: kind = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
    case nb::dlpack::dtype_code::Bool: kind = "bool"; break;
    default: kind = "float8/6/4-"; break;
  }
  return std::string(kind) + std::to_string(d.bits);
}

template <typename A>
bool is_contiguous(const A& a) {
  int64_t expect = 1;
  for (size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) != 1 && a.stride(i) != expect) return false;
    expect *= a.shape(i);
  }
  return true;
}

template <typename A>
int64_t numel(const A& a) {
  int64_t n = 1;
  for (size_t i = 0; i < a.ndim(); ++i) n *= a.shape(i);
  return n;
}

// The dense dtype of an array: float32 / bfloat16 / float16, or a 16-bit integer array
// reinterpreted as `as` ("bf16" / "f16": numpy has no bfloat16 DLPack export, so bfloat16
// numpy arrays travel as uint16 views).
template <typename A>
DType dense_dtype(const A& a, const char* what, const std::optional<std::string>& as) {
  const auto d = a.dtype();
  const auto code = nb::dlpack::dtype_code(d.code);
  if (d.lanes == 1) {
    if (code == nb::dlpack::dtype_code::Float && d.bits == 32 && !as) return DType::kF32;
    if (code == nb::dlpack::dtype_code::Float && d.bits == 16 && !as) return DType::kF16;
    if (code == nb::dlpack::dtype_code::Bfloat && d.bits == 16 && !as) return DType::kBF16;
    if ((code == nb::dlpack::dtype_code::UInt || code == nb::dlpack::dtype_code::Int) &&
        d.bits == 16 && as) {
      if (*as == "bf16") return DType::kBF16;
      if (*as == "f16") return DType::kF16;
    }
  }
  throw Error(invalid_argument(
      std::string(what) + " has dtype " + dtype_str(a) + (as ? " (as " + *as + ")" : "") +
      "; expected float32, bfloat16 or float16 (or a 16-bit integer view with dtype='bf16'/'f16')"));
}

template <typename A>
void check_u8(const A& a, const char* what) {
  const auto d = a.dtype();
  if (!(d.lanes == 1 && d.bits == 8 &&
        (nb::dlpack::dtype_code(d.code) == nb::dlpack::dtype_code::UInt ||
         nb::dlpack::dtype_code(d.code) == nb::dlpack::dtype_code::Int)))
    throw Error(invalid_argument(std::string(what) + " has dtype " + dtype_str(a) +
                                 "; expected uint8 (packed MX bytes / E8M0 scale codes)"));
}

template <typename A>
void check_contiguous(const A& a, const char* what) {
  if (!is_contiguous(a))
    throw Error(invalid_argument(std::string(what) + " (shape " + shape_str(a) +
                                 ") is not C-contiguous; pass a contiguous array"));
}

// rows x cols view of a contiguous array whose last dimension is `cols` (leading dims fold
// into rows); a 1-D array is one row.
template <typename A>
std::pair<int64_t, int64_t> rows_cols(const A& a, const char* what) {
  if (a.ndim() == 0) throw Error(invalid_argument(std::string(what) + " is a scalar; expected an array"));
  const int64_t cols = a.shape(a.ndim() - 1);
  return {cols == 0 ? 0 : numel(a) / cols, cols};
}

}  // namespace mxq::py
