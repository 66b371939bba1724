// The E4M3 weight operand of the FP8 wgmma path (src/cuda/hopper/fp8_operand.h): the shift
// tables, the byte-permute decode and the operand word layout against mxq's numerics, on the
// CPU (CI); and the same decode compiled for the device (__byte_perm) against the host's bits
// (skips without a GPU), which is what proves the host model of PRMT.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "cuda/common/wgmma.cuh"
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

// One FP8 wgmma (m64n16k32, A from registers, B from shared memory) on operands built exactly
// as the kernel will: each thread forms its operand words from its rows' E2M1 codes
// (operand_word), decodes them with its row's shift table (decode_word) into the A fragment
// a[0] = lo(row g), a[1] = lo(row g + 8), a[2] = hi(row g), a[3] = hi(row g + 8), and B is 16
// tokens x 32 K E4M3 codes, K-major without swizzle: the 8 x 16-byte core matrix of token group
// r and k chunk c at c * lbo + r * sbo. out[row * 16 + col] = D.
__global__ void __launch_bounds__(128) fp8_wgmma_kernel(const uint8_t* a_codes, const int* shifts,
                                                        const uint8_t* b_codes, uint32_t lbo,
                                                        uint32_t sbo, float* out) {
  __shared__ alignas(128) uint8_t b_smem[512];
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  for (int i = tid; i < 512; i += 128) {  // i = token * 32 + k
    const int token = i / 32, k = i % 32;
    b_smem[(k / 16) * lbo + (token / 8) * sbo + (token % 8) * 16 + k % 16] = b_codes[i];
  }
  uint32_t a[4];
  for (int half = 0; half < 2; ++half) {
    const int row = 16 * warp + g + 8 * half;
    fp8::decode_word(fp8::operand_word(a_codes + row * 32, t), fp8::shift_table(shifts[row]),
                     a[half], a[2 + half]);
  }
  cuda::ptx::fence_proxy_async();
  __syncthreads();
  float d[8] = {};
  cuda::ptx::wgmma_fence();
  cuda::WgmmaRS<cuda::Fp8E4M3, 16>::mma(d, a, cuda::ptx::smem_desc(b_smem, lbo, sbo), 0);
  cuda::ptx::wgmma_commit();
  cuda::ptx::wgmma_wait<0>();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      const int row = 16 * warp + g + 8 * (j >> 1), col = 8 * i + 2 * t + (j & 1);
      out[row * 16 + col] = d[4 * i + j];
    }
}

