// The cuda-mma GEMM's Hopper variant for many tokens (sm_90a): warpgroup MMA (wgmma) with the
// weights as the register A operand, so the fragment layout (frag_layout.h) and the register
// decode of the mma.sync kernel (mx_gemm.cuh) feed it unchanged, and the activations as the
// shared-memory B operand, staged once per block for both warpgroups.
//
// Block: 2 warpgroups (8 warps, 256 threads) x NB = 128 tokens (64 for MoE blocks). Warp w owns the 16-row tile
// blockIdx.x * 8 + w: warps 0-3 are the A rows of warpgroup 0 (64 rows), 4-7 of warpgroup 1.
// Each k64 step: every warp decodes its tile's 4 k16 A fragments (scale folded into the 16-bit
// weights: the exact-fold path only; the FP32-scale path stays on mma.sync) into one of two
// register sets, the warpgroup issues 4 wgmma.m64n128k16 on the step's shared-memory stage,
// and meanwhile the block loads the next step's activations and stores them into the other
// stage. Weights stream from global memory into a P-deep register ring as in mx_gemm.cuh.
//
// Shared memory: two stages of NB tokens x 64 K BF16/FP16 (NB / 8 KiB each + padding), no
// swizzle: the 8 x 16-byte core matrix of token group r (8 tokens) and k8 chunk c sits at
// c * LBO + r * 128, so the descriptor's K stride is LBO (wg_lbo) and its token stride 128. The fragment
// layout permutes K inside each k16 step (lane t's 4 consecutive elements are the MMA's k =
// 2t, 2t+1, 2t+8, 2t+9), so B is stored with the same permutation: MMA k8 chunk 0 of a k16 step
// holds activation pairs (0,1) (4,5) (8,9) (12,13), chunk 1 pairs (2,3) (6,7) (10,11) (14,15).
#pragma once

#include "cuda/common/wgmma.cuh"
#include "cuda/gemm/mx_gemm.cuh"
#include "cuda/gemm/mx_gemm_wgmma_launch.h"  // kWgTokens, kWgRows, the declaration of launch_wgmma

