// Host entry points of the GPU quantize kernels: argument checks (errors name the offending
// value), choice between the fast and the fallback kernel, and the split of very large tensors
// into launches of fewer than 2^31 threads (the kernels index with 32-bit unit numbers).
#include "cuda/quant/quantize.h"

#include <cstdint>
#include <string>

#include "cuda/quant/kernels.h"

namespace mxq::cuda {
namespace {

// Units (16-element half blocks) per launch: a multiple of 2, far below 2^31.
constexpr int64_t kMaxUnitsPerLaunch = int64_t(1) << 30;

Status launch_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status(StatusCode::kInternal, std::string(what) + ": kernel launch failed: " +
                                           cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                                           ")");
}

bool aligned(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }

// Alignment the vector stores of unit-sized packed chunks need: 16 bytes for 8-bit elements,
// 8 for MXFP4 (8 bytes per unit), 4 for MXFP6 (12 bytes per unit).
uintptr_t packed_alignment(ElemType t) {
  const int bits = elem_info(t).bits;
  return bits == 8 ? 16 : (bits == 4 ? 8 : 4);
}

Status check_elem(ElemType t, const char* fn) {
  if (int(t) > int(ElemType::kInt8))
    return invalid_argument(std::string(fn) + ": element type " + std::to_string(int(t)) +
                            " is not an MX element type (e2m1, e2m3, e3m2, e4m3, e5m2, int8)");
  return Status::Ok();
}

Status check_dtype(DType d, const char* fn, const char* what) {
  if (int(d) > int(DType::kF16))
    return invalid_argument(std::string(fn) + ": " + what + " dtype " + std::to_string(int(d)) +
                            " is not one of f32, bf16, f16");
  return Status::Ok();
}

Status check_options(const QuantOptions& opts, const char* fn) {
  MXQ_RETURN_IF_ERROR(check_elem(opts.elem, fn));
  const Status s = validate(opts);
  if (!s.ok()) return invalid_argument(std::string(fn) + ": " + s.message());
  return Status::Ok();
}

Status check_rows(int64_t rows, const char* fn) {
  if (rows < 0) return invalid_argument(std::string(fn) + ": rows = " + std::to_string(rows) +
                                        " must be >= 0");
  return Status::Ok();
}

Status null_pointer(const char* fn, const char* name) {
  return invalid_argument(std::string(fn) + ": " + name + " is a null pointer");
}

}  // namespace

Status quantize(const void* in, DType in_dtype, int64_t rows, int64_t k, const QuantOptions& opts,
                uint8_t* packed, uint8_t* scales, cudaStream_t stream) {
  constexpr const char* fn = "cuda::quantize";
  MXQ_RETURN_IF_ERROR(check_options(opts, fn));
  MXQ_RETURN_IF_ERROR(check_dtype(in_dtype, fn, "input"));
  MXQ_RETURN_IF_ERROR(check_rows(rows, fn));
  const StatusOr<int64_t> kq = quantized_k(k, opts.pad_k);
  if (!kq.ok()) return invalid_argument(std::string(fn) + ": " + kq.status().message());
  if (rows == 0) return Status::Ok();
  if (in == nullptr) return null_pointer(fn, "input");
  if (packed == nullptr) return null_pointer(fn, "packed output");
  if (scales == nullptr) return null_pointer(fn, "scales output");

  if (!aligned(in, uintptr_t(dtype_bytes(in_dtype))))
    return invalid_argument(std::string(fn) + ": input is not aligned to its " +
                            dtype_name(in_dtype) + " elements");
  const int64_t kb = kq.value() / kBlockSize;
  const bool fast = kq.value() == k && aligned(in, 16) && aligned(packed, packed_alignment(opts.elem));
  if (!fast)
    return launch_status(
        detail::launch_quantize_generic(in, in_dtype, rows, k, kb, opts, packed, scales, stream),
        fn);
  // The tensor is a flat sequence of blocks: split it into launches of at most 2^30 units.
  const int64_t units = rows * kb * 2;
  const int esize = dtype_bytes(in_dtype);
  const int bits = elem_info(opts.elem).bits;
  for (int64_t u0 = 0; u0 < units; u0 += kMaxUnitsPerLaunch) {
    const int64_t n = units - u0 < kMaxUnitsPerLaunch ? units - u0 : kMaxUnitsPerLaunch;
    MXQ_RETURN_IF_ERROR(launch_status(
        detail::launch_quantize_fast(static_cast<const char*>(in) + u0 * 16 * esize, in_dtype,
                                     uint32_t(n), opts, packed + u0 * 16 * bits / 8, scales + u0 / 2,
                                     stream),
        fn));
  }
  return Status::Ok();
}

