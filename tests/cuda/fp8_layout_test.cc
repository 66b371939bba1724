// The FP8 path's weight layout (src/cuda/hopper/fp8_layout.h) on the CPU: chunks read the way the
// consumer will (two operand words and two table indices per lane and k32 step, decoded by
// fp8_operand.h into the wgmma A fragment) give, times the row's 2^(base - 127), exactly the
// reference's dequantized weights; padding gives zeros; rows that do not fold are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "contract/fp8_fold.h"
#include "cuda/hopper/fp8_layout.h"
#include "cuda/hopper/fp8_operand.h"
#include "mxq/numerics.h"

namespace mxq {
namespace {

namespace fp8 = cuda::hopper::fp8;

struct Weights {
  int64_t batch, n, k;
  std::vector<uint8_t> packed, scales;
  MXWeightView view() const { return {ElemType::kE2M1, batch, n, k, packed.data(), scales.data()}; }
  uint8_t code(int64_t r, int64_t c) const { return (packed[size_t(r * k / 2 + c / 2)] >> (4 * (c % 2))) & 15u; }
  float value(int64_t r, int64_t c) const {
    return num::dequantize_elem(ElemType::kE2M1, code(r, c), scales[size_t(r * (k / 32) + c / 32)]);
  }
};

// Random codes; per row a base scale code and blocks spread over `span` binades around it;
// every fifth block all zero with scale code 0 (the quantizer's zero blocks).
Weights random_weights(int64_t batch, int64_t n, int64_t k, int span, uint32_t seed) {
  std::mt19937 rng(seed);
  Weights w{batch, n, k, std::vector<uint8_t>(size_t(batch * n * k / 2)),
            std::vector<uint8_t>(size_t(batch * n * k / 32))};
  for (auto& b : w.packed) b = uint8_t(rng());
  for (int64_t r = 0; r < batch * n; ++r) {
    const int base = 100 + int(rng() % 40);
    for (int64_t blk = 0; blk < k / 32; ++blk) {
      uint8_t& s = w.scales[size_t(r * (k / 32) + blk)];
      s = uint8_t(base + int(rng() % uint32_t(span + 1)));
      if ((r + blk) % 5 == 0) {
        std::memset(&w.packed[size_t(r * k / 2 + blk * 16)], (r % 2) ? 0x88 : 0x00, 16);  // +-0
        s = 0;
      }
    }
  }
  return w;
}

void check_layout(const Weights& w) {
  std::vector<int32_t> row_bases(size_t(w.batch * w.n));
  auto st = contract::fp8_fold_stats(w.view(), row_bases.data());
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  ASSERT_EQ(st.value().folded, st.value().rows) << st.value().summary();
  std::vector<uint8_t> chunks;
  std::vector<int32_t> bases;
  auto l = fp8::repack_fp8_cpu(w.view(), row_bases.data(), chunks, bases);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  const fp8::Fp8Layout& L = l.value();
  ASSERT_EQ(chunks.size(), L.bytes());
  int64_t checked = 0, nonzero = 0;
  for (int64_t b = 0; b < L.batch; ++b)
    for (int64_t nb = 0; nb < L.n64(); ++nb)
      for (int64_t ks = 0; ks < L.k128(); ++ks) {
        const uint8_t* chunk = chunks.data() + ((b * L.n64() + nb) * L.k128() + ks) * fp8::Fp8Layout::kChunkBytes;
        for (int warp = 0; warp < 4; ++warp)
          for (int lane = 0; lane < 32; ++lane)
            for (int s = 0; s < 4; ++s) {
              uint32_t reg[4];
              for (int half = 0; half < 2; ++half) {
                uint32_t word = 0;
                std::memcpy(&word, chunk + fp8::word_offset(warp, lane, s, half), 4);
                const int index = chunk[fp8::index_offset(warp, lane / 4, half, s)];
                ASSERT_LT(index, fp8::kShifts);
                fp8::decode_word(word, fp8::shift_table(index + fp8::kMinShift), reg[half], reg[2 + half]);
              }
              for (int r = 0; r < 4; ++r)
                for (int byte = 0; byte < 4; ++byte) {
                  const fp8::RowK e = fp8::fragment_element(warp, lane, r, byte);
                  const int64_t row = nb * 64 + e.row, col = ks * 128 + s * 32 + e.k;
                  const int32_t base = bases[size_t(b * L.n_pad() + row)];
                  const float got = num::decode_elem(ElemType::kE4M3, uint8_t(reg[r] >> (8 * byte))) *
                                    std::ldexp(1.0f, base - 127);
                  const float want = (row < w.n && col < w.k) ? w.value(b * w.n + row, col) : 0.0f;
                  ASSERT_EQ(got, want) << "batch " << b << " row " << row << " k " << col;
                  ASSERT_EQ(std::signbit(got), std::signbit(want)) << "row " << row << " k " << col;
                  ++checked;
                  nonzero += want != 0.0f;
                }
            }
      }
  EXPECT_EQ(checked, L.batch * L.n_pad() * L.k128() * 128);
  EXPECT_GT(nonzero, 0);
}

TEST(Fp8Layout, ChunksDecodeToTheReferenceWeights) {
  check_layout(random_weights(1, 128, 256, 14, 1));   // the widest span that folds
  check_layout(random_weights(1, 80, 96, 6, 2));      // rows and K padded
  check_layout(random_weights(2, 256, 2880, 10, 3));  // 2880 = 22.5 k128 steps, a batch of 2
}

TEST(Fp8Layout, RowsThatDoNotFoldAreRefusedByName) {
  Weights w = random_weights(1, 16, 64, 2, 4);
  std::vector<int32_t> bases(16);
  ASSERT_TRUE(contract::fp8_fold_stats(w.view(), bases.data()).ok());
  bases[3] -= 20;  // row 3's blocks now sit 20+ binades above its base
  std::vector<uint8_t> chunks;
  std::vector<int32_t> out;
  auto l = fp8::repack_fp8_cpu(w.view(), bases.data(), chunks, out);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().to_string().find("row 3 block"), std::string::npos) << l.status().to_string();
  EXPECT_NE(l.status().to_string().find("does not fold"), std::string::npos) << l.status().to_string();
  w.k = 48;  // not a multiple of 32: named
  auto bad = fp8::repack_fp8_cpu(w.view(), bases.data(), chunks, out);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().to_string().find("K 48"), std::string::npos) << bad.status().to_string();
}

