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

Status predecode_fp8_cpu(const Fp8Layout& l, const uint8_t* chunks, int64_t nb_begin,
                         int64_t blocks, std::vector<uint8_t>& out) {
  if (l.batch != 1 || chunks == nullptr)
    return Status(StatusCode::kInvalidArgument,
                  "FP8 tiles: one matrix (batch 1) and its chunks, got batch " +
                      std::to_string(l.batch));
  if (nb_begin < 0 || blocks < 1 || nb_begin + blocks > l.n64())
    return Status(StatusCode::kInvalidArgument,
                  "FP8 tiles: row blocks [" + std::to_string(nb_begin) + ", " +
                      std::to_string(nb_begin + blocks) + ") outside the layout's " +
                      std::to_string(l.n64()));
  out.assign(size_t(blocks * l.k128() * kTileBytes), 0);
  for (int64_t nb = 0; nb < blocks; ++nb)
    for (int64_t ks = 0; ks < l.k128(); ++ks) {
      const uint8_t* chunk =
          chunks + size_t(((nb_begin + nb) * l.k128() + ks) * Fp8Layout::kChunkBytes);
      uint8_t* tile = out.data() + size_t((nb * l.k128() + ks) * kTileBytes);
      // As the consumer decodes (gemm_device.cuh, decode_fp8_chunk): per lane (g, t) of warp w,
      // k32 step and row half the operand word through its row's shift table.
      for (int w = 0; w < 4; ++w)
        for (int lane = 0; lane < 32; ++lane)
          for (int step = 0; step < 4; ++step)
            for (int half = 0; half < 2; ++half) {
              const int g = lane / 4, t = lane % 4, row = 16 * w + g + 8 * half;
              uint32_t word = 0;
              std::memcpy(&word, chunk + word_offset(w, lane, step, half), 4);
              const int d = int(chunk[index_offset(w, g, half, step)]) + kMinShift;
              uint32_t lo = 0, hi = 0;
              decode_word(word, shift_table(d), lo, hi);
              for (int j = 0; j < 4; ++j) {
                tile[tile_byte_offset(row, 32 * step + 4 * t + j)] = uint8_t(lo >> (8 * j));
                tile[tile_byte_offset(row, 32 * step + 16 + 4 * t + j)] = uint8_t(hi >> (8 * j));
              }
            }
    }
  return Status::Ok();
}

}  // namespace mxq::cuda::hopper::fp8
