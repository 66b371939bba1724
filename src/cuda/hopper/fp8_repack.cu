// The FP8 layout's GPU repack (fp8_repack.h). Prepare-time code: byte loads, no tuning.
#include "cuda/hopper/fp8_repack.h"

#include <string>

#include "cuda/hopper/fp8_operand.h"
#include "mxq/formats.h"

namespace mxq::cuda::hopper::fp8 {
namespace {

__global__ void __launch_bounds__(256)
    repack_fp8_kernel(const uint8_t* __restrict__ packed, const uint8_t* __restrict__ scales,
                      const int32_t* __restrict__ row_bases, Fp8Layout l, uint8_t* __restrict__ out,
                      int32_t* __restrict__ bases, unsigned long long* first_bad) {
  const int64_t c = blockIdx.x;  // the chunk (b, nb, ks), as fp8_layout.h orders them
  const int64_t ks = c % l.k128(), nb = (c / l.k128()) % l.n64(), b = c / (l.k128() * l.n64());
  const int tid = int(threadIdx.x);
  const int s = tid & 3, half = (tid >> 2) & 1, g = (tid >> 3) & 7, warp = tid >> 6;
  const int64_t row = nb * 64 + 16 * warp + g + 8 * half, blk = ks * 4 + s, kb = l.k / 32;
  uint8_t codes[32] = {};
  int index = -kMinShift;  // d = 0: zero and padding blocks
  if (row < l.n && blk < kb) {
    const int64_t r = b * l.n + row;
    const uint8_t* p = packed + r * (l.k / 2) + blk * 16;
    bool nonzero = false;
    for (int i = 0; i < 16; ++i) {
      const uint8_t v = p[i];
      codes[2 * i] = uint8_t(v & 15u);
      codes[2 * i + 1] = uint8_t(v >> 4);
      nonzero |= (v & 0x77u) != 0;  // a magnitude bit in either code (+-0 are zero)
    }
    if (nonzero) {
      const int d = int(scales[r * kb + blk]) - row_bases[r];
      if (d < kMinShift || d > kMaxShift)
        atomicMin(first_bad, static_cast<unsigned long long>(r * kb + blk));
      else
        index = d - kMinShift;
    }
    if (ks == 0 && s == 0) bases[b * l.n_pad() + row] = row_bases[r];
  } else if (ks == 0 && s == 0 && row >= l.n) {
    bases[b * l.n_pad() + row] = 127;  // padding rows: 2^0
  }
  uint8_t* chunk = out + c * Fp8Layout::kChunkBytes;
  chunk[index_offset(warp, g, half, s)] = uint8_t(index);
  for (int t = 0; t < 4; ++t)
    *reinterpret_cast<uint32_t*>(chunk + word_offset(warp, 4 * g + t, s, half)) = operand_word(codes, t);
}

}  // namespace

Status repack_fp8(const MXWeightView& w, const int32_t* row_bases, uint8_t* out, int32_t* bases,
                  unsigned long long* first_bad, cudaStream_t stream) {
  if (w.elem != ElemType::kE2M1)
    return Status(StatusCode::kUnimplemented,
                  std::string("FP8 layout: MXFP4 (E2M1) weights only, got ") + elem_type_name(w.elem));
  if (w.batch < 1 || w.n < 16 || w.n % 16 != 0 || w.k < 32 || w.k % 32 != 0)
    return Status(StatusCode::kInvalidArgument,
                  "FP8 layout: need batch >= 1, N a multiple of 16 and K a multiple of 32, got batch " +
                      std::to_string(w.batch) + " N " + std::to_string(w.n) + " K " + std::to_string(w.k));
  if (w.packed == nullptr || w.scales == nullptr || row_bases == nullptr || out == nullptr ||
      bases == nullptr || first_bad == nullptr)
    return Status(StatusCode::kInvalidArgument, "FP8 repack: null device pointer");
  const Fp8Layout l{w.batch, w.n, w.k};
  if (l.chunks() > int64_t(0x7FFFFFFF))
    return Status(StatusCode::kInvalidArgument, "FP8 repack: " + std::to_string(l.chunks()) +
                                                    " chunks exceed one grid dimension");
  repack_fp8_kernel<<<unsigned(l.chunks()), 256, 0, stream>>>(w.packed, w.scales, row_bases, l, out,
                                                               bases, first_bad);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return Status(StatusCode::kInternal, std::string("FP8 repack launch: ") + cudaGetErrorString(e));
  return Status();
}

Status fold_error(const MXWeightView& w, unsigned long long first_bad) {
  if (first_bad == kNoBadBlock) return Status();
  const int64_t kb = w.k / 32, r = int64_t(first_bad) / kb, blk = int64_t(first_bad) % kb;
  return Status(StatusCode::kInvalidArgument,
                "FP8 layout: row " + std::to_string(r) + " block " + std::to_string(blk) +
                    ": its scale is outside [" + std::to_string(kMinShift) + ", " +
                    std::to_string(kMaxShift) + "] binades of the row's base (the row does not "
                    "fold: fp8_fold.h)");
}

}  // namespace mxq::cuda::hopper::fp8
