// The cuda-hopper GEMM kernel (sm_90a): y[M, N] = x[M, K] . dequant(W[N, K])^T (+ bias), MX
// weights in the hopper layout (layout.h), BF16 / FP16 activations, FP32 accumulation.
//
// Warp specialised, persistent, TMA-fed, swap-AB:
// - The grid is a set of persistent clusters of `splits` CTAs; cluster c takes items c,
//   c + clusters, ... of the schedule (item = (token tile, 128-row block), token tiles outer so
//   that concurrently running CTAs share the activation tile in L2). CTA rank r of a cluster
//   takes the r-th of `splits` equal K ranges of every item (split K for grids smaller than a
//   wave: decode).
// - Warpgroup 0 is the producer: after giving up registers (setmaxnreg) one thread walks the
//   items' k64 steps in stages of stage_steps(NT) steps (2 up to 64 tokens: gemm_config.h says
//   why) and, per stage, waits for a free ring slot (its `empty` mbarrier), announces the
//   slot's bytes on its `full` mbarrier and issues per step one TMA tile load of the
//   activations (tokens x 64 K, 128-byte swizzle, rows past M and K past the end zero-filled
//   by the copy engine) and one bulk copy per consumer of its weight chunks (elements +
//   scales of consecutive steps: one contiguous run), the weights with an evict-first L2
//   policy.
// - Warpgroups 1 and 2 are consumers, 64 weight rows each: per k64 step they wait on `full`,
//   read their chunk from shared memory (one 16-byte LDS per lane, + 16 for E4M3, one 4-byte
//   scale LDS), decode it in registers into the wgmma A fragments with the E8M0 scale folded
//   into the 16-bit weights (exact: the backend runs this kernel only for scale codes inside
//   scale_in_weights_range), and issue 4 wgmma.m64nNk16 (N = tokens) with the activations as
//   the shared-memory B operand. While a step's group runs, the warpgroup decodes the next
//   step into a second register buffer; then the group retires (wait_group 0: ptxas
//   serialises all wgmma when A registers of a group in flight are written, C7513, seen with
//   wait_group 1); after a stage's last step the slot goes back to the producer. The two
//   warpgroups' MMAs and decodes interleave on the SM sub-partitions besides.
// - K halves (KH = 2, 16 tokens, 4 consumer warpgroups on a 128-row item, dense only):
//   consumers c and c + 2 share row block c and take the even / odd k64 steps of each ring
//   stage; at the item's end the odd half passes its partial sums to the even one through the
//   reduction buffer (two named barriers per pair), which adds them (fixed order) and runs the
//   epilogue. Measured neutral on a full GPU (docs/cuda.md); kept for forced A/B runs.
// - Epilogue: bias + conversion; 16-bit dense outputs go through shared memory (stmatrix
//   .trans into swizzled [tokens][64 columns] tiles, double buffered) and TMA stores, F32 and
//   grouped outputs straight from the accumulators (gemm_config.h, epilogue_bytes). With
//   several splits, ranks 1.. store their FP32 partial sums into rank 0's shared memory (distributed
//   shared memory, st.async completing bytes on its `red_full` barrier); rank 0 adds them in rank order
//   (deterministic: no atomics in the result path) and releases the buffer through each rank's
//   `red_empty` barrier before the next round (256 tokens: 4 rounds per item, gemm_config.h).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/common/pdl.h"
#include "cuda/common/wgmma_rs.cuh"  // WgmmaRS
#include "cuda/common/wgmma_ss.cuh"  // WgmmaSS (FP8 with transform warpgroups)
#include "cuda/gemm/mx_gemm.cuh"  // decode_e4m3_scaled, multiplier_of_code, store_out
#include "cuda/hopper/fp8_layout.h"   // the FP8 chunk's offsets
#include "cuda/hopper/fp8_operand.h"  // the E4M3 operand decode
#include "cuda/hopper/gemm_config.h"
#include "cuda/hopper/gemm_device.cuh"  // KernelParams, fragment decodes, MoE epilogue
#include "cuda/hopper/layout_word.h"  // e2m1_operand_bits: the hopper E2M1 bit positions
#include "cuda/hopper/sm90_ptx.cuh"
#include "cuda/moe/gate_up_act.cuh"

