// MX activation fake-quant (fake_quant.h): one thread per 16-element half block, the two
// halves of a block in adjacent lanes exchanging their amax with one shuffle (as the quantize
// kernels do), then per element: encode (encode.cuh, the bits of num::encode_elem), decode
// times the block scale (one FP32 product, exact), round to the 16-bit type (exact, see the
// header).
#include <algorithm>
#include <string>

#include "cuda/common/pdl.h"
#include "cuda/quant/block_io.cuh"
#include "cuda/quant/fake_quant.h"

namespace mxq::cuda {
namespace fq {
namespace {

using qk::kThreads;

template <DType D>
__device__ __forceinline__ uint16_t to16(uint32_t f32_bits) {
  const float f = __uint_as_float(f32_bits);
  if constexpr (D == DType::kBF16) {
    return num::f32_to_bf16(f);
  } else {
    return num::f32_to_f16(f);
  }
}

// 16 elements from e0 of a 16-byte aligned buffer, widened exactly. Plain loads, not __ldg:
// the kernel may run in place (out == in), and the read-only cache path requires data that
// no thread writes during the kernel.
template <DType D>
__device__ __forceinline__ void load16_rw(const void* base, size_t e0, float (&x)[16]) {
  const uint4* p = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(base) + e0);
  const uint4 v0 = p[0], v1 = p[1];
  const uint32_t w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    x[2 * i] = num::load_dense(&w[i], D, 0);      // little-endian: the low half first
    x[2 * i + 1] = num::load_dense(&w[i], D, 1);
  }
}

template <ElemType T, DType D>
__global__ void __launch_bounds__(kThreads)
    fake_quant_kernel(const void* in, uint32_t units, bool vec, ScaleRule rule, void* out) {
  constexpr ElemInfo ei = elem_info(T);
  const uint32_t u = blockIdx.x * kThreads + threadIdx.x;
  const bool live = u < units;  // units is even: both lanes of a block agree
  const size_t e0 = size_t(u) * 16;
  float x[16];
  if (live && vec) {
    load16_rw<D>(in, e0, x);
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = live ? num::load_dense(in, D, int64_t(e0) + i) : 0.0f;
  }
  float am = 0.0f;
#pragma unroll
  for (int i = 0; i < 16; ++i) am = qk::amax_nan(am, x[i]);
  am = qk::max_nan(am, __shfl_xor_sync(0xFFFFFFFFu, am, 1));
  if (!live) return;
  // mxq::quantize's defaults (floor unless the problem names another rule), no scale
  // saturation, RNE, element saturation.
  const uint8_t s = num::scale_code(T, rule, qk::as_u(am), false);
  uint16_t y[16];
  if (s == num::kScaleNaN) {
#pragma unroll
    for (int i = 0; i < 16; ++i) y[i] = to16<D>(num::kF32QuietNaN);
  } else {
    const float mul = qk::inv_scale(s), sc = num::e8m0_to_f32(s);
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const uint32_t code = qk::encode<T, Rounding::kRne>(x[i], mul, uint32_t(ei.max_mag));
      y[i] = to16<D>(qk::decode_scaled<T>(code, sc));
    }
  }
  uint16_t* o = static_cast<uint16_t*>(out) + e0;
  if (vec) {
    uint32_t w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = uint32_t(y[2 * i]) | (uint32_t(y[2 * i + 1]) << 16);
    reinterpret_cast<uint4*>(o)[0] = make_uint4(w[0], w[1], w[2], w[3]);
    reinterpret_cast<uint4*>(o)[1] = make_uint4(w[4], w[5], w[6], w[7]);
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) o[i] = y[i];
  }
}

template <ElemType T>
cudaError_t launch(const void* x, DType dtype, uint32_t units, bool vec, ScaleRule rule, void* out,
                   cudaStream_t stream) {
  const unsigned grid = qk::grid_for(units);
  if (dtype == DType::kBF16)
    fake_quant_kernel<T, DType::kBF16><<<grid, kThreads, 0, stream>>>(x, units, vec, rule, out);
  else
    fake_quant_kernel<T, DType::kF16><<<grid, kThreads, 0, stream>>>(x, units, vec, rule, out);
  return cudaGetLastError();
}


// ---- FP8 keys -----------------------------------------------------------------------------

constexpr int kRowThreads = 256;

