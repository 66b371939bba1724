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

constexpr int kRowThreads = 256;  // tensor_amax_kernel's CTA
// fp8_rows_kernel's CTA: one per row. 512 threads so that one row of a decode-size call (M = 1:
// one CTA on one SM) has 16 warps to hide its loads and its per-element division + encode.
constexpr int kFp8RowThreads = 512;

// 8 consecutive elements from element i of a 16-byte aligned row (one 16-byte load), widened
// exactly. Plain loads: fp8_act_quant may write its values over the input.
template <DType D>
__device__ __forceinline__ void load8(const void* row, int64_t i, float (&v)[8]) {
  const uint4 q = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(row) + i);
  const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    v[2 * j] = num::load_dense(&w[j], D, 0);  // little-endian: the low half first
    v[2 * j + 1] = num::load_dense(&w[j], D, 1);
  }
}

// The block's max of `am` and OR of `bad` (order independent: any reduction order gives the same
// bits; fmaxf ignores NaN like std::fmax, the flag catches NaN and Inf): warp shuffles, then the
// warps' results through shared memory, read by every thread.
__device__ __forceinline__ void block_amax(float& am, int& bad) {
  __shared__ float red[kFp8RowThreads / 32];
  __shared__ int red_bad[kFp8RowThreads / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    am = fmaxf(am, __shfl_xor_sync(0xFFFFFFFFu, am, o));
    bad |= __shfl_xor_sync(0xFFFFFFFFu, bad, o);
  }
  if ((threadIdx.x & 31) == 0) {
    red[threadIdx.x >> 5] = am;
    red_bad[threadIdx.x >> 5] = bad;
  }
  __syncthreads();
  am = red[0];
  bad = red_bad[0];
#pragma unroll
  for (int w = 1; w < kFp8RowThreads / 32; ++w) {
    am = fmaxf(am, red[w]);
    bad |= red_bad[w];
  }
}

// The FP8 keys' per-element step (the reference's fp8_round_trip, act_quant.cc): q = x / s
// (one FP32 division), code = E4M3(q) with RNE and saturation; a NaN quotient is the NaN code
// and an infinite one saturates.
__device__ __forceinline__ uint8_t fp8_code(float x, float s, float& q) {
  constexpr uint8_t kMax = uint8_t(elem_info(ElemType::kE4M3).max_mag);
  q = __fdiv_rn(x, s);
  return isnan(q)   ? uint8_t(0x7F)
         : isinf(q) ? uint8_t(kMax | (q < 0.0f ? 0x80u : 0u))
                    : num::encode_elem(ElemType::kE4M3, __float_as_uint(q), 0, Rounding::kRne,
                                       Saturation::kSaturate);
}
// decode(code) in the 16-bit type D (exact: E4M3 values are BF16 and F16 values); NaN for a
// NaN quotient.
template <DType D>
__device__ __forceinline__ uint16_t fp8_value16(uint8_t code, float q) {
  const uint32_t v = isnan(q) ? num::kF32QuietNaN
                              : __float_as_uint(num::decode_elem(ElemType::kE4M3, code));
  return to16<D>(v);
}

