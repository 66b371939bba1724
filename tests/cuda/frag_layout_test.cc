// The cuda-mma fragment layout on the CPU (runs everywhere, no GPU): the repack, read back
// through a bit-exact emulation of the kernel's in-register decode, gives every weight element
// in the MMA fragment slot the kernel assumes. A wrong nibble order or shift fails here before
// any GPU sees it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/gemm/frag_layout.h"
#include "cuda/hopper/layout.h"
#include "cuda/hopper/layout_word.h"
#include "mxq/numerics.h"
#include "test_weights.h"

namespace mxq::cuda {
namespace {

float bf16_bits_to_f32(uint32_t h) { return num::bf16_to_f32(uint16_t(h)); }
float f16_bits_to_f32(uint32_t h) { return num::f16_to_f32(uint16_t(h)); }

// The kernel's decode (mx_gemm.cuh), emulated: returns the 8 values of A registers 0..3
// (low half first) for BF16 (true) or FP16 (false).
void decode_e2m1(uint32_t q, bool bf16, float out[4][2]) {
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = q << (4 * i);
    const uint32_t r = (v & 0x80008000u) | ((v & 0x70007000u) >> (bf16 ? 6 : 3));
    for (int h = 0; h < 2; ++h) {
      const uint32_t bits = (r >> (16 * h)) & 0xFFFF;
      out[i][h] = bf16 ? bf16_bits_to_f32(bits) * std::ldexp(1.0f, 126)
                       : f16_bits_to_f32(bits) * std::ldexp(1.0f, 14);
    }
  }
}
uint32_t prmt(uint32_t a, uint32_t sel) {  // b = 0
  uint32_t d = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t s = (sel >> (4 * i)) & 7;
    const uint32_t byte = s < 4 ? (a >> (8 * s)) & 0xFF : 0;
    d |= byte << (8 * i);
  }
  return d;
}
void decode_e4m3(uint32_t w0, uint32_t w1, bool bf16, float out[4][2]) {
  const uint32_t src[4] = {w0, w1, w0, w1}, sel[4] = {0x1404, 0x1404, 0x3424, 0x3424};
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = prmt(src[i], sel[i]);
    const uint32_t r = (v & 0x80008000u) | ((v & 0x7F007F00u) >> (bf16 ? 4 : 1));
    for (int h = 0; h < 2; ++h) {
      const uint32_t bits = (r >> (16 * h)) & 0xFFFF;
      out[i][h] = bf16 ? bf16_bits_to_f32(bits) * std::ldexp(1.0f, 120)
                       : f16_bits_to_f32(bits) * std::ldexp(1.0f, 8);
    }
  }
}

// The cuda-hopper E2M1 decode (gemm_kernel.cuh, decode_e2m1_word): the kernel's shift / mask
// bits (layout_word.h, shared) and its HMUL2, emulated as the multiply by 2^126 / 2^14.
template <int kTarget>
void hopper_bits(uint32_t q, uint32_t (&r)[4]) {
  r[0] = hopper::e2m1_operand_bits<kTarget, 0>(q);
  r[1] = hopper::e2m1_operand_bits<kTarget, 1>(q);
  r[2] = hopper::e2m1_operand_bits<kTarget, 2>(q);
  r[3] = hopper::e2m1_operand_bits<kTarget, 3>(q);
}
void decode_e2m1_hopper(uint32_t q, bool bf16, float out[4][2]) {
  uint32_t r[4];
  if (bf16)
    hopper_bits<6>(q, r);
  else
    hopper_bits<9>(q, r);
  for (int i = 0; i < 4; ++i)
    for (int h = 0; h < 2; ++h) {
      const uint32_t bits = (r[i] >> (16 * h)) & 0xFFFF;
      out[i][h] = bf16 ? bf16_bits_to_f32(bits) * std::ldexp(1.0f, 126)
                       : f16_bits_to_f32(bits) * std::ldexp(1.0f, 14);
    }
}

using testing::random_weights;
using testing::Weights;

float element(const Weights& w, int64_t row, int64_t k) {
  const int64_t K = w.view.k;
  if (k >= K) return 0.0f;
  uint8_t code;
  if (w.view.elem == ElemType::kE2M1) {
    const uint8_t b = w.packed[size_t(row * (K / 2) + k / 2)];
    code = (k & 1) ? uint8_t(b >> 4) : uint8_t(b & 15);
  } else {
    code = w.packed[size_t(row * K + k)];
  }
  return num::decode_elem(w.view.elem, code);
}