// kCodes: write the E4M3 codes themselves (row stride ld bytes: the FP8 tensor-core operand)
// instead of their values in the 16-bit type (row stride k: the 16-bit GEMMs' operand).
// tensor_parts (fp8-dynamic-tensor): `parts` partial maxima of |x| as FP32 bit patterns
// (tensor_amax_kernel); every CTA reduces them to the tensor's one scale and writes it to its
// row_scale entry. Null for the static and per-row modes.
template <DType D, bool kCodes>
__global__ void __launch_bounds__(kRowThreads)
    fp8_rows_kernel(const void* __restrict__ in, int64_t k, bool per_row, float static_s,
                    void* __restrict__ out, int64_t ld, float* __restrict__ row_scale,
                    const uint32_t* __restrict__ tensor_parts = nullptr, int parts = 0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // The FP8 GEMM launched behind this kernel (programmatic dependent launch, hopper/
  // gemm_launch.cuh) may start now: it prefetches its weights and waits for this grid.
  if constexpr (kCodes) pdl::launch_dependents();
#endif
  const int64_t row = blockIdx.x;
  const void* x = static_cast<const uint16_t*>(in) + row * k;
  uint16_t* o = static_cast<uint16_t*>(out) + row * k;
  uint8_t* oc = static_cast<uint8_t*>(out) + row * ld;
  (void)o;
  (void)oc;
  float s = static_s;
  if (tensor_parts != nullptr) {
    // One scale for the whole tensor: the integer max of the partial |x| bit patterns (order
    // independent, so every CTA gets the same bits). Non-negative FP32 values order like their
    // bit patterns; Inf is 0x7F800000 and every NaN (sign cleared) above it, so a maximum at or
    // above 0x7F800000 means the tensor holds a NaN or Inf: all NaN, as the reference does.
    __shared__ uint32_t tred[kRowThreads];
    uint32_t m = 0;
    for (int i = threadIdx.x; i < parts; i += kRowThreads) m = max(m, tensor_parts[i]);
    tred[threadIdx.x] = m;
    __syncthreads();
    for (int h = kRowThreads / 2; h > 0; h >>= 1) {
      if (int(threadIdx.x) < h) tred[threadIdx.x] = max(tred[threadIdx.x], tred[threadIdx.x + h]);
      __syncthreads();
    }
    if (tred[0] >= 0x7F800000u) {
      const uint16_t nan = to16<D>(num::kF32QuietNaN);
      for (int64_t i = threadIdx.x; i < k; i += kRowThreads) {
        if constexpr (kCodes)
          oc[i] = 0x7F;  // E4M3's NaN code
        else
          o[i] = nan;
      }
      if (threadIdx.x == 0) row_scale[row] = 1.0f;
      return;
    }
    const float amax = __uint_as_float(tred[0]);
    s = amax == 0.0f ? 1.0f : __fdiv_rn(amax, 448.0f);
    if (threadIdx.x == 0) row_scale[row] = s;
  } else if (per_row) {
    // amax and finiteness of the row: max is order independent, so any reduction order gives
    // the same bits (fmaxf ignores NaN like std::fmax; the finite flag catches NaN and Inf).
    __shared__ float red[kRowThreads];
    __shared__ int bad[kRowThreads];
    float am = 0.0f;
    int nonfinite = 0;
    for (int64_t i = threadIdx.x; i < k; i += kRowThreads) {
      const float v = num::load_dense(x, D, i);
      nonfinite |= isfinite(v) ? 0 : 1;
      am = fmaxf(am, fabsf(v));
    }
    red[threadIdx.x] = am;
    bad[threadIdx.x] = nonfinite;
    __syncthreads();
    for (int h = kRowThreads / 2; h > 0; h >>= 1) {
      if (int(threadIdx.x) < h) {
        red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + h]);
        bad[threadIdx.x] |= bad[threadIdx.x + h];
      }
      __syncthreads();
    }
    if (bad[0] != 0) {
      const uint16_t nan = to16<D>(num::kF32QuietNaN);
      for (int64_t i = threadIdx.x; i < k; i += kRowThreads) {
        if constexpr (kCodes)
          oc[i] = 0x7F;  // E4M3's NaN code
        else
          o[i] = nan;
      }
      if (threadIdx.x == 0) row_scale[row] = 1.0f;
      return;
    }
    s = red[0] == 0.0f ? 1.0f : __fdiv_rn(red[0], 448.0f);
    if (threadIdx.x == 0) row_scale[row] = s;
  }
  constexpr uint8_t kMax = uint8_t(elem_info(ElemType::kE4M3).max_mag);
  for (int64_t i = threadIdx.x; i < k; i += kRowThreads) {
    const float q = __fdiv_rn(num::load_dense(x, D, i), s);
    const uint8_t code = isnan(q)   ? uint8_t(0x7F)
                         : isinf(q) ? uint8_t(kMax | (q < 0.0f ? 0x80u : 0u))
                                    : num::encode_elem(ElemType::kE4M3, __float_as_uint(q), 0,
                                                       Rounding::kRne, Saturation::kSaturate);
    if constexpr (kCodes) {
      oc[i] = code;
    } else {
      const uint32_t v = isnan(q) ? num::kF32QuietNaN
                                  : __float_as_uint(num::decode_elem(ElemType::kE4M3, code));
      o[i] = to16<D>(v);
    }
  }
}