// kCodes: write the E4M3 codes themselves (row stride ld bytes: the FP8 tensor-core operand)
// instead of their values in the 16-bit type (row stride k: the 16-bit GEMMs' operand).
// tensor_parts (fp8-dynamic-tensor): `parts` partial maxima of |x| as FP32 bit patterns
// (tensor_amax_kernel); every CTA reduces them to the tensor's one scale and writes it to its
// row_scale entry. Null for the static and per-row modes.
// vec: x and the output 16-byte aligned per row (k % 8 == 0; codes: ld % 8 == 0): each thread
// takes 8 consecutive elements per step (16-byte loads, 8-byte code / 16-byte value stores);
// otherwise one element per step. The per-element arithmetic is the same either way.
template <DType D, bool kCodes>
__global__ void __launch_bounds__(kFp8RowThreads)
    fp8_rows_kernel(const void* __restrict__ in, int64_t k, bool per_row, float static_s,
                    void* __restrict__ out, int64_t ld, float* __restrict__ row_scale,
                    const uint32_t* __restrict__ tensor_parts = nullptr, int parts = 0,
                    bool vec = false) {
  constexpr int T = kFp8RowThreads;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // The FP8 GEMM launched behind this kernel (programmatic dependent launch, hopper/
  // gemm_launch.cuh) may start now: it prefetches its weights and waits for this grid.
  if constexpr (kCodes) pdl::launch_dependents();
#endif
  const int64_t row = blockIdx.x;
  const int tid = int(threadIdx.x);
  const void* x = static_cast<const uint16_t*>(in) + row * k;
  uint16_t* o = static_cast<uint16_t*>(out) + row * k;
  uint8_t* oc = static_cast<uint8_t*>(out) + row * ld;
  (void)o;
  (void)oc;
  auto all_nan = [&] {  // a NaN or Inf in the row (tensor): every output NaN, as the reference
    const uint16_t nan = to16<D>(num::kF32QuietNaN);
    for (int64_t i = tid; i < k; i += T) {
      if constexpr (kCodes)
        oc[i] = 0x7F;  // E4M3's NaN code
      else
        o[i] = nan;
    }
    if (tid == 0) row_scale[row] = 1.0f;
  };
  float s = static_s;
  if (tensor_parts != nullptr) {
    // One scale for the whole tensor: the integer max of the partial |x| bit patterns (order
    // independent, so every CTA gets the same bits). Non-negative FP32 values order like their
    // bit patterns; Inf is 0x7F800000 and every NaN (sign cleared) above it, so a maximum at or
    // above 0x7F800000 means the tensor holds a NaN or Inf: all NaN, as the reference does.
    uint32_t m = 0;
    for (int i = tid; i < parts; i += T) m = max(m, tensor_parts[i]);
    float am = __uint_as_float(m);  // (non-negative patterns: fmaxf orders them as max does,
    int bad = m >= 0x7F800000u;     //  NaN patterns are flagged and never compared)
    if (bad) am = 0.0f;
    block_amax(am, bad);
    if (bad) return all_nan();
    s = am == 0.0f ? 1.0f : __fdiv_rn(am, 448.0f);
    if (tid == 0) row_scale[row] = s;
  } else if (per_row) {
    // amax and finiteness of the row.
    float am = 0.0f;
    int bad = 0;
    if (vec) {
#pragma unroll 4
      for (int64_t i = 8 * int64_t(tid); i < k; i += 8 * T) {
        float v[8];
        load8<D>(x, i, v);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          bad |= isfinite(v[j]) ? 0 : 1;
          am = fmaxf(am, fabsf(v[j]));
        }
      }
    } else {
      for (int64_t i = tid; i < k; i += T) {
        const float v = num::load_dense(x, D, i);
        bad |= isfinite(v) ? 0 : 1;
        am = fmaxf(am, fabsf(v));
      }
    }
    block_amax(am, bad);
    if (bad) return all_nan();
    s = am == 0.0f ? 1.0f : __fdiv_rn(am, 448.0f);
    if (tid == 0) row_scale[row] = s;
  }
  auto code_of = [&](float xv, float& q) { return fp8_code(xv, s, q); };
  auto value_of = [&](uint8_t code, float q) { return fp8_value16<D>(code, q); };
  if (vec) {
#pragma unroll 2
    for (int64_t i = 8 * int64_t(tid); i < k; i += 8 * T) {
      float v[8];
      load8<D>(x, i, v);
      uint32_t packed[4] = {0, 0, 0, 0};
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float q;
        const uint8_t code = code_of(v[j], q);
        if constexpr (kCodes)
          packed[j / 4] |= uint32_t(code) << (8 * (j % 4));
        else
          packed[j / 2] |= uint32_t(value_of(code, q)) << (16 * (j % 2));
      }
      if constexpr (kCodes)
        *reinterpret_cast<uint2*>(oc + i) = make_uint2(packed[0], packed[1]);
      else
        *reinterpret_cast<uint4*>(o + i) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    }
    return;
  }
  for (int64_t i = tid; i < k; i += T) {
    float q;
    const uint8_t code = code_of(num::load_dense(x, D, i), q);
    if constexpr (kCodes) {
      oc[i] = code;
    } else {
      o[i] = value_of(code, q);
    }
  }
}