void check_layout(ElemType e, int64_t batch, int64_t n, int64_t k) {
  const Weights w = random_weights(e, batch, n, k, uint32_t(n * 31 + k));
  ASSERT_TRUE(check_frag_layout(w.view).ok());
  const FragLayout l{e, batch, n, k};
  std::vector<uint8_t> packed(l.packed_bytes()), scales(l.scale_bytes());
  repack_frag_cpu(w.view, packed.data(), scales.data());
  int64_t tile = 0, checked = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t tn = 0; tn < l.n16(); ++tn)
      for (int64_t tk = 0; tk < l.k64(); ++tk, ++tile)
        for (int lane = 0; lane < 32; ++lane) {
          const int g = lane / 4, t = lane % 4;
          const int64_t r0 = b * n + 16 * tn + g, r1 = r0 + 8;
          uint32_t words[8];
          std::memcpy(words, packed.data() + (tile * 32 + lane) * l.lane_bytes(),
                      size_t(l.lane_bytes()));
          for (bool bf16 : {true, false})
            for (int s = 0; s < 4; ++s) {
              float a[4][2];
              if (e == ElemType::kE2M1)
                decode_e2m1(words[s], bf16, a);
              else
                decode_e4m3(words[2 * s], words[2 * s + 1], bf16, a);
              const int64_t k0 = 64 * tk + 16 * s + 4 * t;
              // A reg 0: (r0, e0 e1), 1: (r1, e0 e1), 2: (r0, e2 e3), 3: (r1, e2 e3)
              const int64_t rows[4] = {r0, r1, r0, r1}, ks[4] = {k0, k0, k0 + 2, k0 + 2};
              for (int i = 0; i < 4; ++i)
                for (int h = 0; h < 2; ++h) {
                  const float want = element(w, rows[i], ks[i] + h);
                  ASSERT_EQ(num::f32_bits(a[i][h]), num::f32_bits(want))
                      << "tile " << tile << " lane " << lane << " sub " << s << " reg " << i
                      << " half " << h << (bf16 ? " bf16" : " f16");
                  ++checked;
                }
            }
          uint32_t sw;
          std::memcpy(&sw, scales.data() + frag::scale_word_index(tile, lane) * 4, 4);
          for (int half = 0; half < 2; ++half)
            for (int j = 0; j < 2; ++j) {
              const int64_t blk = 2 * tk + j, row = half ? r1 : r0;
              const uint32_t want = blk < k / 32 ? w.scales[size_t(row * (k / 32) + blk)] : 127u;
              ASSERT_EQ((sw >> (8 * (2 * half + j))) & 0xFF, want) << "scale tile " << tile;
            }
        }
  EXPECT_EQ(checked, l.tiles() * 32 * 2 * 4 * 8);
}

TEST(FragLayout, E2M1DecodesEveryElementIntoItsFragmentSlot) {
  check_layout(ElemType::kE2M1, 1, 32, 64);
  check_layout(ElemType::kE2M1, 3, 48, 96);    // K not a multiple of 64: padded tile
  check_layout(ElemType::kE2M1, 1, 16, 2880);
}

TEST(FragLayout, E4M3DecodesEveryElementIntoItsFragmentSlot) {
  check_layout(ElemType::kE4M3, 1, 32, 64);
  check_layout(ElemType::kE4M3, 2, 48, 160);
}

TEST(FragLayout, RejectsShapesAndFormatsItCannotHold) {
  uint8_t dummy[64] = {};
  MXWeightView w{ElemType::kE2M1, 1, 24, 64, dummy, dummy};
  Status s = check_frag_layout(w);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("N = 24"), std::string::npos) << s.message();
  w = {ElemType::kE5M2, 1, 32, 64, dummy, dummy};
  s = check_frag_layout(w);
  EXPECT_NE(s.message().find("E4M3"), std::string::npos) << s.message();
  w = {ElemType::kE2M1, 1, 32, 48, dummy, dummy};
  EXPECT_NE(check_frag_layout(w).message().find("K = 48"), std::string::npos);
}

