// The activation operand of a 16-bit GEMM under an activation key (host code, C++20): what a
// CUDA backend whose kernels multiply BF16 / FP16 activations calls so that an activation key
// is computed exactly as cpu-reference defines it, or not declared at all.
//
//   bf16, fp16          x as it is.
//   mxfp4-dynamic,      x quantized per 32-block along K and dequantized back into its own
//   mxfp8-dynamic,      16-bit type by mx_fake_quant (fake_quant.h): exact, so the GEMM sees
//   mxfp6-*-dynamic     the reference's values.
//   fp8-static-tensor,  not as a plain operand: decode(code) * s needs up to 28 significant
//   fp8-dynamic-token,  bits. fp8_operand gives decode(code) (exact in 16 bits) and keeps s
//   fp8-dynamic-tensor  apart, for a GEMM into FP32 followed by scale_rows (fake_quant.h):
//                       cuda-mma's linear layers do that; its MoE layer refuses these keys.
//                       fp8-dynamic-tensor (one device-side amax over the whole x) is run by
//                       cuda-mma only (act_key_is_fp8_mma); cuda-hopper declares act_key_is_fp8.
//   fp8-dynamic-group128 decode(code) in 16 bits and one scale per (token, 128-group): the scale
//                       varies along K, so it cannot wait for the epilogue; fp8_group_operand
//                       gives both and cuda-mma's GEMM applies the scales per 32-block in FP32
//                       (GemmArgs::x_group_scales). cuda-mma linear layers only.
//
// A backend wires it with two lines (the cuda-mma linear and MoE paths do exactly this):
//   bool declares_act_key(ActKey a) const override { return cuda::gemm16_runs_act_key(a); }
//   // in run, after the device pointer of x is known:
//   StreamBuffer xq(stream);
//   MXQ_RETURN_IF_ERROR(cuda::act_operand(p.act, p.act_rule, x, dtype, m, k, xq, &x, stream));
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/common/stream_workspace.h"
#include "mxq/problem.h"

namespace mxq::cuda {

// True for the keys act_operand computes exactly: bf16, fp16 and the MX keys.
constexpr bool gemm16_runs_act_key(ActKey a) {
  return a == ActKey::kBF16 || a == ActKey::kFP16 || act_key_mx_elem(a);
}

// A stream-ordered device buffer (cudaMallocAsync), freed on its stream on scope exit.
class StreamBuffer {
 public:
  explicit StreamBuffer(cudaStream_t s) : stream_(s) {}
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  ~StreamBuffer() {
    if (p_ != nullptr) {
      cudaFreeAsync(p_, stream_);
      note_device_free(bytes_);
    }
  }
  // Out of memory is a resource-exhausted Status naming `what` (device_memory.h).
  Status allocate(size_t bytes, const char* what = "a stream-ordered device buffer");
  void* get() const { return p_; }

 private:
  cudaStream_t stream_;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// *operand = x for bf16 / fp16; for an MX key, x [rows, k] (device memory, `dtype`, row-major
// contiguous) fake-quantized into `tmp` and *operand = tmp's memory. Any other key is an
// invalid-argument error naming it (backends do not declare those).
// `rule`: the MX keys' block scale rule (Problem::act_rule).
Status act_operand(ActKey key, ScaleRule rule, const void* x, DType dtype, int64_t rows, int64_t k,
                   StreamBuffer& tmp, const void** operand, cudaStream_t stream);

// The FP8 keys: x [rows, k] as E4M3 decode values in `tmp` (*operand) and the scale apart:
// *row_scale = per-row scales in `scales` (fp8-dynamic-token; fp8-dynamic-tensor: the one
// tensor scale in every entry, from fp8_tensor_act_quant, with its partial maxima after them in
// the same buffer) or null with the static input_scale to apply (fp8-static-tensor). Other keys
// are an invalid-argument error.
// act_key_is_fp8: the keys both CUDA backends run this way (static, per token);
// act_key_is_fp8_mma: those, fp8-dynamic-tensor and fp8-dynamic-group128 (fp8_group_operand,
// below), the keys cuda-mma runs.
constexpr bool act_key_is_fp8(ActKey a) {
  return a == ActKey::kFP8StaticTensor || a == ActKey::kFP8DynamicToken;
}
constexpr bool act_key_is_fp8_mma(ActKey a) {
  return act_key_is_fp8(a) || a == ActKey::kFP8DynamicTensor || a == ActKey::kFP8DynamicGroup128;
}
Status fp8_operand(ActKey key, const void* x, DType dtype, int64_t rows, int64_t k,
                   float input_scale, StreamBuffer& tmp, StreamBuffer& scales,
                   const void** operand, const float** row_scale, cudaStream_t stream);

// fp8-dynamic-group128: x [rows, k] as E4M3 decode values in `tmp` (*operand) and the scales
// [rows, ceil(k / 128)] FP32 in `scales` (*group_scales), for GemmArgs::x_group_scales.
Status fp8_group_operand(const void* x, DType dtype, int64_t rows, int64_t k, StreamBuffer& tmp,
                         StreamBuffer& scales, const void** operand, const float** group_scales,
                         cudaStream_t stream);

// In place: the rows of an intermediate activation [rows, k] (MoE: the gate/up output before
// the down GEMM) under an MX key; nothing for bf16 / fp16.
Status act_quantize_in_place(ActKey key, ScaleRule rule, void* a, DType dtype, int64_t rows,
                             int64_t k, cudaStream_t stream);

}  // namespace mxq::cuda
