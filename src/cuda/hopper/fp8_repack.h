// GPU repack of canonical MXFP4 weights into the FP8 path's layout (fp8_layout.h): the same bytes
// as repack_fp8_cpu, the definition it is tested against (HopperRepack.Fp8GpuEqualsCpuDefinition).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/hopper/fp8_layout.h"
#include "mxq/status.h"
#include "mxq/views.h"

namespace mxq::cuda::hopper::fp8 {

// The value `first_bad` starts at: no block outside the fold range.
inline constexpr unsigned long long kNoBadBlock = ~0ull;

// `w` (device memory): E2M1, N % 16 == 0, K % 32 == 0. `row_bases` (device, batch * n: each
// row's base, fp8_fold_stats); `out` (device) gets Fp8Layout{batch, n, k}.bytes(), `bases`
// (device) batch * n_pad entries (padding rows 127). `first_bad` (device, initialised to
// kNoBadBlock) receives the smallest row * (K / 32) + block of a nonzero block whose scale lies
// outside [base + kMinShift, base + kMaxShift]; the layout is invalid unless it stays
// kNoBadBlock (fold_error tells the row and block). One block of 256 threads per chunk, one
// thread per (warp, group, row half, k32 step). Asynchronous on `stream`, allocates nothing.
Status repack_fp8(const MXWeightView& w, const int32_t* row_bases, uint8_t* out, int32_t* bases,
                  unsigned long long* first_bad, cudaStream_t stream);

// The error for a `first_bad` read back after the repack (OK for kNoBadBlock).
Status fold_error(const MXWeightView& w, unsigned long long first_bad);

}  // namespace mxq::cuda::hopper::fp8