namespace mxq::cuda::hopper {

template <typename T, bool kFp4, int NT, int C, int KH = 1, bool kFp8 = false, int TW = 0,
          bool kTiles = false>
struct KernelShape {
  static_assert(has_consumers(NT, C), "2 consumer warpgroups, 3 up to 64 tokens, 4 at 16");
  static_assert(has_k_halves(NT, C, KH), "K halves: 16 tokens, 4 consumers");
  static_assert(!kFp8 || (kFp4 && has_fp8_tile(NT, C, KH)), "FP8: MXFP4 weights, its tiles");
  static_assert(TW == 0 || (kFp8 && has_fp8_transform(NT, C, KH, TW)),
                "transform warpgroups: the FP8 128-token tile");
  static_assert(!kTiles || (kFp8 && TW == 0 && has_fp8_tiles(NT, C, KH)),
                "pre-decoded tiles: the FP8 128-token tile, no transform warpgroups");
  static constexpr int kRowBlocks = row_blocks(C, KH);  // consumers with rows of their own
  static constexpr int kTransform = TW;                 // transform warpgroups (FP8)
  static constexpr int kATile = 64 * 128;               // one row block's decoded tile (TW > 0)
  static constexpr int kStages = stages(NT, kFp4, C, KH, kFp8, TW, kTiles);  // ring stages
  static constexpr int kStageSteps = stage_steps(NT, C, kFp8);  // k64 / k128 steps per stage
  static constexpr int kStepK = step_k(kFp8);                   // K elements per step
  static constexpr int kActBytes = act_stage_bytes(NT);
  static constexpr int kChunk = chunk_bytes(kFp4, kFp8, kTiles);  // per row block and step
  static constexpr int kChunkW = kChunk - 128;
  static constexpr int kLaneBytes = kFp4 ? 16 : 32;
  static constexpr int kAcc = NT / 2;                 // accumulators per consumer thread
  static constexpr int kRedBytes = reduce_bytes(NT, C, KH, TW, kTiles);  // reduction / epilogue
  static constexpr int kPairBytes = pair_bytes(NT, C, KH);   // K halves: the hand-off
  static_assert(kPairBytes % 1024 == 0, "the next region stays 1024-aligned");
  static constexpr int kEpiRows = epilogue_rows(NT);       // tokens per epilogue TMA box
  static_assert(is_tail_tile(NT) || epilogue_bytes(NT, kRowBlocks) <= kRedBytes,
                "the epilogue tiles fit in the reduction buffer");
  static_assert(kRedBytes % 1024 == 0, "the next region stays 1024-aligned");
  static constexpr int kRedRounds = reduce_rounds(NT);      // split K: reduction rounds
  static constexpr int kRedFloats = reduce_round_floats(NT);  // accumulators per round
  static_assert(kRedRounds * kRedFloats == kAcc && kRedFloats % 4 == 0, "whole float4 rounds");
  static constexpr int kSmem = smem_bytes(NT, kFp4, C, KH, kFp8, TW, kTiles);
  static constexpr int kConsumers = C;
  static constexpr int kThreads = threads(C, TW);
  static_assert(TW == 0 || (3 * kStages + 2) * 8 <= kBarrierBytes, "full, empty, a_full barriers");
  static constexpr int kItemRows = item_rows(C, KH);
  static constexpr int kMain = main_tokens(NT), kTail = tail_tokens(NT);  // wgmma N of each
  static constexpr int kBox = box_rows(NT), kBoxes = NT / kBox;  // TMA boxes per stage
  static_assert(kMain == 16 || kMain == 32 || kMain == 64 || kMain == 128 || kMain == 256,
                "wgmma N");
  static_assert(kTail == 0 || kTail == 16 || kTail == 32, "tail wgmma N");
  static_assert(kBoxes * kBox == NT && (kBox * 128) % 1024 == 0, "whole swizzle atoms per box");
  static_assert(kStages >= 2, "a step in flight and the next one decoded");
};


// kMoE: the grouped instance (KernelParams' MoE fields); otherwise the dense GEMM. KH: K halves
// inside the CTA (gemm_config.h, has_k_halves; dense only).
// kFp8: the FP8 path (gemm_config.h, has_fp8_tile): E4M3 activation codes, MXFP4 weights in
// the FP8 layout (fp8_layout.h) decoded to E4M3 operands by fp8_operand.h, wgmma.m64nNk32.e4m3,
// each ring stage (k128) summed by the tensor core into a stage accumulator and added into the
// FP32 accumulators (the promotion measured in docs/cuda.md), the row and token scales in the
// epilogue. T is then the 16-bit output type (or BF16 for F32 outputs).
// TW: transform warpgroups (FP8, has_fp8_transform): warpgroups 1..TW decode each stage's
// weight chunks into E4M3 tiles in shared memory (a_full[stage] announces them) and the
// consumers (warpgroups TW + 1..) issue shared-memory wgmma on them; TW = 0: the consumers
// decode into registers (register-A wgmma).
// kTiles: FP8 with the weights pre-decoded into E4M3 tiles (gemm_config.h, has_fp8_tiles;
// fp8_predecode.h): the producer copies the tiles where the chunks would go and the consumers
// run the shared-memory wgmma loop of the transform variant on them (no a_full: the tiles are
// complete once the copy lands).
template <typename T, bool kFp4, int NT, int C, bool kMoE, int KH = 1, bool kFp8 = false,
          int TW = 0, bool kTiles = false>
__global__ void __launch_bounds__(threads(C, TW), 1)
    hopper_gemm_kernel(const __grid_constant__ CUtensorMap x_map,
                       const __grid_constant__ CUtensorMap y_map, const KernelParams p) {
#if MXQ_HAS_WGMMA
  using S = KernelShape<T, kFp4, NT, C, KH, kFp8, TW, kTiles>;
  static_assert(KH == 1 || !kMoE, "K halves: dense only");
  static_assert(!kFp8 || !kMoE, "FP8: dense only (for now)");
  static_assert(!kFp8 || kTiles || S::kChunk == fp8::Fp8Layout::kChunkBytes, "the FP8 chunk");
  // The pre-decoded tiles are wgmma operands in place: every one starts on a 1024-byte
  // swizzle atom (the weight region follows 1024-aligned regions; tiles are 8 KB).
  static_assert(!kTiles || (S::kStages * S::kStageSteps * S::kActBytes) % 1024 == 0,
                "the weight region stays 1024-aligned");
  constexpr int R = S::kRowBlocks;
  constexpr bool kTmaEpilogue = !kMoE;  // (the grouped GEMMs' epilogues are their own)
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) &
                                             ~uintptr_t(1023));
  // Stage s holds k64 steps s * kStageSteps + j: activation tile j at act[s * kStageSteps + j]
  // (kActBytes each, 1024-aligned), and row block b's chunks of its steps contiguously at
  // wts[((s * R + b) * kStageSteps + j) * kChunk] (one bulk copy).
  constexpr int SPS = S::kStageSteps;
  // The reduction buffer (also the epilogue's swizzled tiles: 1024-aligned) follows the
  // activation tiles, then the K halves' hand-off, the weight chunks and the barriers.
  uint8_t* act = smem;
  float* red = reinterpret_cast<float*>(act + S::kStages * SPS * S::kActBytes);
  float* pair = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(red) + S::kRedBytes);
  // TW > 0: the decoded weight tiles, [stage][row block] x 8 KB (1024-aligned: the swizzle).
  uint8_t* atiles = reinterpret_cast<uint8_t*>(pair) + S::kPairBytes;
  uint8_t* wts = atiles + (TW > 0 ? S::kStages * R * S::kATile : 0);
  uint64_t* full = reinterpret_cast<uint64_t*>(wts + S::kStages * R * SPS * S::kChunk);
  uint64_t* empty = full + S::kStages;
  uint64_t* red_full = empty + S::kStages;
  uint64_t* red_empty = red_full + 1;
  uint64_t* a_full = red_empty + 1;  // TW > 0: a stage's decoded tiles written (kStages)
  // FP8: the 15 shift tables (fp8_operand.h), after the barriers.
  uint32_t* tables = reinterpret_cast<uint32_t*>(reinterpret_cast<uint8_t*>(full) + kBarrierBytes);

  const int splits = p.splits;
  const uint32_t rank = splits > 1 ? sm90::cluster_rank() : 0u;
  if (threadIdx.x == 0) {
    for (int s = 0; s < S::kStages; ++s) {
      sm90::mbar_init(&full[s], 1);
      sm90::mbar_init(&empty[s], R * 4);  // lane 0 of every warp of the stage's consumers
    }
    sm90::mbar_init(red_full, 1);  // rank 0's arrive.expect_tx of a round's bytes
    sm90::mbar_init(red_empty, 128 * R);
    if constexpr (TW > 0)
      for (int s = 0; s < S::kStages; ++s) sm90::mbar_init(&a_full[s], 128 * TW);
    sm90::fence_mbar_init();
  }
  if constexpr (kFp8) {
    if (threadIdx.x < fp8::kShifts) {
      const fp8::ShiftTable tab = fp8::shift_table(fp8::kMinShift + int(threadIdx.x));
      tables[2 * threadIdx.x] = tab.lo;
      tables[2 * threadIdx.x + 1] = tab.hi;
    }
  }
  // Every barrier of the cluster is initialised before any copy or remote arrive uses it.
  if (splits > 1)
    sm90::cluster_sync();
  else
    __syncthreads();

  const int cluster = int(blockIdx.x) / splits, clusters = int(gridDim.x) / splits;
  const int kt_begin = int(rank) * p.ksteps / splits, kt_end = (int(rank) + 1) * p.ksteps / splits;
  // Warp-uniform by construction (lane 0's value), which ptxas can see: a branch on it (the K
  // halves' second half) is then not a divergent path, around which ptxas would serialise the
  // wgmma (C7520).
  const int wg = __shfl_sync(0xFFFFFFFFu, int(threadIdx.x) / 128, 0);

  // Launched with programmatic stream serialization (gemm_launch.cuh, common/pdl.h): the
  // kernel after this one may be scheduled as soon as every CTA got here; it waits for this
  // grid's completion before it touches its results.
  pdl::launch_dependents();
  if (wg == 0) {
    // ---- producer ----------------------------------------------------------------------
    sm90::regs_dealloc<40>();
    if (threadIdx.x == 0) {
      sm90::prefetch_tensor_map(&x_map);
      // The weight chunks are evicted first (read by the few token tiles that run together);
      // the pre-decoded tiles are read by every token tile of their raster group
      // (raster_group, item_coords), so they take the normal policy.
      const uint64_t policy = kTiles ? sm90::l2_evict_normal() : sm90::l2_evict_first();
      if constexpr (!kMoE && !kTiles) {
        // While the kernel before (the FP8 activation quantize, which triggers its dependents
        // at its start; or the caller's) still runs, the first item's first ring-full of weight
        // chunks goes into L2 (weights: written by no kernel of the stream), then the
        // activations are waited for. The grouped GEMMs wait first: which experts an item
        // reads is the dispatch's result.
        if (cluster < p.items) {
          const int nb = cluster % p.n_blocks;
          const int n = min(S::kStages, kt_end - kt_begin);
          for (int c = 0; c < R && n > 0; ++c) {
            const int b64 = min(nb * R + c, p.n64 - 1);
            sm90::bulk_prefetch_l2(p.w + (size_t(b64) * p.ksteps + kt_begin) * S::kChunk,
                                   uint32_t(n * S::kChunk));
          }
        }
      }
      // (Pre-decoded tiles: the kernel before, the pre-pass, writes them: nothing is read
      // before this wait.)
      pdl::wait();
      int slot = 0;
      uint32_t phase = 0;
      for (int item = cluster; item < p.items; item += clusters) {
        const auto [nb, mt] = item_coords(p, item);
        const uint8_t* wblk = p.w + size_t(nb) * R * size_t(p.ksteps) * S::kChunk;
        if constexpr (kMoE) {
          const int e = p.block_expert[mt];
          if (e < 0) continue;  // past the dispatch's last block (the consumers skip it too)
          wblk += size_t(e) * size_t(p.expert_bytes);
        }
        // An item's steps fill stages of SPS steps from its first; the last may hold fewer
        // (the consumers count the same way).
        for (int kt = kt_begin; kt < kt_end; kt += SPS) {
          const int n = min(SPS, kt_end - kt);
          sm90::mbar_wait(&empty[slot], phase ^ 1u);
          // The consumers' reads of the slot (generic proxy, released through `empty`) are
          // ordered before the copies into it (async proxy) by a proxy fence after the
          // acquire: the conservative reading of the PTX memory model for a cross-proxy WAR
          // (CUTLASS's TMA pipelines go without). One instruction per stage in this thread,
          // measured neutral on the H200 (2026-12-05, gemm-hopper-e2m1-layout-ab); it does not
          // quiet racecheck's ring-wrap reports (tests/cuda/standalone/racecheck_ring_probe.cu).
          ptx::fence_proxy_async();
          sm90::mbar_arrive_expect_tx(&full[slot], uint32_t(n * (S::kActBytes + R * S::kChunk)));
#pragma unroll
          for (int j = 0; j < SPS; ++j) {
            if (j >= n) break;
#pragma unroll
            for (int bx = 0; bx < S::kBoxes; ++bx)
              sm90::tma_load_2d(act + (slot * SPS + j) * S::kActBytes + bx * S::kBox * 128, &x_map,
                                (kt + j) * S::kStepK, mt * NT + bx * S::kBox, &full[slot]);
          }
#pragma unroll
          for (int c = 0; c < R; ++c) {
            // With 3 consumers the last item of a column may reach past the layout's rows
            // (padded to 128): that consumer reads the last 64-row block again and its
            // results are never stored (rows >= N).
            const int b64 = min(nb * R + c, p.n64 - 1) - nb * R;
            sm90::bulk_load(wts + (slot * R + c) * SPS * S::kChunk,
                            wblk + (size_t(b64) * p.ksteps + kt) * S::kChunk, uint32_t(n * S::kChunk),
                            &full[slot], policy);
          }
          if (++slot == S::kStages) {
            slot = 0;
            phase ^= 1u;
          }
        }
      }
    }
    return;  // (barrier.cluster waits only for threads that have not exited)
  }

  if constexpr (TW > 0) {
    if (wg <= TW) {
      // ---- transform warpgroups (FP8, TW > 0) --------------------------------------------
      // Walk the ring as the consumers do (dense, splits 1, one k128 step per stage); per
      // stage, once its copies landed, warpgroup w decodes row blocks w, w + TW, .. with the
      // register-A decode (the same chunk and tables) and stores each fragment register where
      // the wgmma descriptor's K-major 128-byte-swizzled tile has its 4 bytes: row 16 warp + g
      // (+ 8), 16-byte chunk (2k + hi) ^ g of the row, bytes 4t..: STS.32, the 32 lanes of a
      // store on 32 distinct banks. Then the writes are made visible to the tensor core's
      // (async proxy) reads and a_full[stage] is arrived on by every thread. The stage's reuse
      // is ordered by the ring itself: the producer refills it only after both consumers
      // released it (`empty`), after their wgmma read the tiles.
      sm90::regs_dealloc<transform_regs(TW)>();
      const int warp = (int(threadIdx.x) >> 5) & 3, lane = int(threadIdx.x) & 31;
      const int g = lane >> 2, t = lane & 3;
      const uint32_t wts_addr = sm90::smem_addr(wts), tables_addr = sm90::smem_addr(tables);
      const uint32_t lane_tile = sm90::smem_addr(atiles) + uint32_t((16 * warp + g) * 128 + 4 * t);
      int slot = 0;
      uint32_t phase = 0;
      for (int item = cluster; item < p.items; item += clusters) {
        for (int kt = kt_begin; kt < kt_end; ++kt) {
          sm90::mbar_wait(&full[slot], phase);
#pragma unroll
          for (int b = wg - 1; b < R; b += TW) {
            uint32_t a[4][4];
            decode_fp8_chunk(wts_addr + uint32_t((slot * R + b) * S::kChunk), tables_addr, warp,
                             lane, a);
            const uint32_t tile = lane_tile + uint32_t((slot * R + b) * S::kATile);
#pragma unroll
            for (int k = 0; k < 4; ++k)
#pragma unroll
              for (int r = 0; r < 4; ++r)  // r: {lo g, lo g + 8, hi g, hi g + 8}
                sm90::sts_u32(tile + uint32_t((r & 1) * 8 * 128 + (((2 * k + (r >> 1)) ^ g) << 4)),
                              a[k][r]);
          }
          ptx::fence_proxy_async();
          sm90::mbar_arrive(&a_full[slot]);
          if (++slot == S::kStages) {
            slot = 0;
            phase ^= 1u;
          }
        }
      }
      return;
    }
  }

  // ---- consumers -------------------------------------------------------------------------
  sm90::regs_alloc<consumer_regs(C, TW)>();
  pdl::wait();  // the FP8 token scales, the MoE pair lists of the epilogue; the outputs' WAR
  const int c = (wg - 1 - TW) % R;            // row block: rows 64c..64c+63 of the item
  const int half = (wg - 1 - TW) / R;         // K halves: which stages of the ring (else 0)
  const int ct = int(threadIdx.x) - 128 * (1 + TW);  // consumer thread 0..128 C - 1
  const int warp = (int(threadIdx.x) >> 5) & 3, lane = int(threadIdx.x) & 31;
  const int g = lane >> 2, t = lane & 3;
  const int steps = kt_end - kt_begin;
  int slot = 0;  // the ring stage of the next unit to decode (parity `phase`)
  uint32_t phase = 0;
  uint32_t red_phase = 0;
  bool red_pending = false;  // ranks >= 1: rank 0 has not yet released the reduction buffer
  uint32_t epi_buf = 0;      // the epilogue tile (of two) the next TMA-store round writes
  uint32_t unit_parity = 0;  // K halves: parity of the ring units of the items before
  bool pair_pending = false; // K halves, second half: its last partial sums not yet taken

  const uint64_t act_desc = sm90::desc_kmajor_sw128(act);  // ring slot 0, k16 step 0
  const uint32_t wts_addr = sm90::smem_addr(wts);
  // The A fragments of one k64 step (4 k16 steps x 4 registers) from its chunk, step j of ring
  // stage `s`: one 16-byte LDS (+ 16 for E4M3) and one 4-byte scale LDS per lane, the four scale codes
  // biased at once (bias_scale_codes: exact for every code the backend sends here) and each
  // multiplier one byte permute + shift, the E8M0 scale folded into the 16-bit weights.
  const uint32_t tables_addr = sm90::smem_addr(tables);
  auto decode = [&](int s, int j, uint32_t(&a)[4][4]) {
    const uint32_t chunk = wts_addr + uint32_t(((s * R + c) * SPS + j) * S::kChunk);
    if constexpr (kFp8) {
      decode_fp8_chunk(chunk, tables_addr, warp, lane, a);  // one k128 step
      return;
    }
    const uint32_t sw = gemm::bias_scale_codes<T, kFp4>(
        sm90::lds_u32(chunk + uint32_t(S::kChunkW + warp * 32 + g * 4)));
    const uint32_t lane_w = chunk + uint32_t((warp * 32 + lane) * S::kLaneBytes);
    const uint4 q0 = sm90::lds_v4(lane_w);
#pragma unroll
    for (int blk = 0; blk < 2; ++blk) {
      const uint32_t m0 = gemm::multiplier_of_code<T>(sw, blk);      // rows g: code byte blk
      const uint32_t m1 = gemm::multiplier_of_code<T>(sw, 2 + blk);  // rows g + 8: byte 2 + blk
      if constexpr (kFp4) {
        decode_e2m1_word<T>(blk == 0 ? q0.x : q0.z, m0, m1, a[2 * blk]);
        decode_e2m1_word<T>(blk == 0 ? q0.y : q0.w, m0, m1, a[2 * blk + 1]);
      } else {
        const uint4 v = blk == 0 ? q0 : sm90::lds_v4(lane_w + 16);
        gemm::decode_e4m3_scaled<T>(v.x, v.y, m0, m1, a[2 * blk]);
        gemm::decode_e4m3_scaled<T>(v.z, v.w, m0, m1, a[2 * blk + 1]);
      }
    }
  };

  for (int item = cluster; item < p.items; item += clusters) {
    const auto [nb, mt] = item_coords(p, item);
    int expert = 0;
    if constexpr (kMoE) {
      expert = p.block_expert[mt];
      if (expert < 0) continue;
    }
    float acc[S::kAcc];
#pragma unroll
    for (int i = 0; i < S::kAcc; ++i) acc[i] = 0.0f;
    // FP8: the stage accumulator (each stage's 4 chained wgmmas, scale_d = 0 on the first),
    // added into acc once the stage's group has retired.
    float part[kFp8 ? S::kAcc : 1];
#pragma unroll
    for (int i = 0; i < (kFp8 ? S::kAcc : 1); ++i) part[i] = 0.0f;
    // FP8: a promotion group's sum into the FP32 accumulators; under fp8-dynamic-group128 (one
    // k128 stage per group: promote_stages 1) times the token's scale of the stage's group,
    // kt_begin + u (lane (g, t) holds tokens 8i + 2t + h, as the epilogue below).
    const int m_tile = mt;  // (a structured binding: not captured by the lambda)
    [[maybe_unused]] auto promote = [&](int u) {
      if (p.act_group_scale == nullptr) {
#pragma unroll
        for (int i = 0; i < S::kAcc; ++i) acc[i] += part[i];
        return;
      }
      const float* gs = p.act_group_scale + (kt_begin + u);
#pragma unroll
      for (int i = 0; i < NT / 8; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int tok = m_tile * NT + 8 * i + 2 * t + h;
          const float sg = tok < p.m ? __ldg(gs + int64_t(tok) * p.act_groups) : 0.0f;
          acc[4 * i + h] = fmaf(sg, part[4 * i + h], acc[4 * i + h]);
          acc[4 * i + 2 + h] = fmaf(sg, part[4 * i + 2 + h], acc[4 * i + 2 + h]);
        }
    };
    if constexpr (TW > 0 || kTiles) {
      // FP8 with transform warpgroups (or pre-decoded tiles, which are complete once their
      // copy lands: no a_full): per stage wait for its copies and its decoded tiles,
      // 4 chained shared-memory wgmma (A: this row block's tile, B: the activations; k32 step s
      // is 32 bytes into both tiles' 128-byte rows), retire them, promote, release the stage.
      // No decode here: the two consumers do not wait for each other, so one's promotion runs
      // while the other's MMAs keep the tensor core busy (one k128 stage per unit, splits 1).
      // stage 0, row block 0 (pre-decoded tiles: where the chunks go, one 8 KB tile per row
      // block and stage, the same offsets)
      const uint64_t a_desc = sm90::desc_kmajor_sw128(kTiles ? wts : atiles);
      const int group_mask = p.promote_stages - 1;  // 1, 2 or 4 (the host checks)
      for (int u = 0; u < steps; ++u) {
        const bool open = (u & group_mask) == 0;
        const bool close = (u & group_mask) == group_mask || u + 1 == steps;
        sm90::mbar_wait(&full[slot], phase);
        if constexpr (TW > 0) sm90::mbar_wait(&a_full[slot], phase);
        const uint64_t xs = act_desc + uint64_t(slot * (S::kActBytes >> 4));
        const uint64_t as = a_desc + uint64_t(((slot * R + c) * S::kATile) >> 4);
        ptx::wgmma_fence();
#pragma unroll
        for (int s = 0; s < 4; ++s)
          WgmmaSS<Fp8E4M3, S::kMain>::mma(part, as + uint64_t(2 * s), xs + uint64_t(2 * s),
                                          open && s == 0 ? 0 : 1);
        ptx::wgmma_commit();
        ptx::wgmma_wait<0>();
        if (close) promote(u);
        __syncwarp();
        if (lane == 0) sm90::mbar_arrive(&empty[slot]);
        if (++slot == S::kStages) {
          slot = 0;
          phase ^= 1u;
        }
      }
    } else {
      // Software pipeline inside the warpgroup: step i's wgmma group is issued, then step i + 1
      // is decoded into the other register buffer while the group runs, then the group retires
      // (wait_group 0) and its slot goes back to the producer. The decode never writes registers
      // of a group in flight (ptxas would serialise every wgmma: C7513), and the two buffers are
      // distinct arrays by a 2x unroll, never a run-time index.
      // The unit of the pipeline is a ring stage: its SPS k64 steps are decoded together (more
      // independent work between two waits: the decode is latency-bound at 2 warps per
      // scheduler) and issued as one wgmma group. An item's last stage may hold fewer steps
      // (n); the rest of its fragments are decoded from stale shared memory and never used.
      uint32_t a0[4 * SPS][4], a1[4 * SPS][4];
      const int units = (steps + SPS - 1) / SPS;
      // K halves: the item's units go alternately to the two halves by the ring's running unit
      // count (its parity before the item: unit_parity), so each half takes every other stage
      // of the ring whatever the items' lengths; this half's units are u0, u0 + 2, ... (`own` of
      // them; none when the item has one unit and it is the other half's). KH = 1: all of them.
      int u0 = 0;
      if constexpr (KH == 2) {
        u0 = int((uint32_t(half) ^ unit_parity) & 1u);
        unit_parity ^= uint32_t(units) & 1u;
      }
      const int own = units > u0 ? (units - u0 + KH - 1) / KH : 0;
      auto fetch = [&](uint32_t(&a)[4 * SPS][4]) {
        sm90::mbar_wait(&full[slot], phase);
#pragma unroll
        for (int j = 0; j < SPS; ++j)
          decode(slot, j, *reinterpret_cast<uint32_t(*)[4][4]>(&a[4 * j]));
      };
      auto advance = [&] {
        if (++slot == S::kStages) {
          slot = 0;
          phase ^= 1u;
        }
      };
      // Past unit u's stage, and past the other half's stage after it (K halves).
      auto advance_past = [&](int u) {
        advance();
        if (KH == 2 && u + 1 < units) advance();
      };
      if (KH == 2 && u0 == 1) advance();  // the other half's first unit
      int cur = slot;  // ring stage of the unit whose fragments are decoded
      if (own > 0) {
        fetch(a0);
        advance_past(u0);
      }
      auto step = [&](int u, uint32_t(&a)[4 * SPS][4], uint32_t(&next)[4 * SPS][4], bool more) {
        const int n = min(SPS, steps - u * SPS);
        // FP8: unit u opens a promotion group (its first wgmma zeroes `part`) every
        // promote_stages units, and closes one (acc += part) at the group's last unit or the
        // item's last (KH = 1 on this path, so u counts this rank's units).
        // promote_stages is 1, 2 or 4 (the host checks), so the group position is a mask.
        const int group_mask = kFp8 ? p.promote_stages - 1 : 0;
        [[maybe_unused]] const bool open = (u & group_mask) == 0;
        [[maybe_unused]] const bool close = (u & group_mask) == group_mask || u + 1 == units;
        // The descriptor's address field is (address >> 4) in 14 bits, which holds every shared
        // address, so offsets add to it directly (k16 step s: 32 bytes = 2).
        const uint64_t xs = act_desc + uint64_t(cur * SPS * (S::kActBytes >> 4));
        ptx::wgmma_fence();
#pragma unroll
        for (int j = 0; j < SPS; ++j) {
          // n >= 1 (u < units), so step 0 is always issued: no guard for it. A guard ptxas cannot
          // resolve puts a branch and a dummy HGMMA 64x8x16 into every group (SASS of 59436fe's
          // n256 loop: 10 HGMMA and 8 WARPGROUP.ARRIVE for 2 steps where 8 and 4 suffice), which
          // made the one-step-stage tiles (128 / 256 tokens and the tails) ~10% slower at large M.
          if (j > 0 && j >= n) break;
          const uint64_t xj = xs + uint64_t(j * (S::kActBytes >> 4));
          if constexpr (kFp8) {
            // k32 step s: 32 bytes into the 128-byte rows, as the 16-bit k16 step.
#pragma unroll
            for (int s = 0; s < 4; ++s)
              WgmmaRS<Fp8E4M3, S::kMain>::mma(part, a[4 * j + s], xj + uint64_t(2 * s),
                                              open && j == 0 && s == 0 ? 0 : 1);
          } else {
#pragma unroll
            for (int s = 0; s < 4; ++s) {
              // acc[0, kMain / 2) are the main tile's tokens, the rest the tail's (rows kMain.. of
              // the activation tile: kMain x 128 bytes on, whole 1024-byte swizzle atoms).
              WgmmaRS<T, S::kMain>::mma(*reinterpret_cast<float(*)[S::kMain / 2]>(&acc[0]),
                                        a[4 * j + s], xj + uint64_t(2 * s), 1);
              if constexpr (S::kTail != 0)
                WgmmaRS<T, S::kTail>::mma(
                    *reinterpret_cast<float(*)[S::kTail / 2]>(&acc[S::kMain / 2]), a[4 * j + s],
                    xj + uint64_t(2 * s + (S::kMain * 128 >> 4)), 1);
            }
          }
        }
        ptx::wgmma_commit();
        const int done = cur;
        if (more) {
          fetch(next);
          sm90::pin_registers(next);  // decoded before the wait below, not after
          cur = slot;
          advance_past(u + KH);
        }
        ptx::wgmma_wait<0>();
        if constexpr (kFp8) {
          if (close) promote(u);
        }
        // Every lane's reads of the slot (its LDS of step `done`) are ordered before lane 0's
        // release of it: without this, compute-sanitizer racecheck reports the producer's next
        // bulk copy into the slot against the other lanes' LDS at every wrap of the ring.
        __syncwarp();
        if (lane == 0) sm90::mbar_arrive(&empty[done]);
      };
      // `live` is true but opaque: with a constant condition ptxas hoists the first step's
      // wait_group above its decode (SASS, 2026-12-03); a branch around the decode keeps the
      // wait after it, as in the second step.
      const bool live = p.m > 0;
      int i = 0;  // this half's i-th unit: u0 + KH i
      for (; i + 2 <= own; i += 2) {
        step(u0 + KH * i, a0, a1, live);
        step(u0 + KH * (i + 1), a1, a0, i + 2 < own);
      }
      if (i < own) step(u0 + KH * i, a0, a1, false);
    }

    if constexpr (KH == 2) {
      // The second half's partial sums to the first through shared memory, [row block][float4
      // j][thread of the warpgroup] (a warp's lanes write 512 consecutive bytes), handed over
      // by named barrier 6 + c (full) and released by 8 + c (empty) once read, which the
      // second half waits for before writing again; the first half adds them (a fixed order:
      // deterministic) and goes on alone to the split reduction and the epilogue.
      const int wt = ct & 127;
      float* slot4 = pair + size_t(c) * (S::kAcc / 4) * 128 * 4;
      if (half == 1) {
        if (pair_pending) sm90::named_barrier_sync(8 + c, 256);
#pragma unroll
        for (int j = 0; j < S::kAcc / 4; ++j)
          *reinterpret_cast<float4*>(slot4 + (size_t(j) * 128 + wt) * 4) =
              make_float4(acc[4 * j], acc[4 * j + 1], acc[4 * j + 2], acc[4 * j + 3]);
        sm90::named_barrier_arrive(6 + c, 256);
        pair_pending = true;
        continue;
      }
      sm90::named_barrier_sync(6 + c, 256);
#pragma unroll
      for (int j = 0; j < S::kAcc / 4; ++j) {
        const float4 v = *reinterpret_cast<const float4*>(slot4 + (size_t(j) * 128 + wt) * 4);
        acc[4 * j] += v.x;
        acc[4 * j + 1] += v.y;
        acc[4 * j + 2] += v.z;
        acc[4 * j + 3] += v.w;
      }
      if (item + clusters < p.items) sm90::named_barrier_arrive(8 + c, 256);
    }

    if (splits > 1) {
      // The partial sums go through rank 0's buffer in kRedRounds rounds of kRedFloats
      // accumulators per thread (one round up to 128 tokens; 256 tokens: 4, gemm_config.h),
      // each round one red_full / red_empty round trip; rank 0 adds them in rank order. The
      // partial sums travel as st.async stores that complete bytes on rank 0's red_full (one
      // expect_tx per round): a remote store + arrive.release.cluster per thread compiled to
      // MEMBAR.ALL.GPU + ERRBAR per warp (SASS, 2026-12-04).
      // Buffer layout [rank - 1][float4 j of the round][consumer thread]: the 32 lanes of a
      // warp store / load 512 consecutive bytes per instruction. (Thread-major slots, 256 B
      // apart, put all lanes on the same banks: 32 wavefronts per instruction on both sides,
      // measured on the H200 as ~6 us per item for 64 floats a thread, 2026-12-04.)
      constexpr int RR = S::kRedRounds, RF = S::kRedFloats, kRedThreads = 128 * R;
      auto red_slot = [&](int r, int j) {  // float4 j of this thread's partial sums of rank r
        return red + (size_t((r - 1) * (RF / 4) + j) * kRedThreads + size_t(ct)) * 4;
      };
      if (rank != 0) {
#pragma unroll
        for (int q = 0; q < RR; ++q) {
          if (red_pending) sm90::mbar_wait_cluster(red_empty, red_phase ^ 1u);
#pragma unroll
          for (int i = 0; i < RF; i += 4)
            sm90::st_async_v4(red_slot(int(rank), i / 4), 0,
                              make_float4(acc[q * RF + i], acc[q * RF + i + 1],
                                          acc[q * RF + i + 2], acc[q * RF + i + 3]),
                              red_full);
          red_pending = true;
          red_phase ^= 1u;
        }
        continue;
      }
#pragma unroll
      for (int q = 0; q < RR; ++q) {
        // The round's bytes from every other rank (st.async transactions; they may land
        // before this expect, which the transaction count allows).
        if (ct == 0)
          sm90::mbar_arrive_expect_tx(red_full, uint32_t((splits - 1) * kRedThreads * RF * 4));
        sm90::mbar_wait(red_full, red_phase);
        red_phase ^= 1u;
        for (int r = 1; r < splits; ++r) {
#pragma unroll
          for (int i = 0; i < RF; i += 4) {
            const float4 v = *reinterpret_cast<const float4*>(red_slot(r, i / 4));
            acc[q * RF + i] += v.x;
            acc[q * RF + i + 1] += v.y;
            acc[q * RF + i + 2] += v.z;
            acc[q * RF + i + 3] += v.w;
          }
        }
        // The last round's release waits for the epilogue when its tiles reuse the buffer.
        if (!(kTmaEpilogue && p.tma_store && q == RR - 1))
          for (int r = 1; r < splits; ++r) sm90::mbar_arrive_cluster(red_empty, uint32_t(r));
      }
    }

    // Epilogue: lane (g, t) of warp `warp` holds rows row0 and row0 + 8, tokens 8i + 2t + h.
    const int row0 = nb * S::kItemRows + c * 64 + warp * 16 + g;
    if constexpr (kFp8) {
      // acc x 2^(base - 127) of the row x the token's activation scale: the power of two is
      // exact, so this is the reference's one product s x acc (scale_rows, fake_quant.h).
      const bool in = row0 < p.n;  // N % 16 == 0: row0 + 8 < N too
      const float r0 = in ? p.row_mul[row0] : 0.0f, r1 = in ? p.row_mul[row0 + 8] : 0.0f;
#pragma unroll
      for (int i = 0; i < NT / 8; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int tok = mt * NT + 8 * i + 2 * t + h;
          const float st = p.act_row_scale == nullptr ? p.act_scale
                           : tok < p.m                ? __ldg(p.act_row_scale + tok)
                                                      : 0.0f;
          acc[4 * i + h] *= r0 * st;
          acc[4 * i + 2 + h] *= r1 * st;
        }
    }
    if constexpr (!kMoE) {
      if (p.bias != nullptr) {  // added only when present: -0 sums stay -0 without a bias
        const bool in = row0 < p.n;  // N % 16 == 0: row0 + 8 < N too
        const float b0 = in ? p.bias[row0] : 0.0f, b1 = in ? p.bias[row0 + 8] : 0.0f;
#pragma unroll
        for (int i = 0; i < S::kAcc; i += 4) {
          acc[i] += b0;
          acc[i + 1] += b0;
          acc[i + 2] += b1;
          acc[i + 3] += b1;
        }
      }
    }
    if constexpr (kMoE) {
      moe_epilogue<T, NT>(p, expert, mt, row0, t, acc);
    } else if (kTmaEpilogue && p.tma_store) {
      // Through shared memory (gemm_config.h, epilogue_bytes): rounds of kEpiRows tokens; per
      // round this warpgroup's tile [kEpiRows tokens][64 columns] is written by stmatrix .trans
      // (warp w's 16 rows are columns 16w.. of the tile: 16-byte chunks 2w and 2w + 1 of each
      // 128-byte token row, XOR-swizzled by the row as the tensor map's 128-byte swizzle reads
      // them) and stored by one thread with one TMA box; rows past M and columns past N are
      // clipped by the copy engine. Each warpgroup has two tiles: a round waits only for the
      // store of two rounds ago to have read its tile.
      constexpr int ER = S::kEpiRows;
      constexpr uint32_t kTileBytes = uint32_t(ER * 128);
      const bool issuer = (ct & 127) == 0;
      // Split items: both warpgroups' reduction reads of the buffer are done before a tile is
      // written into it (the tiles and the partial-sum slots interleave).
      if (splits > 1) sm90::named_barrier_sync(1, 128 * R);
      uint8_t* tiles = reinterpret_cast<uint8_t*>(red) + c * 2 * kTileBytes;
      const int mat = lane >> 3, mrow = lane & 7;  // stmatrix x4: this lane's matrix and row
#pragma unroll
      for (int q = 0; q < NT / ER; ++q) {
        const uint32_t tile = sm90::smem_addr(tiles + epi_buf * kTileBytes);
        if (issuer) sm90::bulk_wait_group_read<1>();
        sm90::named_barrier_sync(2 + c, 128);
#pragma unroll
        for (int i = 0; i < ER / 8; i += 2) {
          // Matrices: (token block i, rows g), (i, rows g + 8), (i + 1, g), (i + 1, g + 8).
          const int b = q * (ER / 8) + i;  // token block of acc
          const int row = 8 * (i + (mat >> 1)) + mrow;
          const uint32_t addr = tile + uint32_t(row * 128 + (((2 * warp + (mat & 1)) ^ mrow) << 4));
          sm90::stmatrix_x4_trans(addr, pack_pair<T>(acc[4 * b], acc[4 * b + 1]),
                                  pack_pair<T>(acc[4 * b + 2], acc[4 * b + 3]),
                                  pack_pair<T>(acc[4 * b + 4], acc[4 * b + 5]),
                                  pack_pair<T>(acc[4 * b + 6], acc[4 * b + 7]));
        }
        ptx::fence_proxy_async();  // the tile's writes visible to the TMA store
        sm90::named_barrier_sync(2 + c, 128);
        if (issuer) {
          sm90::tma_store_2d(&y_map, tiles + epi_buf * kTileBytes, nb * S::kItemRows + c * 64,
                             mt * NT + q * ER);
          sm90::bulk_commit_group();
        }
        epi_buf ^= 1u;
      }
      if (splits > 1) {
        // The buffer goes back to the other ranks once this warpgroup's stores have read it.
        if (issuer) sm90::bulk_wait_group_read<0>();
        sm90::named_barrier_sync(2 + c, 128);
        for (int r = 1; r < splits; ++r) sm90::mbar_arrive_cluster(red_empty, uint32_t(r));
      }
    } else if (row0 < p.n) {  // N % 16 == 0: row0 + 8 < N too
#pragma unroll
      for (int i = 0; i < NT / 8; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int tok = mt * NT + 8 * i + 2 * t + h;
          if (tok < p.m) {
            gemm::store_out<T>(p.y, int64_t(tok) * p.ldy + row0, acc[4 * i + h], p.out_f32);
            gemm::store_out<T>(p.y, int64_t(tok) * p.ldy + row0 + 8, acc[4 * i + 2 + h], p.out_f32);
          }
        }
    }
  }
  // The shared-memory tiles outlive their last TMA store.
  if constexpr (kTmaEpilogue)
    if (p.tma_store && (ct & 127) == 0) sm90::bulk_wait_group_all();
  // Ranks >= 1 stay until rank 0 has read their last partial sums (their shared memory and
  // barrier must outlive its remote arrive).
  if (splits > 1 && rank != 0 && red_pending) sm90::mbar_wait_cluster(red_empty, red_phase ^ 1u);
  // No CTA of a cluster exits while another may still touch its shared memory (the remote
  // partial stores and barrier arrives): every consumer thread of the cluster meets here once
  // (the producers have exited, which barrier.cluster allows). This is
  // the CUDA rule for distributed shared memory; compute-sanitizer racecheck reported the
  // partial stores as writes into "a block that might have already exited" without it.
  if (splits > 1) {
    __syncwarp();
    sm90::cluster_sync();
  }
#else
  (void)x_map; (void)p;
  __trap();
#endif
}

}  // namespace mxq::cuda::hopper