// fp8-dynamic-tensor, first pass: parts[b] = the max over CTA b's grid-stride share of the
// tensor of the bit pattern of |x| (sign bit cleared; NaN and Inf above every finite value).
// An integer max: the result does not depend on the split or the order.
template <DType D>
__global__ void __launch_bounds__(kRowThreads)
    tensor_amax_kernel(const void* __restrict__ in, int64_t n, uint32_t* __restrict__ parts) {
  uint32_t m = 0;
  for (int64_t i = int64_t(blockIdx.x) * kRowThreads + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kRowThreads)
    m = max(m, __float_as_uint(num::load_dense(in, D, i)) & 0x7FFFFFFFu);
  __shared__ uint32_t red[kRowThreads];
  red[threadIdx.x] = m;
  __syncthreads();
  for (int h = kRowThreads / 2; h > 0; h >>= 1) {
    if (int(threadIdx.x) < h) red[threadIdx.x] = max(red[threadIdx.x], red[threadIdx.x + h]);
    __syncthreads();
  }
  if (threadIdx.x == 0) parts[blockIdx.x] = red[0];
}

template <DType O>
__global__ void __launch_bounds__(kThreads)
    scale_rows_kernel(const float* __restrict__ acc, int64_t rows, int64_t n,
                      const float* __restrict__ row_scale, float scale,
                      const float* __restrict__ bias, void* __restrict__ y, int64_t ldy) {
  const int64_t total = rows * n;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / n, c = i - r * n;
    float v = __fmul_rn(row_scale != nullptr ? row_scale[r] : scale, acc[i]);
    if (bias != nullptr) v = __fadd_rn(v, bias[c]);
    if constexpr (O == DType::kF32) {
      static_cast<float*>(y)[r * ldy + c] = v;
    } else {
      static_cast<uint16_t*>(y)[r * ldy + c] = to16<O>(__float_as_uint(v));
    }
  }
}
}  // namespace
}  // namespace fq

Status mx_fake_quant(ElemType elem, const void* x, DType dtype, int64_t rows, int64_t k, void* out,
                     cudaStream_t stream, ScaleRule rule) {
  if (elem != ElemType::kE2M1 && elem != ElemType::kE2M3 && elem != ElemType::kE3M2 &&
      elem != ElemType::kE4M3)
    return invalid_argument(std::string("mx_fake_quant: element type ") + elem_type_name(elem) +
                            " is not one of an MX activation key (e2m1, e2m3, e3m2, e4m3)");
  if (dtype != DType::kBF16 && dtype != DType::kF16)
    return invalid_argument(std::string("mx_fake_quant: activations must be BF16 or F16, got ") +
                            dtype_name(dtype));
  if (rows < 0 || k < 0 || k % 32 != 0)
    return invalid_argument("mx_fake_quant: [" + std::to_string(rows) + ", " + std::to_string(k) +
                            "]: K must be a non-negative multiple of 32");
  if (dtype == DType::kF16 && rule != ScaleRule::kFloor)
    return invalid_argument(std::string("mx_fake_quant: scale rule ") + scale_rule_name(rule) +
                            " with F16 activations: the next scale up can leave F16's range in "
                            "its top binade (not exact); only floor is exact there");
  if (rows * k == 0) return Status::Ok();
  if (x == nullptr || out == nullptr) return invalid_argument("mx_fake_quant: null pointer");
  const int64_t units = rows * k / 16;
  if (units >= (int64_t(1) << 31))
    return invalid_argument("mx_fake_quant: " + std::to_string(rows * k) +
                            " elements are more than one launch handles (2^35)");
  const bool vec = reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  cudaError_t e = cudaSuccess;
  switch (elem) {
    case ElemType::kE2M1: e = fq::launch<ElemType::kE2M1>(x, dtype, uint32_t(units), vec, rule, out, stream); break;
    case ElemType::kE2M3: e = fq::launch<ElemType::kE2M3>(x, dtype, uint32_t(units), vec, rule, out, stream); break;
    case ElemType::kE3M2: e = fq::launch<ElemType::kE3M2>(x, dtype, uint32_t(units), vec, rule, out, stream); break;
    default: e = fq::launch<ElemType::kE4M3>(x, dtype, uint32_t(units), vec, rule, out, stream); break;
  }
  if (e != cudaSuccess)
    return Status(e == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted : StatusCode::kInternal,
                  std::string("launch of mx_fake_quant: ") + cudaGetErrorName(e) + " (" +
                      cudaGetErrorString(e) + ")");
  return Status::Ok();
}

}  // namespace mxq::cuda

