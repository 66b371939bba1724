// The cuda-mma GEMM's Hopper variant for many tokens (sm_90a): warpgroup MMA (wgmma) with the
// weights as the register A operand, so the fragment layout (frag_layout.h) and the register
// decode of the mma.sync kernel (mx_gemm.cuh) feed it unchanged, and the activations as the
// shared-memory B operand, staged once per block for both warpgroups.
//
// Block: 2 warpgroups (8 warps, 256 threads) x 128 tokens. Warp w owns the 16-row tile
// blockIdx.x * 8 + w: warps 0-3 are the A rows of warpgroup 0 (64 rows), 4-7 of warpgroup 1.
// Each k64 step: every warp decodes its tile's 4 k16 A fragments (scale folded into the 16-bit
// weights: the exact-fold path only; the FP32-scale path stays on mma.sync) into one of two
// register sets, the warpgroup issues 4 wgmma.m64n128k16 on the step's shared-memory stage,
// and meanwhile the block loads the next step's activations and stores them into the other
// stage. Weights stream from global memory into a P-deep register ring as in mx_gemm.cuh.
//
// Shared memory: two stages of 128 tokens x 64 K BF16/FP16 (16 KiB each), no swizzle: the 8 x
// 16-byte core matrix of token group r (8 tokens) and k8 chunk c sits at (c * 16 + r) * 128, so
// the descriptor's K stride (LBO) is 2048 bytes and its token stride (SBO) 128. The fragment
// layout permutes K inside each k16 step (lane t's 4 consecutive elements are the MMA's k =
// 2t, 2t+1, 2t+8, 2t+9), so B is stored with the same permutation: MMA k8 chunk 0 of a k16 step
// holds activation pairs (0,1) (4,5) (8,9) (12,13), chunk 1 pairs (2,3) (6,7) (10,11) (14,15).
#pragma once

#include "cuda/common/wgmma.cuh"
#include "cuda/gemm/mx_gemm.cuh"

namespace mxq::cuda::gemm {

constexpr int kWgTokens = 128;  // tokens per block (the wgmma N)
constexpr int kWgRows = 128;    // weight rows per block (2 warpgroups x 64)
constexpr int kWgThreads = 256;
constexpr int kWgStageBytes = kWgTokens * 64 * 2;
constexpr int kWgSmemBytes = 2 * kWgStageBytes;

template <typename T, bool kFp4, int P, class IO>
__global__ void __launch_bounds__(kWgThreads, 1)
    mx_gemm_wgmma_kernel(const uint8_t* __restrict__ wq, const uint8_t* __restrict__ wsc, int n,
                         int k, int k64, const IO io) {
#if MXQ_HAS_WGMMA
  static_assert(P % 2 == 0, "the A register sets alternate per k64 step");
  extern __shared__ __align__(128) uint8_t smem[];
  using Tile = TileRegs<kFp4, 1>;
  constexpr int kVec = Tile::kVec;
  const int lane = int(threadIdx.x & 31), warp = int(threadIdx.x >> 5);
  const int g = lane >> 2, t = lane & 3;
  const int n16 = n / 16;
  const int tn = int(blockIdx.x) * 8 + warp;
  const bool row_ok = tn < n16;  // warps past N still join the warpgroup's MMAs, with zeros
  const int tok0 = int(blockIdx.y) * kWgTokens;
  const int expert = io.batch(int(blockIdx.y));
  if (expert < 0) return;  // block-uniform, before any barrier

  const int64_t tile0 = int64_t(expert) * n16 * k64 + int64_t(row_ok ? tn : 0) * k64;
  const uint4* wbase = reinterpret_cast<const uint4*>(wq) + (tile0 * 32 + lane) * kVec;
  const uint32_t* sbase = reinterpret_cast<const uint32_t*>(wsc) + tile0 * 32 + lane;
  Tile ring[P];
  auto load_w = [&](Tile& r, int kt) {
    if (row_ok) {
#pragma unroll
      for (int v = 0; v < kVec; ++v) r.w[0][v] = ptx::ldg_stream_16(wbase + int64_t(kt) * 32 * kVec + v);
      r.s[0] = ptx::ldg_stream_4(sbase + int64_t(kt) * 32);
    } else {
#pragma unroll
      for (int v = 0; v < kVec; ++v) r.w[0][v] = make_uint4(0u, 0u, 0u, 0u);
      r.s[0] = 0x7F7F7F7Fu;
    }
  };
#pragma unroll
  for (int p = 0; p < P; ++p)
    if (p < k64) load_w(ring[p], p);

  // Activation staging: thread units u = threadIdx.x + 256 i (i = 0, 1) are (token u / 4,
  // k16 step u % 4) of a k64 step: 32 bytes in, two 16-byte core-matrix rows out.
  const T* xrow[2];
  uint32_t soff[2];  // byte offset of the unit's chunk-0 row inside a stage
  int ks[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int u = int(threadIdx.x) + kWgThreads * i, j = u >> 2, s = u & 3;
    xrow[i] = io.x_row(tok0, j);
    ks[i] = 16 * s;
    soff[i] = uint32_t(((2 * s) * 16 + (j >> 3)) * 128 + (j & 7) * 16);
  }
  uint2 xs[2][4];
  auto load_x = [&](int kt) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int kk = kt * 64 + ks[i];
      const bool ok = xrow[i] != nullptr && kk < k;
#pragma unroll
      for (int q = 0; q < 4; ++q)
        xs[i][q] = ok ? ptx::ldg_cached_8(xrow[i] + kk + 4 * q) : make_uint2(0u, 0u);
    }
  };
  auto store_x = [&](int stage) {
    uint8_t* base = smem + stage * kWgStageBytes;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      // words w0..w7 = element pairs 0..7; chunk 0 gets w0 w2 w4 w6, chunk 1 w1 w3 w5 w7.
      *reinterpret_cast<uint4*>(base + soff[i]) =
          make_uint4(xs[i][0].x, xs[i][1].x, xs[i][2].x, xs[i][3].x);
      *reinterpret_cast<uint4*>(base + soff[i] + 16 * 128) =
          make_uint4(xs[i][0].y, xs[i][1].y, xs[i][2].y, xs[i][3].y);
    }
  };

  load_x(0);
  store_x(0);
  ptx::fence_proxy_async();
  __syncthreads();

  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.0f;
  uint32_t a[2][4][4];  // [register set][k16 step][A register]

  for (int kt0 = 0; kt0 < k64; kt0 += P) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int kt = kt0 + p;
      if (kt >= k64) break;
      // Decode this step's A fragments into register set p % 2 (its last reader, the group of
      // step kt - 2, completed: at most one group is pending here).
      const Tile cur = ring[p];
      if (kt + P < k64) load_w(ring[p], kt + P);
      if (kt + 1 < k64) load_x(kt + 1);
