// The cuda-hopper GEMM's TMA tensor maps (host code): the activation boxes its producer loads
// and the output boxes its TMA epilogue stores. Box shapes come from gemm_config.h, the same
// constants the kernel (gemm_kernel.cuh) sizes its shared-memory tiles with.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::cuda::hopper {

// The activations [rows, k] (row stride ldx elements) in boxes of box_rows(nt) x 64 K with the
// 128-byte swizzle; rows past `rows` and K past `k` read zeros.
// fp8: E4M3 codes (bytes; row stride ldx bytes) in boxes of box_rows(nt) x 128 K: the same
// 128-byte rows.
StatusOr<CUtensorMap> activation_map(const void* x, DType act, int64_t rows, int64_t k, int64_t ldx,
                                     int nt, bool fp8 = false);

// The dense output [rows, n] (row stride ldy elements, 16-bit) in boxes of
// epilogue_rows(nt) tokens x 64 columns with the 128-byte swizzle, as the epilogue's
// shared-memory tiles are written (gemm_kernel.cuh); rows past `rows`, columns past `n` are not
// stored.
StatusOr<CUtensorMap> output_map(void* y, DType out, int64_t rows, int64_t n, int64_t ldy, int nt);

}  // namespace mxq::cuda::hopper
