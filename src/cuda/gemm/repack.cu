#include "cuda/common/cuda_check.h"
#include "cuda/gemm/frag_word.h"
#include "cuda/gemm/repack.h"
#include "cuda/gemm/repack_stats.cuh"

namespace mxq::cuda {
namespace {

// One thread per (tile, lane): computes the lane's words with the same functions as the CPU
// definition and writes them with 16-byte stores.
template <bool kFp4>
__global__ void repack_kernel(frag::Source src, int64_t n16, int64_t k64, int64_t tiles,
                              uint8_t* packed, uint8_t* scales, RepackStats* stats) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= tiles * 32) return;
  const int lane = int(i % 32);
  const int64_t tile = i / 32;
  const int64_t tk = tile % k64, tn = (tile / k64) % n16, b = tile / (k64 * n16);
  bool stats_nan = false;
  if constexpr (kFp4) {
    uint4 v;
    v.x = frag::fp4_word(src, b, tn, tk, lane, 0);
    v.y = frag::fp4_word(src, b, tn, tk, lane, 1);
    v.z = frag::fp4_word(src, b, tn, tk, lane, 2);
    v.w = frag::fp4_word(src, b, tn, tk, lane, 3);
    reinterpret_cast<uint4*>(packed)[i] = v;
  } else {
    uint32_t w[8];
    bool nan = false;
    for (int s = 0; s < 4; ++s)
      for (int h = 0; h < 2; ++h) {
        w[2 * s + h] = frag::fp8_word(src, b, tn, tk, lane, s, h);
        nan |= e4m3_word_has_nan(w[2 * s + h]);
      }
    stats_nan = nan;
    reinterpret_cast<uint4*>(packed)[2 * i] = make_uint4(w[0], w[1], w[2], w[3]);
    reinterpret_cast<uint4*>(packed)[2 * i + 1] = make_uint4(w[4], w[5], w[6], w[7]);
  }
  const uint32_t sw = frag::scale_word(src, b, tn, tk, lane);
  if (lane % 4 == 0) reinterpret_cast<uint32_t*>(scales)[frag::scale_word_index(tile, lane)] = sw;
  record_repack_stats(stats, sw, stats_nan);
}

}  // namespace

Status repack_frag(const FragSource& fs, uint8_t* packed, uint8_t* scales, RepackStats* stats,
                   cudaStream_t stream) {
  if (Status s = check_frag_layout(fs); !s.ok()) return s;
  const MXWeightView& w = fs.w;
  const FragLayout l = fs.layout();
  const frag::Source src = fs.source();
  const int64_t threads = l.tiles() * 32;
  const int block = 256;
  const auto grid = static_cast<unsigned>((threads + block - 1) / block);
  if (w.elem == ElemType::kE2M1)
    repack_kernel<true><<<grid, block, 0, stream>>>(src, l.n16(), l.k64(), l.tiles(), packed,
                                                    scales, stats);
  else
    repack_kernel<false><<<grid, block, 0, stream>>>(src, l.n16(), l.k64(), l.tiles(), packed,
                                                     scales, stats);
  MXQ_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

}  // namespace mxq::cuda
