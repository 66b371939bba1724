// Activation MX quantize / dequantize on the GPU, bit-identical to the CPU core
// (include/mxq/quantize.h) for every element type, scale rule, rounding, saturation and input
// dtype; plus the fused SiLU-and-mul + quantize of an MLP's gate/up projection output.
//
// Every entry point takes device pointers and a stream, enqueues its kernels and returns: no
// allocation, no synchronization, no host<->device copy, so the calls can be captured into CUDA
// graphs. A returned error is either an argument error (nothing was enqueued) or the launch error
// that cudaGetLastError reported; errors inside a kernel surface at the caller's next sync.
//
// Layout: the canonical one of include/mxq/quantize.h. A row-major [rows, k] input becomes
// packed elements [rows, k * bits / 8] and E8M0 scales [rows, k / 32] (both row-major, rows
// contiguous). Kernels and their speed: docs/cuda.md, "Quantize kernels".
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mxq/formats.h"
#include "mxq/quantize.h"
#include "mxq/status.h"

namespace mxq::cuda {

// Quantizes `rows` rows of `k` values (F32 / BF16 / F16, row-major, contiguous) into `packed`
// [rows, packed_bytes(elem, kq)] and `scales` [rows, kq / 32], kq = quantized_k(k, opts.pad_k):
// the same bytes as mxq::quantize. opts.threads is ignored. k must be a multiple of 32 unless
// opts.pad_k (then each row is zero-padded to the next multiple, as on the CPU).
// Fast path: k % 32 == 0 and 16-byte aligned `in` and `packed` (8-byte for MXFP4, 4-byte for
// MXFP6); anything else runs a slower one-thread-per-block kernel with the same results.
Status quantize(const void* in, DType in_dtype, int64_t rows, int64_t k, const QuantOptions& opts,
                uint8_t* packed, uint8_t* scales, cudaStream_t stream);

// Dequantizes [rows, k] (k a multiple of 32) to `out_dtype`: the same bits as mxq::dequantize
// (x = element * 2^(scale-127) in FP32, rounded to nearest even for BF16 / F16; a NaN scale or
// NaN element gives the host's NaN patterns).
Status dequantize(const uint8_t* packed, const uint8_t* scales, ElemType elem, int64_t rows,
                  int64_t k, DType out_dtype, void* out, cudaStream_t stream);

// Where gate and up sit in a row of the fused gate_up projection output [rows, 2 * inter].
enum class GateUpLayout : uint8_t {
  kChunked,      // [g_0 .. g_{I-1}, u_0 .. u_{I-1}]: gate = first I columns, up = last I
  kInterleaved,  // [g_0, u_0, g_1, u_1, ...]: gpt-oss style
};

// Fused MLP activation + quantize:
//   h[r, j] = round_to_dtype(silu_mul_f32(g[r, j], u[r, j]))      (src/cuda/quant/silu.h)
//   packed, scales = quantize(h, dtype, rows, inter, opts)
// silu_mul_f32 is computed in FP32 with mxq's own exp (bit-identical on host and device), then
// rounded to nearest even to `dtype` (BF16 / F16; F32 is kept as is), exactly as if the
// activation had been written to memory in the input dtype and quantized by mxq::quantize.
// `inter` must be a multiple of 32 (opts.pad_k is not supported here); `gate_up`, `packed` must
// be 16-byte aligned (8 for MXFP4, 4 for MXFP6).
// No backend calls it today (the MoE layer quantizes its intermediate with mx_fake_quant), so its
// 108 kernels per architecture are compiled only with -DMXQ_CUDA_SILU_QUANT=ON; without it the
// arguments are still checked and a valid call returns kUnimplemented saying so.
Status silu_and_mul_quantize(const void* gate_up, DType dtype, int64_t rows, int64_t inter,
                             const QuantOptions& opts, uint8_t* packed, uint8_t* scales,
                             cudaStream_t stream,
                             GateUpLayout layout = GateUpLayout::kChunked);
// Whether this build has the fused kernels (MXQ_CUDA_SILU_QUANT): tests and benchmarks skip
// them with this reason otherwise.
bool silu_and_mul_quantize_built();

}  // namespace mxq::cuda