// Gate/up row orders: repacking a fused or separate gate/up tensor in RowOrder X must equal the
// plain repack of the canonical tensor whose rows were permuted into the order by hand: tile tn
// = gate rows of columns 8tn..8tn+7, then their up rows.
std::vector<uint8_t> permuted_rows(const Weights& gate_up, const Weights* up, RowOrder order,
                                   int64_t batch, int64_t inter, int64_t row_bytes,
                                   bool scales) {
  const std::vector<uint8_t>& src = scales ? gate_up.scales : gate_up.packed;
  std::vector<uint8_t> out(size_t(batch * 2 * inter * row_bytes));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < 2 * inter; ++r) {
      const int64_t col = 8 * (r / 16) + r % 8;
      const bool is_up = r % 16 >= 8;
      const uint8_t* from;
      if (order == RowOrder::kSeparate) {
        const std::vector<uint8_t>& t = is_up ? (scales ? up->scales : up->packed) : src;
        from = t.data() + (b * inter + col) * row_bytes;
      } else {
        const int64_t row = order == RowOrder::kChunked ? (is_up ? inter + col : col)
                                                        : 2 * col + (is_up ? 1 : 0);
        from = src.data() + (b * 2 * inter + row) * row_bytes;
      }
      std::memcpy(out.data() + (b * 2 * inter + r) * row_bytes, from, size_t(row_bytes));
    }
  return out;
}

TEST(FragLayout, GateUpOrdersEqualThePlainLayoutOfPermutedRows) {
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3})
    for (RowOrder order : {RowOrder::kChunked, RowOrder::kInterleaved, RowOrder::kSeparate}) {
      const int64_t batch = 3, inter = 24, k = 96;
      const bool sep = order == RowOrder::kSeparate;
      const Weights a = random_weights(e, batch, sep ? inter : 2 * inter, k, 7);
      const Weights u = random_weights(e, batch, inter, k, 8);
      const FragSource src{a.view, order, sep ? u.view : MXWeightView{}};
      ASSERT_TRUE(check_frag_layout(src).ok());
      const FragLayout l = src.layout();
      ASSERT_EQ(l.n, 2 * inter);
      std::vector<uint8_t> got_p(l.packed_bytes()), got_s(l.scale_bytes());
      repack_frag_cpu(src, got_p.data(), got_s.data());

      std::vector<uint8_t> pp = permuted_rows(a, &u, order, batch, inter, packed_bytes(e, k), false);
      std::vector<uint8_t> ps = permuted_rows(a, &u, order, batch, inter, k / 32, true);
      const MXWeightView plain{e, batch, 2 * inter, k, pp.data(), ps.data()};
      std::vector<uint8_t> want_p(l.packed_bytes()), want_s(l.scale_bytes());
      repack_frag_cpu(plain, want_p.data(), want_s.data());
      EXPECT_EQ(got_p, want_p) << elem_type_name(e) << " order " << int(order);
      EXPECT_EQ(got_s, want_s) << elem_type_name(e) << " order " << int(order);

      // The experts of a slice are the slice's experts.
      const FragSource mid = src.experts(1, 2);
      const FragLayout lm = mid.layout();
      std::vector<uint8_t> sp(lm.packed_bytes()), ss(lm.scale_bytes());
      repack_frag_cpu(mid, sp.data(), ss.data());
      EXPECT_TRUE(std::equal(sp.begin(), sp.end(), got_p.begin() + l.packed_bytes() / 3));
      EXPECT_TRUE(std::equal(ss.begin(), ss.end(), got_s.begin() + l.scale_bytes() / 3));
    }
}

TEST(FragLayout, GateUpOrdersRejectBadShapes) {
  const Weights a = random_weights(ElemType::kE2M1, 1, 12, 64, 1);  // I = 6: not a multiple of 8
  EXPECT_FALSE(check_frag_layout(FragSource{a.view, RowOrder::kChunked, {}}).ok());
  const Weights g = random_weights(ElemType::kE2M1, 1, 16, 64, 2);
  const Weights u = random_weights(ElemType::kE2M1, 1, 16, 96, 3);  // K differs from w1's
  const Status s = check_frag_layout(FragSource{g.view, RowOrder::kSeparate, u.view});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.to_string().find("must match"), std::string::npos) << s.to_string();
}