// The FP8 tensor core on the decoded operand: D = sum_k (E2M1 x 2^shift) * E4M3 per (row,
// token), against the double sum. Every product is exact in FP32, so what differs is the
// tensor core's own addition, and it is not FP32's: on the H100 (2026-12-06) one k32 step was
// off by up to 2^-11 of sum|products| (FP32 would be ~2^-19 for 32 terms), the limited
// accumulation precision of Hopper's FP8 wgmma (docs/cuda.md, "The FP8 path"). The bound is
// 2^-9 of sum|products|: a misplaced operand byte or a wrong descriptor is off by O(1). It
// prints the largest error relative to the sum and to the largest product.
TEST(Fp8Operand, WgmmaOnTheDecodedOperandEqualsTheDoubleSum) {
  SKIP_WITHOUT_GPU();
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  if (major != 9 || minor != 0) GTEST_SKIP() << "FP8 wgmma needs sm_90a (this GPU is sm_" << major << minor << ")";
  std::mt19937 rng(31);
  std::vector<uint8_t> a(64 * 32), b(16 * 32);
  std::vector<int> shifts(64);
  for (int r = 0; r < 64; ++r) shifts[r] = fp8::kMinShift + int(rng() % fp8::kShifts);
  shifts[0] = fp8::kMinShift, shifts[1] = fp8::kMaxShift;  // both ends of the fold range
  for (auto& c : a) c = uint8_t(rng() & 15u);
  for (auto& c : b) {
    do c = uint8_t(rng()); while ((c & 0x7Fu) == 0x7Fu);  // E4M3 NaN codes excluded
  }
  uint8_t *da = nullptr, *db = nullptr;
  int* ds = nullptr;
  float* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&da, a.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&db, b.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, 64 * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dout, 64 * 16 * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(da, a.data(), a.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(db, b.data(), b.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(ds, shifts.data(), 64 * 4, cudaMemcpyHostToDevice), cudaSuccess);
  std::vector<double> want(64 * 16), mag(64 * 16), maxp(64 * 16);
  for (int r = 0; r < 64; ++r)
    for (int n = 0; n < 16; ++n) {
      double s = 0, m = 0;
      for (int k = 0; k < 32; ++k) {
        const double p = double(num::decode_elem(ElemType::kE2M1, a[r * 32 + k])) *
                         std::ldexp(1.0, shifts[r]) *
                         double(num::decode_elem(ElemType::kE4M3, b[n * 32 + k]));
        s += p, m += std::fabs(p);
        maxp[r * 16 + n] = std::max(maxp[r * 16 + n], std::fabs(p));
      }
      want[r * 16 + n] = s, mag[r * 16 + n] = m;
    }
  // Two layouts, each with its matching descriptor (lbo: bytes between the k chunks, sbo:
  // between the token groups): the kernel's (256, 128) and (128, 256). Both pass only if the
  // hardware reads the fields as smem_desc documents them.
  double worst_of_max = 0;
  const auto run = [&](uint32_t lbo, uint32_t sbo, double* worst) {
    std::vector<float> got(64 * 16, -1.0f);
    EXPECT_EQ(cudaMemset(dout, 0xFF, 64 * 16 * 4), cudaSuccess);
    fp8_wgmma_kernel<<<1, 128>>>(da, ds, db, lbo, sbo, dout);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    int bad = 0;
    *worst = 0;
    for (int i = 0; i < 64 * 16; ++i) {
      const double err = std::fabs(double(got[i]) - want[i]);
      const double rel = mag[i] > 0 ? err / mag[i] : err;
      *worst = std::max(*worst, rel);
      if (maxp[i] > 0) worst_of_max = std::max(worst_of_max, err / maxp[i]);
      if (!(rel <= std::ldexp(1.0, -9))) ++bad;  // NaN counts as bad
    }
    return bad;
  };
  double worst = 0, worst_swapped = 0;
  const int bad = run(256, 128, &worst);
  const int bad_swapped = run(128, 256, &worst_swapped);
  std::printf("[fp8 wgmma] m64n16k32 e4m3, one k32 step: largest |error| / sum|products| = "
              "%.3g (2^%.1f), / max|product| = %.3g (2^%.1f)\n",
              worst, worst > 0 ? std::log2(worst) : -99.0, worst_of_max,
              worst_of_max > 0 ? std::log2(worst_of_max) : -99.0);
  EXPECT_EQ(bad, 0) << "of 1024 outputs outside 2^-9 of sum|products| (largest " << worst << ")";
  EXPECT_EQ(bad_swapped, 0) << "with lbo 128 / sbo 256 (largest " << worst_swapped << ")";
  cudaFree(da);
  cudaFree(db);
  cudaFree(ds);
  cudaFree(dout);
}

// K steps of FP8 wgmma on the decoded operand, the k32 results chained in the tensor core
// (scale_d = 1) for `promote` steps and then added into FP32 registers: promote = steps is the
// plain chain, 4 the per-k128 (ring stage) promotion the kernel plans, 1 every step. A codes
// [64][K] with a shift per (row, step), B [16][K] E4M3 in dynamic shared memory, one 512-byte
// no-swizzle chunk per step (the layout above, lbo 256, sbo 128).
__global__ void __launch_bounds__(128) fp8_wgmma_k_kernel(const uint8_t* a_codes, const int* shifts,
                                                          const uint8_t* b_codes, int steps,
                                                          int promote, float* out) {
  extern __shared__ __align__(128) uint8_t b_smem_k[];
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int K = 32 * steps;
  for (int i = tid; i < 16 * K; i += 128) {  // i = token * K + k
    const int token = i / K, k = i % K, s = k / 32, kk = k % 32;
    b_smem_k[s * 512 + (kk / 16) * 256 + (token / 8) * 128 + (token % 8) * 16 + kk % 16] = b_codes[i];
  }
  cuda::ptx::fence_proxy_async();
  __syncthreads();
  float acc[8] = {}, part[8] = {};
  for (int s = 0; s < steps; ++s) {
    uint32_t a[4];
    for (int half = 0; half < 2; ++half) {
      const int row = 16 * warp + g + 8 * half;
      fp8::decode_word(fp8::operand_word(a_codes + size_t(row) * K + 32 * s, t),
                       fp8::shift_table(shifts[row * steps + s]), a[half], a[2 + half]);
    }
    cuda::ptx::wgmma_fence();
    cuda::WgmmaRS<cuda::Fp8E4M3, 16>::mma(part, a, cuda::ptx::smem_desc(b_smem_k + 512 * s, 256, 128),
                                          s % promote != 0);
    cuda::ptx::wgmma_commit();
    cuda::ptx::wgmma_wait<0>();
    if ((s + 1) % promote == 0 || s + 1 == steps)
      for (int j = 0; j < 8; ++j) acc[j] += part[j];
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      const int row = 16 * warp + g + 8 * (j >> 1), col = 8 * i + 2 * t + (j & 1);
      out[row * 16 + col] = acc[4 * i + j];
    }
}

// The accumulation-precision measurement of issue 17 over K = 8192: the error relative to
// sum|products| with the chain promoted every step, every 4 steps (k128) and never. The
// promoted ones must stay within the one-step bound (2^-9); the chained one is printed (it
// is what a kernel without promotion would give).
TEST(Fp8Operand, WgmmaAccumulationOverKWithAndWithoutPromotion) {
  SKIP_WITHOUT_GPU();
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  if (major != 9 || minor != 0) GTEST_SKIP() << "FP8 wgmma needs sm_90a (this GPU is sm_" << major << minor << ")";
  constexpr int kSteps = 256, K = 32 * kSteps;
  std::mt19937 rng(37);
  std::vector<uint8_t> a(size_t(64) * K), b(size_t(16) * K);
  std::vector<int> shifts(64 * kSteps);
  for (auto& d : shifts) d = -2 + int(rng() % 5);  // a row's blocks within a few binades
  for (auto& c : a) c = uint8_t(rng() & 15u);
  for (auto& c : b) {
    do c = uint8_t(rng()); while ((c & 0x7Fu) == 0x7Fu || (c & 0x78u) < 0x20u || (c & 0x78u) > 0x48u);
  }  // E4M3 magnitudes 2^-3..2^2: a well-conditioned sum, so the error is the adder's
  std::vector<double> want(64 * 16), mag(64 * 16);
  for (int r = 0; r < 64; ++r)
    for (int n = 0; n < 16; ++n) {
      double sum = 0, m = 0;
      for (int k = 0; k < K; ++k) {
        const double p = double(num::decode_elem(ElemType::kE2M1, a[size_t(r) * K + k])) *
                         std::ldexp(1.0, shifts[r * kSteps + k / 32]) *
                         double(num::decode_elem(ElemType::kE4M3, b[size_t(n) * K + k]));
        sum += p, m += std::fabs(p);
      }
      want[r * 16 + n] = sum, mag[r * 16 + n] = m;
    }
  uint8_t *da = nullptr, *db = nullptr;
  int* ds = nullptr;
  float* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&da, a.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&db, b.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, shifts.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dout, 64 * 16 * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(da, a.data(), a.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(db, b.data(), b.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(ds, shifts.data(), shifts.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  const int smem = 16 * K;
  ASSERT_EQ(cudaFuncSetAttribute(fp8_wgmma_k_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
            cudaSuccess);
  for (int promote : {1, 4, kSteps}) {
    std::vector<float> got(64 * 16);
    fp8_wgmma_k_kernel<<<1, 128, smem>>>(da, ds, db, kSteps, promote, dout);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    double worst = 0, mean = 0;
    for (int i = 0; i < 64 * 16; ++i) {
      const double rel = std::fabs(double(got[i]) - want[i]) / mag[i];
      worst = std::isnan(rel) ? INFINITY : std::max(worst, rel);
      mean += rel / (64 * 16);
    }
    std::printf("[fp8 wgmma] K = %d, promoted into FP32 every %d k32 step(s): |error| / "
                "sum|products| largest %.3g (2^%.1f), mean %.3g (2^%.1f)\n",
                K, promote, worst, std::log2(worst), mean, std::log2(mean));
    if (promote < kSteps) EXPECT_LE(worst, std::ldexp(1.0, -9)) << "promote " << promote;
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(ds);
  cudaFree(dout);
}

}  // namespace
}  // namespace mxq
