// The cuda-hopper GEMM (sm_90a): y[M, N] = x[M, K] . dequant(W[N, K])^T (+ bias), MX weights
// (E2M1 / E4M3 + E8M0) in the hopper layout (layout.h), BF16 / FP16 activations, FP32
// accumulation, BF16 / FP16 / F32 output. Host interface of gemm.cu; the kernel is
// gemm_kernel.cuh, the launch decision gemm_config.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/gemm/repack.h"  // RepackStats
#include "cuda/hopper/gemm_config.h"
#include "cuda/hopper/layout.h"
#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::cuda::hopper {

// GPU repack of canonical weights (device memory) into the hopper layout: `out` gets
// hopper_layout(w).bytes(); `stats` (device memory, initialised to {0, 255, 0}) may be null.
// Asynchronous on `stream`, allocates nothing.
Status repack_hopper(const FragSource& w, uint8_t* out, RepackStats* stats, cudaStream_t stream);

struct HopperGemmArgs {
  ElemType elem = ElemType::kE2M1;  // weight elements (E2M1 or E4M3)
  DType act = DType::kBF16;         // x dtype: BF16 or F16
  DType out = DType::kBF16;         // y dtype: BF16, F16 or F32
  const uint8_t* w = nullptr;       // hopper layout (device)
  const float* bias = nullptr;      // [N] FP32 (device) or null
  const void* x = nullptr;          // [M, K], row stride ldx elements (16-byte aligned, ldx % 8 == 0)
  void* y = nullptr;                // [M, N], row stride ldy elements
  int64_t m = 0, n = 0, k = 0, ldx = 0, ldy = 0;
};

// The launch a problem gets on the current device (tile, stages, split, persistent grid).
StatusOr<HopperGemmConfig> choose_hopper_config(const HopperGemmArgs& a);

// Checks the arguments, chooses the config and launches on `stream`. Asynchronous, allocates
// nothing, no host synchronisation: safe inside CUDA graph capture. `ran` (optional) receives
// the config that was launched. The weights' scale codes must lie in
// scale_in_weights_range(elem, act) (the backend checks at prepare).
Status hopper_gemm(const HopperGemmArgs& a, cudaStream_t stream, HopperGemmConfig* ran = nullptr);

}  // namespace mxq::cuda::hopper
