// The cuda-mma fragment layout on the CPU (runs everywhere, no GPU): the repack, read back
// through a bit-exact emulation of the kernel's in-register decode, gives every weight element
// in the MMA fragment slot the kernel assumes. A wrong nibble order or shift fails here before
// any GPU sees it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/gemm/frag_layout.h"
#include "mxq/numerics.h"

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

struct Weights {
  std::vector<uint8_t> packed, scales;
  MXWeightView view;
};
Weights random_weights(ElemType e, int64_t batch, int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 g(seed);
  Weights w;
  w.packed.resize(size_t(batch * n * packed_bytes(e, k)));
  w.scales.resize(size_t(batch * n * k / 32));
  for (auto& b : w.packed) {
    b = uint8_t(g());
    if (e == ElemType::kE4M3 && (b & 0x7F) == 0x7F) b ^= 1;  // no NaN codes
  }
  for (auto& s : w.scales) s = uint8_t(g());
  w.view = {e, batch, n, k, w.packed.data(), w.scales.data()};
  return w;
}

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
          std::memcpy(&sw, scales.data() + (tile * 32 + lane) * 4, 4);
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

}  // namespace
}  // namespace mxq::cuda
