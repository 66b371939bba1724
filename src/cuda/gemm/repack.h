// GPU repack of canonical MX weights (device memory) into the fragment layout (frag_layout.h),
// batched over experts: one launch for a whole [batch, N, K] tensor.
#pragma once

#include <cuda_runtime.h>

#include "cuda/gemm/frag_layout.h"

namespace mxq::cuda {

// What the repack saw, for the caller's checks and the GEMM's path choice (device memory;
// initialise to {0, 255, 0} before the launch).
struct RepackStats {
  int nan = 0;          // 1 when an E4M3 code is a NaN (0x7F / 0xFF): the GEMM's decode has no
                        // NaN, so the caller must refuse such weights
  int scale_min = 255;  // smallest and largest E8M0 scale code
  int scale_max = 0;
};

// `w` points to device memory; `packed` / `scales` receive FragLayout{w}.packed_bytes() /
// scale_bytes(); `stats` (device memory, may be null) is updated. Asynchronous on `stream`;
// allocates nothing.
Status repack_frag(const FragSource& w, uint8_t* packed, uint8_t* scales, RepackStats* stats,
                   cudaStream_t stream);
inline Status repack_frag(const MXWeightView& w, uint8_t* packed, uint8_t* scales,
                          RepackStats* stats, cudaStream_t stream) {
  return repack_frag(FragSource::plain(w), packed, scales, stats, stream);
}

}  // namespace mxq::cuda