// The cuda-hopper layout (hopper/layout.h): chunk (b, nb, kt) holds 4 stripes of lanes in the
// decode's bit positions with the MMA's own K order (lane t: k = 2t, 2t+1, 2t+8, 2t+9 of each
// k16 step), then the stripes' scale words; rows padded to 128 (zeros, scale 127).
void check_hopper_layout(ElemType e, int64_t batch, int64_t n, int64_t k) {
  const Weights w = random_weights(e, batch, n, k, uint32_t(n * 17 + k));
  const hopper::HopperLayout l = hopper::hopper_layout(FragSource::plain(w.view));
  std::vector<uint8_t> out(l.bytes());
  hopper::repack_hopper_cpu(FragSource::plain(w.view), out.data());
  const int lb = hopper::HopperLayout::lane_bytes(e);
  int64_t checked = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t nb = 0; nb < l.n64(); ++nb)
      for (int64_t kt = 0; kt < l.k64(); ++kt) {
        const uint8_t* chunk = out.data() + ((b * l.n64() + nb) * l.k64() + kt) * l.chunk_bytes();
        for (int j = 0; j < 4; ++j)
          for (int lane = 0; lane < 32; ++lane) {
            const int g = lane / 4, t = lane % 4;
            const int64_t row0 = 64 * nb + 16 * j + g;  // row inside batch entry b
            const bool pad = row0 >= n;
            uint32_t words[8];
            std::memcpy(words, chunk + hopper::chunk_lane_offset(lb, j, lane), size_t(lb));
            for (bool bf16 : {true, false})
              for (int s = 0; s < 4; ++s) {
                float a[4][2];
                if (e == ElemType::kE2M1)
                  decode_e2m1_hopper(words[s], bf16, a);
                else
                  decode_e4m3(words[2 * s], words[2 * s + 1], bf16, a);
                const int64_t k0 = 64 * kt + 16 * s + 2 * t;
                const int64_t rows[4] = {row0, row0 + 8, row0, row0 + 8};
                const int64_t ks[4] = {k0, k0, k0 + 8, k0 + 8};
                for (int i = 0; i < 4; ++i)
                  for (int h = 0; h < 2; ++h) {
                    const float want = pad ? 0.0f : element(w, b * n + rows[i], ks[i] + h);
                    ASSERT_EQ(num::f32_bits(a[i][h]), num::f32_bits(want))
                        << "chunk " << nb << "," << kt << " stripe " << j << " lane " << lane
                        << " sub " << s << " reg " << i << " half " << h;
                    ++checked;
                  }
              }
            uint32_t sw;
            std::memcpy(&sw, chunk + hopper::chunk_scale_offset(lb, j, g), 4);
            for (int half = 0; half < 2; ++half)
              for (int jj = 0; jj < 2; ++jj) {
                const int64_t blk = 2 * kt + jj, row = row0 + 8 * half;
                const uint32_t want = pad || blk >= k / 32
                                          ? 127u
                                          : w.scales[size_t((b * n + row) * (k / 32) + blk)];
                ASSERT_EQ((sw >> (8 * (2 * half + jj))) & 0xFF, want)
                    << "scale chunk " << nb << "," << kt << " stripe " << j;
              }
          }
      }
  EXPECT_EQ(checked, l.chunks() * 4 * 32 * 2 * 4 * 8);
}

TEST(HopperLayout, E2M1DecodesEveryElementIntoItsWgmmaSlot) {
  check_hopper_layout(ElemType::kE2M1, 1, 128, 64);
  check_hopper_layout(ElemType::kE2M1, 2, 80, 96);   // rows padded to 128, half k64 step
  check_hopper_layout(ElemType::kE2M1, 1, 16, 2880);
}

TEST(HopperLayout, E4M3DecodesEveryElementIntoItsWgmmaSlot) {
  check_hopper_layout(ElemType::kE4M3, 1, 144, 64);
  check_hopper_layout(ElemType::kE4M3, 2, 48, 160);
}

TEST(HopperLayout, SizesFollowThePaddedShape) {
  const hopper::HopperLayout l{ElemType::kE2M1, 2, 5760, 2880};
  EXPECT_EQ(l.n_pad(), 5760);
  EXPECT_EQ(l.k64(), 45);
  EXPECT_EQ(l.chunk_bytes(), 2048 + 128);
  EXPECT_EQ(l.bytes(), size_t(2) * 90 * 45 * 2176);
  const hopper::HopperLayout f{ElemType::kE4M3, 1, 2064, 32};
  EXPECT_EQ(f.n_pad(), 2176);
  EXPECT_EQ(f.chunk_bytes(), 4096 + 128);
}

}  // namespace
}  // namespace mxq::cuda
