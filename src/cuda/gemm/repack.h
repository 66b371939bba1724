// GPU repack of canonical MX weights (device memory) into the fragment layout (frag_layout.h),
// batched over experts: one launch for a whole [batch, N, K] tensor.
#pragma once

#include <cuda_runtime.h>

#include "cuda/gemm/frag_layout.h"

namespace mxq::cuda {

// `w` points to device memory; `packed` / `scales` receive FragLayout{w}.packed_bytes() /
// scale_bytes(). For E4M3, *nan_flag (device memory, may be null) is set to 1 when any code is
// a NaN (0x7F / 0xFF): the GEMM's decode has no NaN, so the caller must refuse such weights.
// Asynchronous on `stream`; allocates nothing.
Status repack_frag(const MXWeightView& w, uint8_t* packed, uint8_t* scales, int* nan_flag,
                   cudaStream_t stream);

}  // namespace mxq::cuda