#pragma unroll
      for (int blk = 0; blk < 2; ++blk) {
        const uint32_t c0 = (cur.s[0] >> (8 * blk)) & 0xFF;
        const uint32_t c1 = (cur.s[0] >> (16 + 8 * blk)) & 0xFF;
        const uint32_t m0 = scale_multiplier<T, kFp4>(c0), m1 = scale_multiplier<T, kFp4>(c1);
        if constexpr (kFp4) {
          decode_e2m1_scaled<T>(blk == 0 ? cur.w[0][0].x : cur.w[0][0].z, m0, m1, a[p & 1][2 * blk]);
          decode_e2m1_scaled<T>(blk == 0 ? cur.w[0][0].y : cur.w[0][0].w, m0, m1, a[p & 1][2 * blk + 1]);
        } else {
          const uint4 v = cur.w[0][blk];
          decode_e4m3_scaled<T>(v.x, v.y, m0, m1, a[p & 1][2 * blk]);
          decode_e4m3_scaled<T>(v.z, v.w, m0, m1, a[p & 1][2 * blk + 1]);
        }
      }
      const uint8_t* stage = smem + (kt & 1) * kWgStageBytes;
      ptx::wgmma_fence();
#pragma unroll
      for (int s = 0; s < 4; ++s)
        ptx::wgmma_m64n128k16_rs<T>(acc, a[p & 1][s],
                                    ptx::smem_desc(stage + s * 2 * 2048, 2048, 128), 1);
      ptx::wgmma_commit();
      // The other stage's readers (the previous step's group) are done: refill it while this
      // step's group runs.
      if (kt + 1 < k64) {
        store_x((kt + 1) & 1);
        ptx::fence_proxy_async();
      }
      // Retire this step's group before the next decode writes A registers: ptxas serializes
      // every wgmma when non-wgmma instructions define wgmma inputs while a group is in flight.
      ptx::wgmma_wait<0>();
      __syncthreads();
    }
  }
  ptx::wgmma_wait<0>();

  if (row_ok) {
#pragma unroll
    for (int i = 0; i < 16; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        io.store(expert, tok0, 8 * i + 2 * t + h, tn * 16 + g, acc[4 * i + h], acc[4 * i + 2 + h]);
  }
#else
  (void)wq; (void)wsc; (void)n; (void)k; (void)k64; (void)io;
  __trap();
#endif
}

// Weight k64 tiles in flight per warp (even: the A register sets alternate per step).
constexpr int wgmma_prefetch(bool fp4) { return fp4 ? 4 : 2; }

template <typename T, bool kFp4, class IO>
void launch_wgmma(const uint8_t* w, const uint8_t* s, int64_t n, int64_t k, unsigned token_blocks,
                  const IO& io, cudaStream_t stream) {
  const dim3 grid(unsigned((n + kWgRows - 1) / kWgRows), token_blocks);
  mx_gemm_wgmma_kernel<T, kFp4, wgmma_prefetch(kFp4), IO>
      <<<grid, kWgThreads, kWgSmemBytes, stream>>>(w, s, int(n), int(k), int((k + 63) / 64), io);
}

}  // namespace mxq::cuda::gemm
