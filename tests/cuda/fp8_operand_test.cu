// The E4M3 weight operand of the FP8 wgmma path (src/cuda/hopper/fp8_operand.h): the shift
// tables, the byte-permute decode and the operand word layout against mxq's numerics, on the
// CPU (CI); and the same decode compiled for the device (__byte_perm) against the host's bits
// (skips without a GPU), which is what proves the host model of PRMT.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda/hopper/fp8_operand.h"
#include "mxq/numerics.h"
#include "gpu_test_util.h"

namespace mxq {
namespace {

namespace fp8 = cuda::hopper::fp8;

// The E4M3 byte the reference gives E2M1 code c (sign included) times 2^d.
uint8_t want_byte(uint32_t c, int d) {
  const float v = num::decode_elem(ElemType::kE2M1, uint8_t(c)) * std::ldexp(1.0f, d);
  const uint32_t sign = (c & 8u) ? 0x80u : 0u;
  // Exact by construction (checked in ShiftTablesAreExact): the unsigned code of |v|.
  for (uint32_t code = 0; code < 0x7F; ++code)
    if (num::decode_elem(ElemType::kE4M3, uint8_t(code)) == std::fabs(v)) return uint8_t(sign | code);
  ADD_FAILURE() << "E2M1 code " << c << " x 2^" << d << " = " << v << " is not an E4M3 value";
  return 0;
}

TEST(Fp8Operand, ShiftTablesAreExact) {
  for (int d = fp8::kMinShift; d <= fp8::kMaxShift; ++d) {
    const fp8::ShiftTable t = fp8::shift_table(d);
    for (uint32_t mag = 0; mag < 8; ++mag) {
      const uint32_t code = ((mag < 4 ? t.lo : t.hi) >> (8 * (mag & 3))) & 0xFFu;
      EXPECT_LT(code, 0x7Fu) << "mag " << mag << " d " << d;  // finite, sign clear
      EXPECT_EQ(num::decode_elem(ElemType::kE4M3, uint8_t(code)),
                num::decode_elem(ElemType::kE2M1, uint8_t(mag)) * std::ldexp(1.0f, d))
          << "mag " << mag << " d " << d;
    }
  }
  // The ends of the range are where the table leaves E4M3's normals / approaches its max.
  EXPECT_EQ(fp8::e4m3_of_e2m1(1, -8), 0x01u);         // 0.5 x 2^-8 = 2^-9, the smallest subnormal
  EXPECT_EQ(fp8::e4m3_of_e2m1(7, 6), 0x7Cu);          // 6 x 2^6 = 384 = 1.5 x 2^8
}

TEST(Fp8Operand, PrmtModelFollowsThePtxDefinition) {
  // Plain byte selection from {a, b} (sources 0..3 = a, 4..7 = b).
  EXPECT_EQ(fp8::prmt(0x33221100u, 0x77665544u, 0x3210u), 0x33221100u);
  EXPECT_EQ(fp8::prmt(0x33221100u, 0x77665544u, 0x7654u), 0x77665544u);
  EXPECT_EQ(fp8::prmt(0x33221100u, 0x77665544u, 0x0527u), 0x00552277u);
  // Bit 3 of a selector nibble: the selected byte's sign bit replicated.
  EXPECT_EQ(fp8::prmt(0x7F8000FFu, 0u, 0x89ABu), 0xFF00FF00u);
  // Only the low 16 bits of the selector count.
  EXPECT_EQ(fp8::prmt(0x33221100u, 0x77665544u, 0xFFFF3210u), 0x33221100u);
}

TEST(Fp8Operand, DecodeWordGivesEveryCodeInEveryPositionExactly) {
  std::mt19937 rng(17);
  for (int d = fp8::kMinShift; d <= fp8::kMaxShift; ++d) {
    const fp8::ShiftTable t = fp8::shift_table(d);
    for (int pos = 0; pos < 8; ++pos)
      for (uint32_t c = 0; c < 16; ++c)
        for (int rep = 0; rep < 8; ++rep) {
          uint32_t w = rng();
          w = (w & ~(15u << (4 * pos))) | (c << (4 * pos));
          uint32_t lo = 0, hi = 0;
          fp8::decode_word(w, t, lo, hi);
          for (int i = 0; i < 8; ++i) {
            const uint32_t got = ((i < 4 ? lo : hi) >> (8 * (i & 3))) & 0xFFu;
            ASSERT_EQ(got, want_byte((w >> (4 * i)) & 15u, d))
                << "word " << std::hex << w << std::dec << " code " << i << " d " << d;
          }
        }
  }
}

// Every byte of every A register of a warpgroup, from operand words built by operand_word,
// lands on the (row, k) the wgmma fragment names, with its row's shift.
TEST(Fp8Operand, OperandWordsFillTheWgmmaFragment) {
  std::mt19937 rng(5);
  uint8_t codes[64][32];
  int shift[64];
  for (int r = 0; r < 64; ++r) {
    shift[r] = fp8::kMinShift + int(rng() % fp8::kShifts);
    for (int k = 0; k < 32; ++k) codes[r][k] = uint8_t(rng() & 15u);
  }
  int checked = 0;
  for (int warp = 0; warp < 4; ++warp)
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, t = lane % 4;
      uint32_t reg[4];
      for (int half = 0; half < 2; ++half) {  // rows g, g + 8: registers (0, 2) and (1, 3)
        const int row = 16 * warp + g + 8 * half;
        fp8::decode_word(fp8::operand_word(codes[row], t), fp8::shift_table(shift[row]),
                         reg[half], reg[2 + half]);
      }
      for (int r = 0; r < 4; ++r)
        for (int b = 0; b < 4; ++b) {
          const fp8::RowK e = fp8::fragment_element(warp, lane, r, b);
          ASSERT_EQ((reg[r] >> (8 * b)) & 0xFFu, want_byte(codes[e.row][e.k], shift[e.row]))
              << "warp " << warp << " lane " << lane << " reg " << r << " byte " << b;
          ++checked;
        }
    }
  EXPECT_EQ(checked, 64 * 32);  // every element of the 64 x 32 A tile once
}

__global__ void decode_kernel(const uint32_t* words, const int* shifts, int n, uint32_t* out) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  uint32_t lo = 0, hi = 0;
  fp8::decode_word(words[i], fp8::shift_table(shifts[i]), lo, hi);
  out[2 * i] = lo;
  out[2 * i + 1] = hi;
}

TEST(Fp8Operand, DeviceDecodeEqualsTheHostModel) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(23);
  const int n = 1 << 16;
  std::vector<uint32_t> words(n), out(2 * n);
  std::vector<int> shifts(n);
  for (int i = 0; i < n; ++i) {
    words[i] = rng();
    shifts[i] = fp8::kMinShift + int(rng() % fp8::kShifts);
  }
  uint32_t *dw = nullptr, *dout = nullptr;
  int* ds = nullptr;
  ASSERT_EQ(cudaMalloc(&dw, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dout, 2 * n * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dw, words.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(ds, shifts.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
  decode_kernel<<<n / 256, 256>>>(dw, ds, n, dout);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, 2 * n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dw);
  cudaFree(ds);
  cudaFree(dout);
  for (int i = 0; i < n; ++i) {
    uint32_t lo = 0, hi = 0;
    fp8::decode_word(words[i], fp8::shift_table(shifts[i]), lo, hi);
    ASSERT_EQ(out[2 * i], lo) << "word " << i;
    ASSERT_EQ(out[2 * i + 1], hi) << "word " << i;
  }
}

}  // namespace
}  // namespace mxq