// The pre-decoded tiles (fp8_layout.h, "The pre-decoded tiles"; the GPU pre-pass is tested
// against predecode_fp8_cpu on the GPU): read at tile_byte_offset and times the row's
// 2^(base - 127), every byte is the reference's dequantized weight (zero past N and K), for the
// whole layer and for a range of row blocks (which must equal the whole layer's tiles there).
void check_tiles(const Weights& w, int64_t nb_begin, int64_t blocks) {
  std::vector<int32_t> row_bases(size_t(w.n));
  ASSERT_TRUE(contract::fp8_fold_stats(w.view(), row_bases.data()).ok());
  std::vector<uint8_t> chunks, tiles, all;
  std::vector<int32_t> bases;
  auto l = fp8::repack_fp8_cpu(w.view(), row_bases.data(), chunks, bases);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  const fp8::Fp8Layout& L = l.value();
  ASSERT_TRUE(fp8::predecode_fp8_cpu(L, chunks.data(), nb_begin, blocks, tiles).ok());
  ASSERT_EQ(tiles.size(), size_t(blocks * L.k128() * fp8::kTileBytes));
  int64_t nonzero = 0;
  for (int64_t nb = 0; nb < blocks; ++nb)
    for (int64_t ks = 0; ks < L.k128(); ++ks) {
      const uint8_t* tile = tiles.data() + (nb * L.k128() + ks) * fp8::kTileBytes;
      for (int r = 0; r < 64; ++r)
        for (int k = 0; k < 128; ++k) {
          const int64_t row = (nb_begin + nb) * 64 + r, col = ks * 128 + k;
          const float got = num::decode_elem(ElemType::kE4M3, tile[fp8::tile_byte_offset(r, k)]) *
                            std::ldexp(1.0f, bases[size_t(row)] - 127);
          const float want = (row < w.n && col < w.k) ? w.value(row, col) : 0.0f;
          ASSERT_EQ(got, want) << "row " << row << " k " << col;
          ASSERT_EQ(std::signbit(got), std::signbit(want)) << "row " << row << " k " << col;
          nonzero += want != 0.0f;
        }
    }
  EXPECT_GT(nonzero, 0);
  ASSERT_TRUE(fp8::predecode_fp8_cpu(L, chunks.data(), 0, L.n64(), all).ok());
  EXPECT_EQ(0, std::memcmp(tiles.data(), all.data() + nb_begin * L.k128() * fp8::kTileBytes,
                           tiles.size()));
}

TEST(Fp8Layout, TilesDecodeToTheReferenceWeights) {
  // The swizzle: 16-byte chunk j of row r at (j ^ (r % 8)) * 16, a permutation of each row.
  EXPECT_EQ(fp8::tile_byte_offset(0, 17), 17);
  EXPECT_EQ(fp8::tile_byte_offset(1, 0), 128 + 16);
  EXPECT_EQ(fp8::tile_byte_offset(9, 16), 9 * 128 + 0);
  EXPECT_EQ(fp8::tile_byte_offset(63, 127), 63 * 128 + (7 ^ 7) * 16 + 15);
  check_tiles(random_weights(1, 128, 256, 14, 11), 0, 2);
  check_tiles(random_weights(1, 80, 96, 6, 12), 0, 2);      // rows and K padded
  check_tiles(random_weights(1, 400, 2880, 10, 13), 2, 6);  // K = 2880, a range of blocks
  Weights w = random_weights(1, 128, 128, 4, 14);
  std::vector<int32_t> rb(128);
  ASSERT_TRUE(contract::fp8_fold_stats(w.view(), rb.data()).ok());
  std::vector<uint8_t> chunks, tiles;
  std::vector<int32_t> bases;
  auto l = fp8::repack_fp8_cpu(w.view(), rb.data(), chunks, bases);
  ASSERT_TRUE(l.ok());
  const Status bad = fp8::predecode_fp8_cpu(l.value(), chunks.data(), 1, 2, tiles);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.to_string().find("[1, 3)"), std::string::npos) << bad.to_string();
}

}  // namespace
}  // namespace mxq
