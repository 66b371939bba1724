// The FP8 path's pre-pass at large M (issue 17; gemm_config.h has_fp8_tiles): the FP8 layout's
// chunks of a range of 64-row blocks decoded once into E4M3 tiles (fp8_layout.h, "The
// pre-decoded tiles": the register decode's bytes in the order of a 128-byte-swizzled
// shared-memory wgmma operand), so that the GEMM (hopper_fp8_gemm) copies the tiles into its
// ring and runs shared-memory wgmma with no decode. Equal byte for byte to predecode_fp8_cpu
// (HopperRepack.Fp8TilesGpuEqualsCpuDefinition).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/hopper/fp8_layout.h"
#include "cuda/hopper/gemm_config.h"
#include "mxq/status.h"

namespace mxq::cuda::hopper::fp8 {

static_assert(kTileBytes == kFp8TileBytes, "the GEMM's ring holds tiles of this size");

// The workspace bytes of `blocks` row blocks of a layout of k128 steps.
constexpr size_t tiles_bytes(int64_t blocks, int64_t k128) {
  return size_t(blocks) * size_t(k128) * size_t(kTileBytes);
}

// Row blocks [nb_begin, nb_begin + blocks) of `l` (batch 1; `chunks`: its l.bytes(), device)
// into `tiles` (device, tiles_bytes(blocks, l.k128())). One CTA of 128 threads per chunk: the
// chunk and the shift tables into shared memory, the consumer's register decode
// (decode_fp8_chunk), the bytes stored to a swizzled shared tile and written out with 16-byte
// stores. Launched with programmatic dependent launch (common/pdl.h): it reads only the
// weights before its wait and stores after it. Asynchronous on `stream`, allocates nothing.
Status predecode_fp8(const Fp8Layout& l, const uint8_t* chunks, int64_t nb_begin, int64_t blocks,
                     uint8_t* tiles, cudaStream_t stream);

}  // namespace mxq::cuda::hopper::fp8