Status dequantize(const uint8_t* packed, const uint8_t* scales, ElemType elem, int64_t rows,
                  int64_t k, DType out_dtype, void* out, cudaStream_t stream) {
  constexpr const char* fn = "cuda::dequantize";
  MXQ_RETURN_IF_ERROR(check_elem(elem, fn));
  MXQ_RETURN_IF_ERROR(check_dtype(out_dtype, fn, "output"));
  MXQ_RETURN_IF_ERROR(check_rows(rows, fn));
  if (k <= 0 || k % kBlockSize != 0)
    return invalid_argument(std::string(fn) + ": K = " + std::to_string(k) +
                            " is not a positive multiple of the MX block size 32");
  if (rows == 0) return Status::Ok();
  if (packed == nullptr) return null_pointer(fn, "packed input");
  if (scales == nullptr) return null_pointer(fn, "scales input");
  if (out == nullptr) return null_pointer(fn, "output");

  if (!aligned(out, uintptr_t(dtype_bytes(out_dtype))))
    return invalid_argument(std::string(fn) + ": output is not aligned to its " +
                            dtype_name(out_dtype) + " elements");
  const int64_t blocks = rows * (k / kBlockSize);
  if (!aligned(out, 16) || !aligned(packed, packed_alignment(elem)))
    return launch_status(
        detail::launch_dequantize_generic(packed, scales, elem, blocks, out_dtype, out, stream),
        fn);
  const int64_t units = blocks * 2;
  const int esize = dtype_bytes(out_dtype);
  const int bits = elem_info(elem).bits;
  for (int64_t u0 = 0; u0 < units; u0 += kMaxUnitsPerLaunch) {
    const int64_t n = units - u0 < kMaxUnitsPerLaunch ? units - u0 : kMaxUnitsPerLaunch;
    MXQ_RETURN_IF_ERROR(launch_status(
        detail::launch_dequantize_fast(packed + u0 * 16 * bits / 8, scales + u0 / 2, elem,
                                       uint32_t(n), out_dtype,
                                       static_cast<char*>(out) + u0 * 16 * esize, stream),
        fn));
  }
  return Status::Ok();
}

Status silu_and_mul_quantize(const void* gate_up, DType dtype, int64_t rows, int64_t inter,
                             const QuantOptions& opts, uint8_t* packed, uint8_t* scales,
                             cudaStream_t stream, GateUpLayout layout) {
  constexpr const char* fn = "cuda::silu_and_mul_quantize";
  MXQ_RETURN_IF_ERROR(check_options(opts, fn));
  MXQ_RETURN_IF_ERROR(check_dtype(dtype, fn, "input"));
  MXQ_RETURN_IF_ERROR(check_rows(rows, fn));
  if (layout != GateUpLayout::kChunked && layout != GateUpLayout::kInterleaved)
    return invalid_argument(std::string(fn) + ": gate/up layout " + std::to_string(int(layout)) +
                            " is neither chunked (0) nor interleaved (1)");
  if (inter <= 0 || inter % kBlockSize != 0)
    return invalid_argument(std::string(fn) + ": intermediate size I = " + std::to_string(inter) +
                            " is not a positive multiple of the MX block size 32 (pad_k is not "
                            "supported by the fused kernel)");
  if (inter > (int64_t(1) << 30))
    return invalid_argument(std::string(fn) + ": intermediate size I = " + std::to_string(inter) +
                            " is above 2^30");
  if (rows == 0) return Status::Ok();
  if (gate_up == nullptr) return null_pointer(fn, "gate_up input");
  if (packed == nullptr) return null_pointer(fn, "packed output");
  if (scales == nullptr) return null_pointer(fn, "scales output");
  if (!aligned(gate_up, 16))
    return invalid_argument(std::string(fn) + ": gate_up input is not 16-byte aligned");
  if (!aligned(packed, packed_alignment(opts.elem)))
    return invalid_argument(std::string(fn) + ": packed output is not " +
                            std::to_string(packed_alignment(opts.elem)) + "-byte aligned");

#if MXQ_CUDA_SILU_QUANT
  const int64_t per_row = inter / 16;
  const int64_t rows_per_launch = kMaxUnitsPerLaunch / per_row;
  const int esize = dtype_bytes(dtype);
  const int64_t row_bytes_out = packed_bytes(opts.elem, inter);
  for (int64_t r0 = 0; r0 < rows; r0 += rows_per_launch) {
    const int64_t n = rows - r0 < rows_per_launch ? rows - r0 : rows_per_launch;
    MXQ_RETURN_IF_ERROR(launch_status(
        detail::launch_silu_quantize(static_cast<const char*>(gate_up) + r0 * 2 * inter * esize,
                                     dtype, uint32_t(n), uint32_t(inter),
                                     layout == GateUpLayout::kInterleaved, opts,
                                     packed + r0 * row_bytes_out, scales + r0 * (inter / 32),
                                     stream),
        fn));
  }
  return Status::Ok();
#else
  (void)stream;
  return unimplemented(std::string(fn) + ": this build has no fused SiLU-and-mul + quantize "
                       "kernels (configure with -DMXQ_CUDA_SILU_QUANT=ON)");
#endif
}

bool silu_and_mul_quantize_built() { return MXQ_CUDA_SILU_QUANT != 0; }

}  // namespace mxq::cuda
