// What a weight repack records while it writes (RepackStats, repack.h): E4M3 NaN codes and
// the E8M0 scale-code range, reduced per warp before one atomic each. Shared by the cuda-mma
// (gemm/repack.cu) and cuda-hopper (hopper/repack.cu) repacks.
#pragma once

#include <cstdint>

#include "cuda/gemm/repack.h"

namespace mxq::cuda {

// True when one of the 4 E4M3 codes of `w` is a NaN (0x7F / 0xFF).
__device__ __forceinline__ bool e4m3_word_has_nan(uint32_t w) {
  bool nan = false;
  for (int j = 0; j < 4; ++j) nan |= ((w >> (8 * j)) & 0x7F) == 0x7F;
  return nan;
}

// Called by every lane of a warp (all 32 active) with its scale word and NaN flag.
__device__ __forceinline__ void record_repack_stats(RepackStats* stats, uint32_t scale_word,
                                                    bool nan) {
  if (stats == nullptr) return;
  if (nan) atomicOr(&stats->nan, 1);
  int lo = 255, hi = 0;
  for (int j = 0; j < 4; ++j) {
    const int c = int((scale_word >> (8 * j)) & 0xFF);
    lo = min(lo, c);
    hi = max(hi, c);
  }
  for (int off = 16; off > 0; off >>= 1) {  // the warp's extremes first
    lo = min(lo, __shfl_xor_sync(__activemask(), lo, off));
    hi = max(hi, __shfl_xor_sync(__activemask(), hi, off));
  }
  if ((threadIdx.x & 31) == 0) {
    atomicMin(&stats->scale_min, lo);
    atomicMax(&stats->scale_max, hi);
  }
}

}  // namespace mxq::cuda