namespace mxq::cuda::gemm {

constexpr int kWgThreads = 256;
// K stride between core matrices: one k8 chunk of NB / 8 token groups, + 16 bytes so that the
// staging stores of a half-warp (8-byte stores to chunks 0, 2, 4, 6: offsets 2 s LBO = 32 s
// mod 128) cover the 32 banks once.
template <int NB>
constexpr int wg_lbo() { return NB / 8 * 128 + 16; }
template <int NB>
constexpr int wg_stage_bytes() { return 8 * wg_lbo<NB>(); }
template <int NB>
constexpr int wg_smem_bytes() { return 2 * wg_stage_bytes<NB>(); }

template <typename T, bool kFp4, int NB, int P, int XD, int MINB, class IO>
__global__ void __launch_bounds__(kWgThreads, MINB)
    mx_gemm_wgmma_kernel(const uint8_t* __restrict__ wq, const uint8_t* __restrict__ wsc, int n,
                         int k, int k64, const IO io) {
#if MXQ_HAS_WGMMA
  static_assert(XD == 1 || P % 2 == 0, "two activation register sets alternate per k64 step");
  static_assert(XD == 1 || XD == 2, "activations are loaded one or two steps ahead");
  static_assert(NB == 64 || NB == 128, "64 or 128 tokens per block");
  constexpr int kLbo = wg_lbo<NB>(), kStage = wg_stage_bytes<NB>();
  constexpr int kPieces = NB / 32;  // 16-byte activation pieces per thread and k64 step
  extern __shared__ __align__(128) uint8_t smem[];
  pdl::launch_dependents();  // (common/pdl.h: as mx_gemm_kernel)
  pdl::wait();
  using Tile = TileRegs<kFp4, 1>;
  constexpr int kVec = Tile::kVec;
  const int lane = int(threadIdx.x & 31), warp = int(threadIdx.x >> 5);
  const int g = lane >> 2, t = lane & 3;
  const int n16 = n / 16;
  const int tn = int(blockIdx.x) * 8 + warp;
  const bool row_ok = tn < n16;  // warps past N still join the warpgroup's MMAs, with zeros
  const int tok0 = int(blockIdx.y) * NB;
  const int expert = io.batch(int(blockIdx.y));
  if (expert < 0) return;  // block-uniform, before any barrier

  const int64_t tile0 = int64_t(expert) * n16 * k64 + int64_t(row_ok ? tn : 0) * k64;
  // Both addresses come from one 64-bit lane index per tile (the lane's scale word is
  // frag::scale_word_index(tile, lane) = index / 4): two live pointers cost this 128-register
  // kernel spills.
  const int64_t lane_index0 = tile0 * 32 + lane;
  Tile ring[P];
  auto load_w = [&](Tile& r, int kt) {
    if (row_ok) {
      const int64_t li = lane_index0 + int64_t(kt) * 32;
#pragma unroll
      for (int v = 0; v < kVec; ++v)
        r.w[0][v] = ptx::ldg_stream_16(reinterpret_cast<const uint4*>(wq) + li * kVec + v);
      r.s[0] = ptx::ldg_stream_4(reinterpret_cast<const uint32_t*>(wsc) + (li >> 2));
    } else {
#pragma unroll
      for (int v = 0; v < kVec; ++v) r.w[0][v] = make_uint4(0u, 0u, 0u, 0u);
      r.s[0] = 0x7F7F7F7Fu;
    }
  };
#pragma unroll
  for (int p = 0; p < P; ++p)
    if (p < k64) load_w(ring[p], p);

  // Activation staging: a k64 step of 128 tokens is 1024 16-byte pieces; thread piece
  // v = threadIdx.x + 256 i (i = 0..3) is token v / 8, bytes 16 (v % 8) .. of the step's row
  // (coalesced 16-byte loads; rows must be 16-byte aligned, checked by the launcher). Piece
  // half hf = v % 2 of k16 step s = (v % 8) / 2 holds element pairs 4hf .. 4hf + 3: pairs 4hf,
  // 4hf + 2 go to chunk 2s (bytes 8hf..) and 4hf + 1, 4hf + 3 to chunk 2s + 1.
  // v % 8 and (v / 8) % 8 do not depend on i: one offset for all pieces, + 512 bytes per i
  // (4 token groups further).
  const T* xrow[kPieces];
  const int p8 = int(threadIdx.x & 7), jlo = int(threadIdx.x >> 3);
  const int kof = 8 * p8;  // the pieces' first element inside the k64 step
  const uint32_t soff =    // byte offset of piece 0's chunk-2s half-row inside a stage
      uint32_t((p8 >> 1) * 2 * kLbo + (jlo >> 3) * 128 + (jlo & 7) * 16 + (p8 & 1) * 8);
#pragma unroll
  for (int i = 0; i < kPieces; ++i) xrow[i] = io.x_row(tok0, jlo + 32 * i);
  // XD register sets of staged activations: step kt's set is kt % XD (loaded XD steps ahead).
  uint4 xs[XD][kPieces];
  auto load_x = [&](uint4 (&r)[kPieces], int kt) {
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int kk = kt * 64 + kof;
      r[i] = xrow[i] != nullptr && kk < k ? ptx::ldg_cached_16(xrow[i] + kk)
                                          : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  auto store_x = [&](const uint4 (&r)[kPieces], int stage) {
    uint8_t* base = smem + stage * kStage;
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      *reinterpret_cast<uint2*>(base + soff + 512 * i) = make_uint2(r[i].x, r[i].z);
      *reinterpret_cast<uint2*>(base + soff + 512 * i + kLbo) = make_uint2(r[i].y, r[i].w);
    }
  };

  load_x(xs[0], 0);
  store_x(xs[0], 0);
#pragma unroll
  for (int d = 1; d < XD; ++d)
    if (d < k64) load_x(xs[d], d);
  ptx::fence_proxy_async();
  __syncthreads();

  float acc[NB / 2];
#pragma unroll
  for (int i = 0; i < NB / 2; ++i) acc[i] = 0.0f;
  uint32_t a[4][4];  // [k16 step][A register]

  for (int kt0 = 0; kt0 < k64; kt0 += P) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int kt = kt0 + p;
      if (kt >= k64) break;
      // Decode this step's A fragments (the previous step's group, their last reader, retired).
      const Tile cur = ring[p];
      if (kt + P < k64) load_w(ring[p], kt + P);
      // Step kt + XD's activations into the set step kt's activations left (stored last step).
      if (kt + XD < k64) {
        if constexpr (XD == 1)
          load_x(xs[0], kt + 1);
      }
#pragma unroll
      for (int blk = 0; blk < 2; ++blk) {
        const uint32_t c0 = (cur.s[0] >> (8 * blk)) & 0xFF;
        const uint32_t c1 = (cur.s[0] >> (16 + 8 * blk)) & 0xFF;
        const uint32_t m0 = scale_multiplier<T, kFp4>(c0), m1 = scale_multiplier<T, kFp4>(c1);
        if constexpr (kFp4) {
          decode_e2m1_scaled<T>(blk == 0 ? cur.w[0][0].x : cur.w[0][0].z, m0, m1, a[2 * blk]);
          decode_e2m1_scaled<T>(blk == 0 ? cur.w[0][0].y : cur.w[0][0].w, m0, m1, a[2 * blk + 1]);
        } else {
          const uint4 v = cur.w[0][blk];
          decode_e4m3_scaled<T>(v.x, v.y, m0, m1, a[2 * blk]);
          decode_e4m3_scaled<T>(v.z, v.w, m0, m1, a[2 * blk + 1]);
        }
      }
      const uint8_t* stage = smem + (kt & 1) * kStage;
      ptx::wgmma_fence();
#pragma unroll
      for (int s = 0; s < 4; ++s)
        ptx::wgmma_rs<T, NB>(acc, a[s], ptx::smem_desc(stage + s * 2 * kLbo, kLbo, 128), 1);
      ptx::wgmma_commit();
      // The other stage's readers (the previous step's group) are done: refill it while this
      // step's group runs.
      if (kt + 1 < k64) {
        store_x(xs[(p + 1) % XD], (kt + 1) & 1);
        ptx::fence_proxy_async();
      }
      if constexpr (XD == 2) {
        if (kt + 2 < k64) load_x(xs[p % 2], kt + 2);
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
    for (int i = 0; i < NB / 8; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        io.store(expert, tok0, 8 * i + 2 * t + h, tn * 16 + g, acc[4 * i + h], acc[4 * i + 2 + h]);
  }
#else
  (void)wq; (void)wsc; (void)n; (void)k; (void)k64; (void)io;
  __trap();
#endif
}

// Measured on the H100 (MXFP4 8192 x 8192, M = 2048 / 8192): one block per SM with the
// activations loaded two steps ahead 1030 / 4016 us; two blocks per SM (<= 128 registers: 2
// weight tiles in flight, activations one step ahead), so one block's decode overlaps the
// other's MMAs, 919 / 3557 us. E4M3 (32 bytes of weights per lane and tile) fits with one
// weight tile in flight; the MoE epilogues (IO::kSmallEpilogue false) with 128 tokens do not
// fit 128 registers: one block per SM, activations two steps ahead.
// 64-token blocks (MoE) need half the accumulators and staging registers: two blocks per SM.
// The definition of the declaration in mx_gemm_wgmma_launch.h: included only by the sm_90a-only
// instance files (gemm/sm90/, moe/sm90/), which instantiate it explicitly.
template <typename T, bool kFp4, int NB, class IO>
void launch_wgmma(const uint8_t* w, const uint8_t* s, int64_t n, int64_t k, unsigned token_blocks,
                  const IO& io, cudaStream_t stream) {
  const dim3 grid(unsigned((n + kWgRows - 1) / kWgRows), token_blocks);
  const int k64 = int((k + 63) / 64);
  constexpr bool kTwo = NB == 64 || IO::kSmallEpilogue;
  // E4M3 with 128 tokens fits two blocks per SM with one weight tile in flight per warp.
  constexpr int kP = !kFp4 && NB == 128 && kTwo ? 1 : 2;
  constexpr int kXD = kTwo ? 1 : 2, kMinBlocks = kTwo ? 2 : 1;
  pdl::launch(mx_gemm_wgmma_kernel<T, kFp4, NB, kP, kXD, kMinBlocks, IO>, grid, dim3(kWgThreads),
              size_t(wg_smem_bytes<NB>()), stream, w, s, int(n), int(k), k64, io);
}

}  // namespace mxq::cuda::gemm
