// The numerics header compiled for the device must give the host's bits: every element
// encode (all types, roundings, saturations, a sweep of scales) and every block quantize.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "gpu_test_util.h"

namespace mxq {
namespace {


struct EncodeCase {
  uint32_t x;
  int8_t c;
  uint8_t type, rounding, saturation;
};

__global__ void encode_kernel(const EncodeCase* cases, int n, uint8_t* out, float* decoded) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const EncodeCase k = cases[i];
  const ElemType t = ElemType(k.type);
  out[i] = num::encode_elem(t, k.x, k.c, Rounding(k.rounding), Saturation(k.saturation));
  decoded[i] = num::dequantize_elem(t, out[i], uint8_t(k.c + 127));
}

__global__ void block_kernel(const uint32_t* x, int nblocks, uint8_t type, num::BlockRules rules,
                             uint8_t* packed, uint8_t* scales) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nblocks) return;
  const ElemType t = ElemType(type);
  uint8_t codes[kBlockSize];
  scales[b] = num::quantize_block(t, rules, x + b * kBlockSize, kBlockSize, codes);
  pack::pack_codes(t, codes, kBlockSize, packed + b * (kBlockSize * elem_info(t).bits / 8));
}

TEST(CudaNumerics, EncodeMatchesHostBitForBit) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  std::vector<EncodeCase> cases;
  for (ElemType t : kAllElemTypes)
    for (Rounding r : kAllRoundings)
      for (int sat = 0; sat < (elem_info(t).has_nan_inf ? 2 : 1); ++sat)
        for (int i = 0; i < 4000; ++i) {
          uint32_t x = rng();
          if ((x & num::kF32AbsMask) >= num::kF32Inf) x &= 0xBF7FFFFFu;  // keep finite
          const int c = int(rng() % 255) - 127;
          cases.push_back({x, int8_t(c), uint8_t(t), uint8_t(r), uint8_t(sat)});
        }
  const int n = int(cases.size());
  EncodeCase* d_cases = nullptr;
  uint8_t* d_out = nullptr;
  float* d_dec = nullptr;
  CUDA_OK(cudaMalloc(&d_cases, n * sizeof(EncodeCase)));
  CUDA_OK(cudaMalloc(&d_out, n));
  CUDA_OK(cudaMalloc(&d_dec, n * sizeof(float)));
  CUDA_OK(cudaMemcpy(d_cases, cases.data(), n * sizeof(EncodeCase), cudaMemcpyHostToDevice));
  encode_kernel<<<(n + 255) / 256, 256>>>(d_cases, n, d_out, d_dec);
  CUDA_OK(cudaGetLastError());
  std::vector<uint8_t> out(n);
  std::vector<float> dec(n);
  CUDA_OK(cudaMemcpy(out.data(), d_out, n, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(dec.data(), d_dec, n * sizeof(float), cudaMemcpyDeviceToHost));
  int mismatches = 0;
  for (int i = 0; i < n && mismatches < 20; ++i) {
    const EncodeCase& k = cases[i];
    const uint8_t want = num::encode_elem(ElemType(k.type), k.x, k.c, Rounding(k.rounding),
                                          Saturation(k.saturation));
    const float want_dec = num::dequantize_elem(ElemType(k.type), want, uint8_t(k.c + 127));
    // NaN payload and sign after a multiply are the FPU's choice (the GPU returns its
    // canonical NaN); only NaN-ness is part of the contract for element NaN codes.
    const bool dec_ok = std::isnan(want_dec) ? std::isnan(dec[i])
                                             : num::f32_bits(dec[i]) == num::f32_bits(want_dec);
    if (out[i] != want || !dec_ok) {
      ++mismatches;
      ADD_FAILURE() << "type " << int(k.type) << " x=0x" << std::hex << k.x << std::dec
                    << " c=" << int(k.c) << ": device " << int(out[i]) << " host " << int(want);
    }
  }
  cudaFree(d_cases);
  cudaFree(d_out);
  cudaFree(d_dec);
}

TEST(CudaNumerics, BlockQuantizeMatchesHost) {
  SKIP_WITHOUT_GPU();
  constexpr int kBlocks = 4096;
  std::mt19937 rng(11);
  std::vector<uint32_t> x(kBlocks * kBlockSize);
  for (int b = 0; b < kBlocks; ++b) {
    const int span = int(rng() % 40);  // blocks of mixed dynamic range, some NaN/Inf/zero
    const uint32_t base = uint32_t(rng() % 200 + 20) << 23;
    for (int i = 0; i < kBlockSize; ++i) {
      uint32_t v = (base - (uint32_t(rng() % (span + 1)) << 23)) | (rng() & 0x807FFFFFu);
      if (b % 97 == 0) v = 0;
      x[b * kBlockSize + i] = v;
    }
    if (b % 89 == 1) x[b * kBlockSize + 5] = 0x7FC00000u;
    if (b % 83 == 2) x[b * kBlockSize + 9] = 0xFF800000u;
  }
  uint32_t* d_x = nullptr;
  uint8_t *d_packed = nullptr, *d_scales = nullptr;
  CUDA_OK(cudaMalloc(&d_x, x.size() * 4));
  CUDA_OK(cudaMalloc(&d_packed, x.size()));
  CUDA_OK(cudaMalloc(&d_scales, kBlocks));
  CUDA_OK(cudaMemcpy(d_x, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  for (ElemType t : kAllElemTypes)
    for (ScaleRule r : kAllScaleRules) {
      num::BlockRules rules;
      rules.scale_rule = r;
      block_kernel<<<kBlocks / 128, 128>>>(d_x, kBlocks, uint8_t(t), rules, d_packed, d_scales);
      CUDA_OK(cudaGetLastError());
      const int bb = kBlockSize * elem_info(t).bits / 8;
      std::vector<uint8_t> packed(size_t(kBlocks) * bb), scales(kBlocks);
      CUDA_OK(cudaMemcpy(packed.data(), d_packed, packed.size(), cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(scales.data(), d_scales, kBlocks, cudaMemcpyDeviceToHost));
      for (int b = 0; b < kBlocks; ++b) {
        uint8_t codes[kBlockSize], want[kBlockSize];
        const uint8_t s = num::quantize_block(t, rules, &x[b * kBlockSize], kBlockSize, codes);
        pack::pack_codes(t, codes, kBlockSize, want);
        ASSERT_EQ(scales[b], s) << elem_type_name(t) << " " << scale_rule_name(r) << " block " << b;
        for (int i = 0; i < bb; ++i)
          ASSERT_EQ(packed[size_t(b) * bb + i], want[i])
              << elem_type_name(t) << " " << scale_rule_name(r) << " block " << b;
      }
    }
  cudaFree(d_x);
  cudaFree(d_packed);
  cudaFree(d_scales);
}

}  // namespace
}  // namespace mxq