namespace mxq::cuda {

namespace {
Status launch_error(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status(e == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted : StatusCode::kInternal,
                std::string("launch of ") + what + ": " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")");
}
}  // namespace

Status fp8_act_quant(const void* x, DType dtype, int64_t rows, int64_t k, bool per_row,
                     float input_scale, void* out, float* row_scale, cudaStream_t stream) {
  if (dtype != DType::kBF16 && dtype != DType::kF16)
    return invalid_argument(std::string("fp8_act_quant: activations must be BF16 or F16, got ") +
                            dtype_name(dtype));
  if (rows < 0 || k < 0 || rows > 0x7FFFFFFF)
    return invalid_argument("fp8_act_quant: bad shape [" + std::to_string(rows) + ", " +
                            std::to_string(k) + "]");
  if (!per_row && !(input_scale > 0.0f && input_scale <= 3.4028234663852886e38f))
    return invalid_argument("fp8_act_quant: fp8-static-tensor needs a positive finite input_scale, got " +
                            std::to_string(input_scale));
  if (rows * k == 0) return Status::Ok();
  if (x == nullptr || out == nullptr || (per_row && row_scale == nullptr))
    return invalid_argument("fp8_act_quant: null pointer");
  if (dtype == DType::kBF16)
    fq::fp8_rows_kernel<DType::kBF16, false><<<unsigned(rows), fq::kRowThreads, 0, stream>>>(
        x, k, per_row, input_scale, out, k, row_scale);
  else
    fq::fp8_rows_kernel<DType::kF16, false><<<unsigned(rows), fq::kRowThreads, 0, stream>>>(
        x, k, per_row, input_scale, out, k, row_scale);
  return launch_error(cudaGetLastError(), "fp8_act_quant");
}

int fp8_tensor_parts(int64_t rows, int64_t k) {
  const int64_t n = rows * k;
  const int64_t per_cta = int64_t(fq::kRowThreads) * 16;  // 16 elements per thread at least
  return int(std::max<int64_t>(1, std::min<int64_t>(kFp8TensorMaxParts, (n + per_cta - 1) / per_cta)));
}

Status fp8_tensor_act_quant(const void* x, DType dtype, int64_t rows, int64_t k, uint32_t* parts,
                            void* out, float* row_scale, cudaStream_t stream) {
  if (dtype != DType::kBF16 && dtype != DType::kF16)
    return invalid_argument(std::string("fp8_tensor_act_quant: activations must be BF16 or F16, got ") +
                            dtype_name(dtype));
  if (rows < 0 || k < 0 || rows > 0x7FFFFFFF)
    return invalid_argument("fp8_tensor_act_quant: bad shape [" + std::to_string(rows) + ", " +
                            std::to_string(k) + "]");
  if (rows * k == 0) return Status::Ok();
  if (x == nullptr || out == nullptr || row_scale == nullptr || parts == nullptr)
    return invalid_argument("fp8_tensor_act_quant: null pointer");
  const int n_parts = fp8_tensor_parts(rows, k);
  if (dtype == DType::kBF16) {
    fq::tensor_amax_kernel<DType::kBF16><<<unsigned(n_parts), fq::kRowThreads, 0, stream>>>(x, rows * k, parts);
    MXQ_RETURN_IF_ERROR(launch_error(cudaGetLastError(), "fp8_tensor_act_quant (amax)"));
    fq::fp8_rows_kernel<DType::kBF16, false><<<unsigned(rows), fq::kRowThreads, 0, stream>>>(
        x, k, false, 1.0f, out, k, row_scale, parts, n_parts);
  } else {
    fq::tensor_amax_kernel<DType::kF16><<<unsigned(n_parts), fq::kRowThreads, 0, stream>>>(x, rows * k, parts);
    MXQ_RETURN_IF_ERROR(launch_error(cudaGetLastError(), "fp8_tensor_act_quant (amax)"));
    fq::fp8_rows_kernel<DType::kF16, false><<<unsigned(rows), fq::kRowThreads, 0, stream>>>(
        x, k, false, 1.0f, out, k, row_scale, parts, n_parts);
  }
  return launch_error(cudaGetLastError(), "fp8_tensor_act_quant");
}

Status fp8_act_quant_codes(const void* x, DType dtype, int64_t rows, int64_t k, bool per_row,
                           float input_scale, uint8_t* codes, int64_t ld, float* row_scale,
                           cudaStream_t stream) {
  if (dtype != DType::kBF16 && dtype != DType::kF16)
    return invalid_argument(std::string("fp8_act_quant_codes: activations must be BF16 or F16, got ") +
                            dtype_name(dtype));
  if (rows < 0 || k < 0 || rows > 0x7FFFFFFF || ld < k)
    return invalid_argument("fp8_act_quant_codes: bad shape [" + std::to_string(rows) + ", " +
                            std::to_string(k) + "], ld " + std::to_string(ld));
  if (!per_row && !(input_scale > 0.0f && input_scale <= 3.4028234663852886e38f))
    return invalid_argument("fp8_act_quant_codes: fp8-static-tensor needs a positive finite input_scale, got " +
                            std::to_string(input_scale));
  if (rows * k == 0) return Status::Ok();
  if (x == nullptr || codes == nullptr || (per_row && row_scale == nullptr))
    return invalid_argument("fp8_act_quant_codes: null pointer");
  if (dtype == DType::kBF16)
    fq::fp8_rows_kernel<DType::kBF16, true><<<unsigned(rows), fq::kRowThreads, 0, stream>>>(
        x, k, per_row, input_scale, codes, ld, row_scale);
  else
    fq::fp8_rows_kernel<DType::kF16, true><<<unsigned(rows), fq::kRowThreads, 0, stream>>>(
        x, k, per_row, input_scale, codes, ld, row_scale);
  return launch_error(cudaGetLastError(), "fp8_act_quant_codes");
}

Status scale_rows(const float* acc, int64_t rows, int64_t n, const float* row_scale, float scale,
                  const float* bias, DType out, void* y, int64_t ldy, cudaStream_t stream) {
  if (rows < 0 || n < 0 || ldy < n)
    return invalid_argument("scale_rows: bad shape [" + std::to_string(rows) + ", " +
                            std::to_string(n) + "], ldy " + std::to_string(ldy));
  if (rows * n == 0) return Status::Ok();
  if (acc == nullptr || y == nullptr) return invalid_argument("scale_rows: null pointer");
  const int64_t blocks = std::min<int64_t>((rows * n + fq::kThreads - 1) / fq::kThreads, 65535LL * 16);
  const unsigned grid = unsigned(blocks);
  switch (out) {
    case DType::kF32:
      fq::scale_rows_kernel<DType::kF32><<<grid, fq::kThreads, 0, stream>>>(acc, rows, n, row_scale, scale, bias, y, ldy);
      break;
    case DType::kBF16:
      fq::scale_rows_kernel<DType::kBF16><<<grid, fq::kThreads, 0, stream>>>(acc, rows, n, row_scale, scale, bias, y, ldy);
      break;
    case DType::kF16:
      fq::scale_rows_kernel<DType::kF16><<<grid, fq::kThreads, 0, stream>>>(acc, rows, n, row_scale, scale, bias, y, ldy);
      break;
  }
  return launch_error(cudaGetLastError(), "scale_rows");
}

}  // namespace mxq::cuda
