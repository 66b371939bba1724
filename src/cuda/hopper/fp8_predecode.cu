// The FP8 pre-pass (fp8_predecode.h).
#include "cuda/hopper/fp8_predecode.h"

#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/pdl.h"
#include "cuda/hopper/fp8_operand.h"
#include "cuda/hopper/gemm_device.cuh"  // decode_fp8_chunk
#include "cuda/hopper/sm90_ptx.cuh"

namespace mxq::cuda::hopper::fp8 {
namespace {

__global__ void __launch_bounds__(128)
    predecode_fp8_kernel(const uint8_t* __restrict__ chunks, int64_t k128,
                         uint8_t* __restrict__ tiles) {
  __shared__ alignas(16) uint8_t chunk[Fp8Layout::kChunkBytes];
  __shared__ alignas(16) uint32_t tables[2 * kShifts];
  __shared__ alignas(1024) uint8_t tile[kTileBytes];
  pdl::launch_dependents();
  const int tid = int(threadIdx.x), warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t c = int64_t(blockIdx.y) * k128 + int64_t(blockIdx.x);  // (block, k128 step)
  const uint4* src = reinterpret_cast<const uint4*>(chunks + c * Fp8Layout::kChunkBytes);
  for (int i = tid; i < Fp8Layout::kChunkBytes / 16; i += 128)
    reinterpret_cast<uint4*>(chunk)[i] = __ldg(src + i);  // weights: written by no kernel
  if (tid < kShifts) {
    const ShiftTable tab = shift_table(kMinShift + tid);
    tables[2 * tid] = tab.lo;
    tables[2 * tid + 1] = tab.hi;
  }
  __syncthreads();
  uint32_t a[4][4];
  decode_fp8_chunk(sm90::smem_addr(chunk), sm90::smem_addr(tables), warp, lane, a);
  // Register r of k32 step k (fp8_operand.h): row 16 warp + g + 8 (r & 1), k 32 k + 16 (r >> 1)
  // + 4 t + byte: at tile_byte_offset, 32 distinct banks per store (the row's swizzle).
  const uint32_t lane_tile = sm90::smem_addr(tile) + uint32_t((16 * warp + g) * 128 + 4 * t);
#pragma unroll
  for (int k = 0; k < 4; ++k)
#pragma unroll
    for (int r = 0; r < 4; ++r)
      sm90::sts_u32(lane_tile + uint32_t((r & 1) * 8 * 128 + (((2 * k + (r >> 1)) ^ g) << 4)),
                    a[k][r]);
  __syncthreads();
  pdl::wait();  // the tiles' buffer may still be read by the kernel before (the last GEMM)
  uint4* dst = reinterpret_cast<uint4*>(tiles + c * kTileBytes);
  for (int i = tid; i < kTileBytes / 16; i += 128) dst[i] = reinterpret_cast<const uint4*>(tile)[i];
}

}  // namespace

Status predecode_fp8(const Fp8Layout& l, const uint8_t* chunks, int64_t nb_begin, int64_t blocks,
                     uint8_t* tiles, cudaStream_t stream) {
  if (l.batch != 1 || nb_begin < 0 || blocks < 1 || nb_begin + blocks > l.n64() ||
      blocks > 65535 || l.k128() > 0x7FFFFFFF)
    return Status(StatusCode::kInvalidArgument,
                  "FP8 tiles: row blocks [" + std::to_string(nb_begin) + ", " +
                      std::to_string(nb_begin + blocks) + ") of a layout of " +
                      std::to_string(l.n64()) + " (batch " + std::to_string(l.batch) +
                      ", at most 65535 blocks per call)");
  if (chunks == nullptr || tiles == nullptr)
    return Status(StatusCode::kInvalidArgument, "FP8 tiles: null chunks or tiles");
  const uint8_t* first = chunks + size_t(nb_begin) * size_t(l.k128()) * Fp8Layout::kChunkBytes;
  MXQ_CUDA_TRY(pdl::launch(predecode_fp8_kernel, dim3(unsigned(l.k128()), unsigned(blocks)),
                           dim3(128), 0, stream, first, l.k128(), tiles));
  return Status::Ok();
}

}  // namespace mxq::cuda::hopper::fp8
