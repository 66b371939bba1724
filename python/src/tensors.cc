// mxq._core: whole-tensor quantize / dequantize (CPU, or CUDA with the CUDA part).
#include "core.h"

namespace mxq::py {
namespace {

using namespace nb::literals;

// ---- whole-tensor quantize / dequantize (CPU, or CUDA with the CUDA part) ----------------

QuantOptions quant_options(const std::string& fmt, const std::string& scale_rule,
                           const std::string& rounding, const std::string& saturation,
                           bool saturate_scale, bool pad_k, int threads) {
  QuantOptions o;
  o.elem = elem_of(fmt);
  o.scale_rule = get(parse_scale_rule(scale_rule));
  o.rounding = get(parse_rounding(rounding));
  o.saturation = get(parse_saturation(saturation));
  o.saturate_scale = saturate_scale;
  o.pad_k = pad_k;
  o.threads = threads;
  throw_if_error(validate(o));
  return o;
}

void quantize_into(const Array& x, const MutArray& packed, const MutArray& scales,
                   const std::string& fmt, const std::string& scale_rule,
                   const std::string& rounding, const std::string& saturation,
                   bool saturate_scale, bool pad_k, int threads,
                   const std::optional<std::string>& x_dtype, uintptr_t stream) {
  const QuantOptions o =
      quant_options(fmt, scale_rule, rounding, saturation, saturate_scale, pad_k, threads);
  const DevKind dev = device_of(x, "x");
  if (device_of(Array(packed), "packed") != dev || device_of(Array(scales), "scales") != dev)
    fail(std::string("x is a ") + dev_kind_name(dev) +
         " array; packed and scales must be on the same device");
  const DType dt = dense_dtype(x, "x", x_dtype);
  check_contiguous(x, "x");
  check_contiguous(packed, "packed");
  check_contiguous(scales, "scales");
  check_u8(packed, "packed");
  check_u8(scales, "scales");
  const auto [rows, k] = rows_cols(x, "x");
  const int64_t kq = get(quantized_k(k, pad_k));
  if (numel(packed) != rows * packed_bytes(o.elem, kq))
    fail("packed has shape " + shape_str(packed) + "; expected " + std::to_string(rows) +
         " rows x " + std::to_string(packed_bytes(o.elem, kq)) + " bytes (" + std::to_string(kq) +
         " " + elem_type_name(o.elem) + " elements)");
  if (numel(scales) != rows * (kq / kBlockSize))
    fail("scales has shape " + shape_str(scales) + "; expected " + std::to_string(rows) +
         " rows x " + std::to_string(kq / kBlockSize) + " scales");
  if (rows == 0) return;
  auto* p = static_cast<uint8_t*>(packed.data());
  auto* s = static_cast<uint8_t*>(scales.data());
  if (dev == DevKind::kCPU) {
    nb::gil_scoped_release nogil;
    throw_if_error(quantize(x.data(), dt, rows, k, o, p, s));
    return;
  }
#if defined(MXQ_PY_WITH_CUDA)
  const DeviceGuard guard(dev, x.device_id());
  // Asynchronous on `stream`: no allocation, no synchronisation (graph-capturable).
  throw_if_error(cuda::quantize(x.data(), dt, rows, k, o, p, s,
                                static_cast<cudaStream_t>(stream_ptr(stream))));
#else
  (void)stream;
  no_cuda("quantize of a CUDA array");
#endif
}

void dequantize_into(const Array& packed, const Array& scales, const MutArray& out,
                     const std::string& fmt, int threads, const std::optional<std::string>& out_dtype,
                     uintptr_t stream) {
  const ElemType t = elem_of(fmt);
  const DevKind dev = device_of(Array(out), "out");
  if (device_of(packed, "packed") != dev || device_of(scales, "scales") != dev)
    fail(std::string("out is a ") + dev_kind_name(dev) +
         " array; packed and scales must be on the same device");
  const DType dt = dense_dtype(out, "out", out_dtype);
  check_contiguous(out, "out");
  check_contiguous(packed, "packed");
  check_contiguous(scales, "scales");
  check_u8(packed, "packed");
  check_u8(scales, "scales");
  const auto [rows, k] = rows_cols(out, "out");
  if (k % kBlockSize != 0)
    fail("out's last dimension K = " + std::to_string(k) + " is not a multiple of 32");
  if (numel(packed) != rows * packed_bytes(t, k))
    fail("packed has shape " + shape_str(packed) + "; expected " + std::to_string(rows) +
         " rows x " + std::to_string(packed_bytes(t, k)) + " bytes for out " + shape_str(out));
  if (numel(scales) != rows * (k / kBlockSize))
    fail("scales has shape " + shape_str(scales) + "; expected " + std::to_string(rows) +
         " rows x " + std::to_string(k / kBlockSize) + " for out " + shape_str(out));
  if (rows == 0) return;
  const auto* p = static_cast<const uint8_t*>(packed.data());
  const auto* s = static_cast<const uint8_t*>(scales.data());
  if (dev == DevKind::kCPU) {
    nb::gil_scoped_release nogil;
    throw_if_error(dequantize(p, s, t, rows, k, dt, out.data(), threads));
    return;
  }
#if defined(MXQ_PY_WITH_CUDA)
  const DeviceGuard guard(dev, out.device_id());
  throw_if_error(cuda::dequantize(p, s, t, rows, k, dt, out.data(),
                                  static_cast<cudaStream_t>(stream_ptr(stream))));
#else
  (void)stream;
  no_cuda("dequantize of a CUDA array");
#endif
}

}  // namespace

void bind_tensors(nb::module_& m) {
  m.def("check_quant_options", [](const std::string& fmt, const std::string& scale_rule,
                                  const std::string& rounding, const std::string& saturation,
                                  bool saturate_scale) {
    return describe(quant_options(fmt, scale_rule, rounding, saturation, saturate_scale, false, 0));
  }, "fmt"_a, "scale_rule"_a, "rounding"_a, "saturation"_a, "saturate_scale"_a);
  // tensors
  m.def("quantize_into", &quantize_into, "x"_a, "packed"_a, "scales"_a, "fmt"_a, "scale_rule"_a,
        "rounding"_a, "saturation"_a, "saturate_scale"_a, "pad_k"_a, "threads"_a,
        "x_dtype"_a = nb::none(), "stream"_a = 0);
  m.def("dequantize_into", &dequantize_into, "packed"_a, "scales"_a, "out"_a, "fmt"_a,
        "threads"_a = 0, "out_dtype"_a = nb::none(), "stream"_a = 0);

}

}  // namespace mxq::py
