#include "cuda/hopper/fp8_layout.h"

#include <cstring>
#include <string>

#include "cuda/hopper/fp8_operand.h"
#include "mxq/formats.h"

namespace mxq::cuda::hopper::fp8 {

StatusOr<Fp8Layout> repack_fp8_cpu(const MXWeightView& w, const int32_t* row_bases,
                                   std::vector<uint8_t>& out, std::vector<int32_t>& bases) {
  if (w.elem != ElemType::kE2M1)
    return Status(StatusCode::kUnimplemented,
                  std::string("FP8 layout: MXFP4 (E2M1) weights only, got ") + elem_type_name(w.elem));
  if (w.batch < 1 || w.n < 16 || w.n % 16 != 0 || w.k < 32 || w.k % 32 != 0)
    return Status(StatusCode::kInvalidArgument,
                  "FP8 layout: need batch >= 1, N a multiple of 16 and K a multiple of 32, got batch " +
                      std::to_string(w.batch) + " N " + std::to_string(w.n) + " K " + std::to_string(w.k));
  if (w.packed == nullptr || w.scales == nullptr || row_bases == nullptr)
    return Status(StatusCode::kInvalidArgument, "FP8 layout: null weights, scales or row bases");
  const Fp8Layout l{w.batch, w.n, w.k};
  out.assign(l.bytes(), 0);
  bases.assign(size_t(l.batch * l.n_pad()), 127);
  const int64_t kb = w.k / 32, row_bytes = w.k / 2;
  uint8_t codes[32];
  for (int64_t b = 0; b < l.batch; ++b)
    for (int64_t nb = 0; nb < l.n64(); ++nb)
      for (int64_t ks = 0; ks < l.k128(); ++ks) {
        uint8_t* chunk = out.data() + size_t(((b * l.n64() + nb) * l.k128() + ks) * Fp8Layout::kChunkBytes);
        for (int warp = 0; warp < 4; ++warp)
          for (int g = 0; g < 8; ++g)
            for (int half = 0; half < 2; ++half) {
              const int64_t row = nb * 64 + 16 * warp + g + 8 * half;
              for (int s = 0; s < 4; ++s) {
                const int64_t blk = ks * 4 + s;  // the k32 block
                int index = -kMinShift;          // d = 0
                std::memset(codes, 0, sizeof(codes));
                if (row < w.n && blk < kb) {
                  const int64_t r = b * w.n + row;
                  const uint8_t* p = w.packed + r * row_bytes + blk * 16;
                  bool nonzero = false;
                  for (int k = 0; k < 32; ++k) {
                    codes[k] = uint8_t((p[k / 2] >> (4 * (k % 2))) & 15u);
                    nonzero |= (codes[k] & 7u) != 0;
                  }
                  if (nonzero) {
                    const int d = int(w.scales[r * kb + blk]) - row_bases[r];
                    if (d < kMinShift || d > kMaxShift)
                      return Status(StatusCode::kInvalidArgument,
                                    "FP8 layout: row " + std::to_string(r) + " block " +
                                        std::to_string(blk) + ": scale code " +
                                        std::to_string(w.scales[r * kb + blk]) + " is " +
                                        std::to_string(d) + " binades from the row's base " +
                                        std::to_string(row_bases[r]) + ", outside [" +
                                        std::to_string(kMinShift) + ", " + std::to_string(kMaxShift) +
                                        "] (the row does not fold: fp8_fold.h)");
                    index = d - kMinShift;
                  }
                  if (ks == 0 && s == 0) bases[size_t(b * l.n_pad() + row)] = row_bases[r];
                }
                chunk[index_offset(warp, g, half, s)] = uint8_t(index);
                for (int t = 0; t < 4; ++t) {
                  const uint32_t word = operand_word(codes, t);
                  std::memcpy(chunk + word_offset(warp, 4 * g + t, s, half), &word, 4);
                }
              }
            }
      }
  return l;
}

}  // namespace mxq::cuda::hopper::fp8