// fp8-dynamic-group128: one warp per (row, 128-column group), 4 elements a lane (coalesced
// 2-byte loads: lane + 32 j), shuffle amax; s = amax / 448 (1 for an all-zero group) to
// group_scale[row * groups + g]; a NaN or Inf in the group makes its 128 values NaN with s = 1,
// as the reference does. Loads before stores within the warp, so out may equal in.
// kCodes: the E4M3 codes themselves to out (rows of ld bytes: the FP8 tensor-core operand), the
// NaN code 0x7F where the values would be NaN.
constexpr int kFp8GroupThreads = 256;
template <DType D, bool kCodes = false>
__global__ void __launch_bounds__(kFp8GroupThreads)
    fp8_group_kernel(const void* in, int64_t rows, int64_t k, int groups, void* out,
                     float* __restrict__ group_scale, int64_t ld = 0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (kCodes) pdl::launch_dependents();  // as fp8_rows_kernel: the GEMM behind it
#endif
  const int64_t w = int64_t(blockIdx.x) * (kFp8GroupThreads / 32) + (threadIdx.x >> 5);
  if (w >= rows * groups) return;  // warp-uniform
  const int lane = int(threadIdx.x & 31);
  const int64_t row = w / groups;
  const int64_t c0 = (w - row * groups) * 128;
  const int n = int(k - c0 < 128 ? k - c0 : 128);  // the last group may be shorter
  const uint16_t* x = static_cast<const uint16_t*>(in) + row * k + c0;
  uint16_t* o = static_cast<uint16_t*>(out) + row * k + c0;
  uint8_t* oc = static_cast<uint8_t*>(out) + row * ld + c0;
  (void)o;
  (void)oc;
  float v[4];
  float am = 0.0f;
  int bad = 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int i = lane + 32 * j;
    v[j] = i < n ? num::load_dense(x, D, i) : 0.0f;
    bad |= isfinite(v[j]) ? 0 : 1;
    am = fmaxf(am, fabsf(v[j]));
  }
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) {
    am = fmaxf(am, __shfl_xor_sync(0xFFFFFFFFu, am, d));
    bad |= __shfl_xor_sync(0xFFFFFFFFu, bad, d);
  }
  if (bad) {
    const uint16_t nan = to16<D>(num::kF32QuietNaN);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (lane + 32 * j < n) {
        if constexpr (kCodes)
          oc[lane + 32 * j] = 0x7F;  // E4M3's NaN code
        else
          o[lane + 32 * j] = nan;
      }
    (void)nan;
    if (lane == 0) group_scale[w] = 1.0f;
    return;
  }
  const float s = am == 0.0f ? 1.0f : __fdiv_rn(am, 448.0f);
  if (lane == 0) group_scale[w] = s;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int i = lane + 32 * j;
    if (i >= n) continue;
    float q;
    const uint8_t code = fp8_code(v[j], s, q);
    if constexpr (kCodes)
      oc[i] = code;
    else
      o[i] = fp8_value16<D>(code, q);
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

// Whether fp8_rows_kernel may take 8 elements per step: every row of x (16-bit, k elements) and
// of the output starts aligned. out_align 8: E4M3 codes, rows of ld bytes, 8-byte stores; 16:
// 16-bit values, rows of ld elements, 16-byte stores.
bool rows_vectorized(const void* x, const void* out, int64_t k, int64_t ld, int out_align) {
  const int64_t out_row_bytes = out_align == 8 ? ld : 2 * ld;
  return k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(out) % uintptr_t(out_align) == 0 &&
         out_row_bytes % out_align == 0;
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
  const bool vec = fq::rows_vectorized(x, out, k, k, 16);
  if (dtype == DType::kBF16)
    fq::fp8_rows_kernel<DType::kBF16, false><<<unsigned(rows), fq::kFp8RowThreads, 0, stream>>>(
        x, k, per_row, input_scale, out, k, row_scale, nullptr, 0, vec);
  else
    fq::fp8_rows_kernel<DType::kF16, false><<<unsigned(rows), fq::kFp8RowThreads, 0, stream>>>(
        x, k, per_row, input_scale, out, k, row_scale, nullptr, 0, vec);
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
  const bool vec = fq::rows_vectorized(x, out, k, k, 16);
  if (dtype == DType::kBF16) {
    fq::tensor_amax_kernel<DType::kBF16><<<unsigned(n_parts), fq::kRowThreads, 0, stream>>>(x, rows * k, parts);
    MXQ_RETURN_IF_ERROR(launch_error(cudaGetLastError(), "fp8_tensor_act_quant (amax)"));
    fq::fp8_rows_kernel<DType::kBF16, false><<<unsigned(rows), fq::kFp8RowThreads, 0, stream>>>(
        x, k, false, 1.0f, out, k, row_scale, parts, n_parts, vec);
  } else {
    fq::tensor_amax_kernel<DType::kF16><<<unsigned(n_parts), fq::kRowThreads, 0, stream>>>(x, rows * k, parts);
    MXQ_RETURN_IF_ERROR(launch_error(cudaGetLastError(), "fp8_tensor_act_quant (amax)"));
    fq::fp8_rows_kernel<DType::kF16, false><<<unsigned(rows), fq::kFp8RowThreads, 0, stream>>>(
        x, k, false, 1.0f, out, k, row_scale, parts, n_parts, vec);
  }
  return launch_error(cudaGetLastError(), "fp8_tensor_act_quant");
}

