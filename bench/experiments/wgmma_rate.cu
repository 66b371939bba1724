// Diagnostic (issue 17): the issue rate of the tensor core per SM for the wgmma shapes the
// cuda-hopper kernels use, with nothing else in the loop, so the FP8 kernel's ~1030 cycles per
// k128 stage (bench/results/h100/gemm-fp8-transform-ab-2026-12-07.md) can be split into "MMA
// rate" and "everything else".
//
// One CTA per SM, W consumer warpgroups, each looping `iters` times over a group of 4 chained
// wgmmas on one accumulator (commit, wait 0), optionally followed by the promotion the FP8
// kernel does (acc += part: kAcc FADDs per thread); no decode work (that is what the kernel
// adds, bench/results/h100/wgmma-rate-2026-12-07.md). Operands: the
// B tile (and, for SS, the A tile) are zeros in shared memory in the 128-byte-swizzled K-major
// layout; the A registers are zeros. Timed with clock64 per warpgroup (max over the CTA) and
// with events over the grid.
//
// Build and run (sm_90a):
//   nvcc -O3 -std=c++20 -gencode=arch=compute_90a,code=sm_90a -Isrc -Iinclude \
//        bench/experiments/wgmma_rate.cu -o wgmma_rate && ./wgmma_rate
// Prints one line per variant: cycles per wgmma per SM (all warpgroups together) and the
// implied dense rate in FLOP per cycle per SM (H100 SXM peaks: BF16 4096, FP8 8192 at ~1.83 GHz
// for 989 / 1979 TFLOP/s).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "cuda/common/wgmma.cuh"
#include "cuda/common/wgmma_rs.cuh"
#include "cuda/common/wgmma_ss.cuh"
#include "cuda/hopper/sm90_ptx.cuh"

using namespace mxq::cuda;

enum Kind { kFp8RS = 0, kFp8SS = 1, kBf16RS = 2 };

template <int kKind, int N, bool kPromote>
__global__ void __launch_bounds__(384, 1) rate_kernel(int iters, int warpgroups,
                                                      unsigned long long* cycles, float* sink) {
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) &
                                             ~uintptr_t(1023));
  for (int i = threadIdx.x; i < 48 * 1024 / 4; i += blockDim.x)
    reinterpret_cast<uint32_t*>(smem)[i] = 0;
  __syncthreads();
  const int wg = threadIdx.x / 128;
  if (wg >= warpgroups) return;
  // B: N rows of 128 bytes (k128 FP8 or k64 BF16); A (SS): 64 rows after it.
  const uint64_t b_desc = sm90::desc_kmajor_sw128(smem);
  const uint64_t a_desc = sm90::desc_kmajor_sw128(smem + N * 128);
  constexpr int kAcc = N / 2;
  float acc[kAcc], part[kAcc];
#pragma unroll
  for (int i = 0; i < kAcc; ++i) acc[i] = part[i] = 0.0f;
  uint32_t a[4][4];
#pragma unroll
  for (int s = 0; s < 4; ++s)
#pragma unroll
    for (int r = 0; r < 4; ++r) a[s][r] = threadIdx.x == 1000 ? 1u : 0u;  // opaque zeros
  __syncwarp();
  const unsigned long long t0 = clock64();
  for (int it = 0; it < iters; ++it) {
    ptx::wgmma_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      // Without the promotion every wgmma accumulates (scale_d = 1): a group that overwrote
      // `part` unread would be dead code to ptxas, which then drops wgmmas (first run, H100:
      // "18508 FLOP/clk/SM", above the peak).
      const int scale_d = kPromote && s == 0 ? 0 : 1;
      if constexpr (kKind == kFp8RS)
        WgmmaRS<Fp8E4M3, N>::mma(part, a[s], b_desc + uint64_t(2 * s), scale_d);
      else if constexpr (kKind == kFp8SS)
        WgmmaSS<Fp8E4M3, N>::mma(part, a_desc + uint64_t(2 * s), b_desc + uint64_t(2 * s),
                                 scale_d);
      else
        WgmmaRS<__nv_bfloat16, N>::mma(part, a[s], b_desc + uint64_t(2 * s), scale_d);
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
    if constexpr (kPromote) {
#pragma unroll
      for (int i = 0; i < kAcc; ++i) acc[i] += part[i];
    }
  }
  const unsigned long long t1 = clock64();
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < kAcc; ++i) s += acc[i] + part[i];
  if (s != 0.0f) sink[threadIdx.x] = s;
  if (threadIdx.x % 128 == 0) atomicMax(cycles + blockIdx.x, t1 - t0);
}

template <int kKind, int N, bool kPromote>
void run(const char* name, int warpgroups, int sms) {
  const int iters = 4096;
  unsigned long long* cycles;
  float* sink;
  cudaMalloc(&cycles, sms * sizeof(unsigned long long));
  cudaMalloc(&sink, 1024 * sizeof(float));
  cudaMemset(cycles, 0, sms * sizeof(unsigned long long));
  auto k = rate_kernel<kKind, N, kPromote>;
  const int smem = 49 * 1024 + 1024;
  cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  k<<<sms, 384, smem>>>(16, warpgroups, cycles, sink);  // warm-up
  cudaMemset(cycles, 0, sms * sizeof(unsigned long long));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  cudaEventRecord(e0);
  k<<<sms, 384, smem>>>(iters, warpgroups, cycles, sink);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    std::printf("%s: %s\n", name, cudaGetErrorString(err));
    return;
  }
  unsigned long long host[256];
  cudaMemcpy(host, cycles, sms * sizeof(unsigned long long), cudaMemcpyDeviceToHost);
  unsigned long long mx = 0;
  for (int i = 0; i < sms; ++i) mx = host[i] > mx ? host[i] : mx;
  const double wgmmas = double(iters) * 4 * warpgroups;  // per SM
  const int k_elems = kKind == kBf16RS ? 16 : 32;
  const double flop = 2.0 * 64 * N * k_elems;
  const double cyc = double(mx) / wgmmas;
  std::printf(
      "%-34s wg %d: %7.1f cycles per wgmma per SM, %6.0f FLOP/clk/SM, grid %.1f TFLOP/s\n",
      name, warpgroups, cyc, flop / cyc, flop * wgmmas * sms / (ms * 1e-3) / 1e12);
  cudaFree(cycles);
  cudaFree(sink);
}

int main() {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  for (int w = 1; w <= 3; ++w) {
    run<kFp8RS, 128, false>("fp8 RS m64n128k32", w, sms);
    run<kFp8SS, 128, false>("fp8 SS m64n128k32", w, sms);
    run<kBf16RS, 128, false>("bf16 RS m64n128k16", w, sms);
    run<kFp8RS, 128, true>("fp8 RS m64n128k32 + promote", w, sms);
    run<kFp8SS, 128, true>("fp8 SS m64n128k32 + promote", w, sms);
    run<kFp8RS, 64, false>("fp8 RS m64n64k32", w, sms);
    run<kFp8SS, 64, false>("fp8 SS m64n64k32", w, sms);
  }
  return 0;
}