int64_t fp8_act_groups(int64_t k) { return (k + 127) / 128; }

Status fp8_group_act_quant(const void* x, DType dtype, int64_t rows, int64_t k, void* out,
                           float* group_scale, cudaStream_t stream) {
  if (dtype != DType::kBF16 && dtype != DType::kF16)
    return invalid_argument(std::string("fp8_group_act_quant: activations must be BF16 or F16, got ") +
                            dtype_name(dtype));
  constexpr int64_t kWarps = fq::kFp8GroupThreads / 32;
  const int64_t groups = fp8_act_groups(k);
  if (rows < 0 || k < 0 || groups > 0x7FFFFFFF || rows * groups / kWarps >= 0x7FFFFFFF)
    return invalid_argument("fp8_group_act_quant: bad shape [" + std::to_string(rows) + ", " +
                            std::to_string(k) + "]");
  if (rows * k == 0) return Status::Ok();
  if (x == nullptr || out == nullptr || group_scale == nullptr)
    return invalid_argument("fp8_group_act_quant: null pointer");
  const unsigned grid = unsigned((rows * groups + kWarps - 1) / kWarps);
  if (dtype == DType::kBF16)
    fq::fp8_group_kernel<DType::kBF16><<<grid, fq::kFp8GroupThreads, 0, stream>>>(
        x, rows, k, int(groups), out, group_scale);
  else
    fq::fp8_group_kernel<DType::kF16><<<grid, fq::kFp8GroupThreads, 0, stream>>>(
        x, rows, k, int(groups), out, group_scale);
  return launch_error(cudaGetLastError(), "fp8_group_act_quant");
}

Status fp8_group_act_quant_codes(const void* x, DType dtype, int64_t rows, int64_t k,
                                 uint8_t* codes, int64_t ld, float* group_scale,
                                 cudaStream_t stream) {
  if (dtype != DType::kBF16 && dtype != DType::kF16)
    return invalid_argument(std::string("fp8_group_act_quant_codes: activations must be BF16 or F16, got ") +
                            dtype_name(dtype));
  constexpr int kWarps = fq::kFp8GroupThreads / 32;
  const int64_t groups = fp8_act_groups(k);
  if (rows < 0 || k < 0 || ld < k || groups > 0x7FFFFFFF || rows * groups / kWarps >= 0x7FFFFFFF)
    return invalid_argument("fp8_group_act_quant_codes: bad shape [" + std::to_string(rows) +
                            ", " + std::to_string(k) + "], ld " + std::to_string(ld));
  if (rows * k == 0) return Status::Ok();
  if (x == nullptr || codes == nullptr || group_scale == nullptr)
    return invalid_argument("fp8_group_act_quant_codes: null pointer");
  const unsigned grid = unsigned((rows * groups + kWarps - 1) / kWarps);
  if (dtype == DType::kBF16)
    fq::fp8_group_kernel<DType::kBF16, true><<<grid, fq::kFp8GroupThreads, 0, stream>>>(
        x, rows, k, int(groups), codes, group_scale, ld);
  else
    fq::fp8_group_kernel<DType::kF16, true><<<grid, fq::kFp8GroupThreads, 0, stream>>>(
        x, rows, k, int(groups), codes, group_scale, ld);
  return launch_error(cudaGetLastError(), "fp8_group_act_quant_codes");
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
  const bool vec = fq::rows_vectorized(x, codes, k, ld, 8);
  if (dtype == DType::kBF16)
    fq::fp8_rows_kernel<DType::kBF16, true><<<unsigned(rows), fq::kFp8RowThreads, 0, stream>>>(
        x, k, per_row, input_scale, codes, ld, row_scale, nullptr, 0, vec);
  else
    fq::fp8_rows_kernel<DType::kF16, true><<<unsigned(rows), fq::kFp8RowThreads, 0, stream>>>(
        x, k, per_row, input_scale, codes, ld, row_scale, nullptr, 0, vec);
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
