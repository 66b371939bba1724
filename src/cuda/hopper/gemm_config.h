// The cuda-hopper GEMM's launch decision (host code): one printable config, chosen once per
// call by choose_hopper_config (gemm.cu) and consumed by the launcher; the compile-time shape
// constants below are shared with the kernel (gemm_kernel.cuh) so the two cannot disagree.
#pragma once

#include <string>

namespace mxq::cuda::hopper {

// CTA: one producer warpgroup (one thread issues the bulk copies) + C = 2, 3 or 4 consumer
// warpgroups, each owning 64 weight rows (wgmma M = 64, the weights as register A: "swap AB")
// of an item of 64 x C rows, and the item's `tokens` activation rows as wgmma N.
//
// Up to 64 tokens a k64 step is decode-bound (the same weights cost the same whatever the
// tokens), so these tiles also come with 3 consumer warpgroups (3 warps per scheduler, 152
// registers each: 128 x 40 + 384 x 152 <= 64K): 192-row items, fewer of them, which the cost
// model (gemm.cu) takes where they fill the GPU better (measured: per row the two are about
// as fast, so the choice is one of tiling). 128 and 256 tokens need their accumulators (64 /
// 128 registers): 2 consumer warpgroups, 232 registers each.
// 4 consumer warpgroups (640 threads, 4 warps per scheduler: the decode is latency-bound, so
// more warps per scheduler move more rows per cycle) for the 16-token tile: 256-row items.
constexpr bool has_consumers(int tokens, int c) {
  return c == 2 || (c == 3 && tokens <= 64) || (c == 4 && tokens <= 16);
}
// K halves inside the CTA (kh = 2; 16 tokens, 4 consumer warpgroups, dense): the 4-warps-per-
// scheduler decode rate of 256-row items on 128-row items, without splitting K across more CTAs
// of a cluster. Consumers c and c + 2 own the same 64 rows; the ring's stages (the 2-consumer
// stage, unchanged for the producer) go alternately to consumers 0-1 and 2-3, and 2-3 hand their
// partial sums to 0-1 through shared memory (pair_bytes) before the epilogue. kh = 1: every
// consumer owns its own 64 rows and takes every stage.
constexpr bool has_k_halves(int tokens, int c, int kh) {
  return kh == 1 || (kh == 2 && c == 4 && tokens == 16);
}
// The 64-row blocks of an item (the consumers that own distinct rows).
constexpr int row_blocks(int c, int kh) { return c / kh; }
// Token tiles with a tail (grouped GEMMs only): 80 = 64 + 16, 144 = 128 + 16, 288 = 256 + 32
// tokens. One decode of the weights feeds two wgmma, the main one (N = 64 / 128 / 256) and
// a tail one (N = 16 / 32) over the tile's last rows, so that an expert whose count is a bit
// above a power of two takes one item instead of two: gpt-oss-120b at M = 8192 has 256 +- 16
// pairs per expert, half of which spilled into a second, nearly empty 256-token block.
constexpr int main_tokens(int tokens) {
  return tokens == 80 ? 64 : tokens == 144 ? 128 : tokens == 288 ? 256 : tokens;
}
constexpr int tail_tokens(int tokens) { return tokens - main_tokens(tokens); }
constexpr bool is_tail_tile(int tokens) { return tail_tokens(tokens) != 0; }
// Every token tile: the dense GEMM has the first five (kDenseTiles), the grouped GEMMs all
// (kTokenTiles). tile_index is the position in kTokenTiles, -1 for a size that is no tile.
constexpr int kDenseTiles[] = {16, 32, 64, 128, 256};
constexpr int kTokenTiles[] = {16, 32, 64, 80, 128, 144, 256, 288};
constexpr int kTokenTileCount = 8;
constexpr int tile_index(int tokens) {
  for (int i = 0; i < kTokenTileCount; ++i)
    if (kTokenTiles[i] == tokens) return i;
  return -1;
}
// TMA boxes hold at most 256 rows: 288-token tiles load as 3 boxes of 96 rows.
constexpr int box_rows(int tokens) { return tokens <= 256 ? tokens : tokens / 3; }
// tw: the FP8 path's transform warpgroups (has_fp8_transform below), after the producer.
constexpr int threads(int c, int tw = 0) { return 128 * (1 + tw + c); }
constexpr int item_rows(int c, int kh = 1) { return 64 * row_blocks(c, kh); }
// setmaxnreg: the consumers take what the producer (40 registers) gives back of the launch's
// 65536 / threads (rounded down to 8): 2: 232; 3: 128 + 88 x 128 / 384 -> 152; 4: 96 + 56 x
// 128 / 512 -> 104.
// With transform warpgroups (FP8, 2 consumers): 1: the launch's 128, the transform keeps 96,
// the consumers take 128 + (88 x 128 + 32 x 128) / 256 -> 184; 2: the launch's 96 (640
// threads), the transforms keep 56, the consumers 96 + (56 x 128 + 40 x 256) / 256 -> 160.
constexpr int consumer_regs(int c, int tw = 0) {
  return tw == 1 ? 184 : tw == 2 ? 160 : c == 4 ? 104 : c == 3 ? 152 : 232;
}
constexpr int transform_regs(int tw) { return tw == 1 ? 96 : 56; }
// Dynamic shared memory per CTA (227 KB on sm_90).
constexpr int kSmemLimit = 232448;
constexpr int kMaxStages = 24;

// The FP8 path (issue 17; `fp8` below): MXFP4 weights folded into E4M3 operands for
// wgmma.m64nNk32.e4m3 (fp8_layout.h, fp8_operand.h), E4M3 activation codes. Its K step is k128:
// 128 activation bytes per token row, the bytes of the 16-bit k64 step, so the activation tile,
// its TMA box and the 128-byte swizzle are the same; its chunk (64 rows x k128: operand words +
// shift-table indices) is Fp8Layout::kChunkBytes. One k128 step per ring stage: a stage is
// promoted from the tensor core's accumulator into FP32 registers (docs/cuda.md: the FP8 MMA
// does not add in FP32), and its weight copies are already 4352 bytes, the size that streams at
// the copy rate (stage_steps below). Tiles: 16 .. 128 tokens (the stage accumulator doubles the
// accumulators: 256 tokens would need 256 registers), 2 consumers, 3 up to 64 tokens, 4 at 16;
// no K halves, dense only (MoE on FP8 is the next step).
constexpr bool has_fp8_tile(int tokens, int c, int kh) {
  return kh == 1 && (tokens == 16 || tokens == 32 || tokens == 64 || tokens == 128) &&
         has_consumers(tokens, c);
}
constexpr int kFp8DenseTiles[] = {16, 32, 64, 128};
// FP8 with transform warpgroups (docs/cuda.md, "The FP8 path", plan 1): at 128 tokens the
// register-A consumers are decode-bound (ncu: 1074 cycles per k128 stage against 512 for its
// MMAs, 2 warps per scheduler cannot hide the LDS -> PRMT chains, and the FP32 promotion sits
// between one stage's wgmma and the next). Here tw = 1 or 2 warpgroups (one thread per lane
// of the register-A decode, the same chunk and tables) decode each stage's two row blocks into
// E4M3 tiles in shared memory (64 rows x 128 bytes, K-major, 128-byte swizzle: the layout of
// the activation tiles) and the 2 consumers only issue shared-memory wgmma
// (wgmma_ss.cuh) and promote: the decode runs beside the MMAs instead of between them, and
// two consumers that do not wait for each other keep the tensor core busy while one promotes.
constexpr bool has_fp8_transform(int tokens, int c, int kh, int tw) {
  return tw == 0 || (kh == 1 && tokens == 128 && c == 2 && (tw == 1 || tw == 2));
}
// The decoded tiles of one stage: 8 KB per row block (a ring stage holds them beside its
// chunks, so the ring's barriers order their reuse too).
constexpr int a_tile_bytes(int c, int tw) { return tw > 0 ? c * 64 * 128 : 0; }
// FP8 with pre-decoded weights (`tiles`; docs/cuda.md, "The FP8 path", plan 1b): for large M
// (MMA-bound, where the decode in the GEMM is what bounds the register-A kernel) a pre-pass
// (fp8_predecode.h) decodes the FP8 chunks once into E4M3 tiles in global memory, each 64 rows
// x k128 already in the K-major 128-byte-swizzled order of a wgmma shared-memory operand, and
// the GEMM's producer bulk-copies them into the ring in place of the chunks: the consumers only
// issue shared-memory wgmma and promote (the transform warpgroups' consumer loop), no decode
// and no transform warpgroups. 128 tokens, 2 consumers (acc + stage accumulator: 128
// registers), no split (the tile is for GEMMs with many items).
constexpr bool has_fp8_tiles(int tokens, int c, int kh) {
  return kh == 1 && tokens == 128 && c == 2;
}
constexpr int kFp8TileBytes = 64 * 128;  // fp8_predecode.h kTileBytes (static_assert there)
constexpr int kFp8ChunkBytes = 4352;  // fp8::Fp8Layout::kChunkBytes (static_assert in the kernel)
constexpr int kFp8TableBytes = 128;   // the 15 shift tables (8 bytes each) in shared memory
// What the producer copies per 64-row block and layout step (hopper/layout.h, fp8_layout.h,
// fp8_predecode.h).
constexpr int chunk_bytes(bool fp4, bool fp8 = false, bool tiles = false) {
  return tiles ? kFp8TileBytes : fp8 ? kFp8ChunkBytes : (fp4 ? 2048 : 4096) + 128;
}
// K elements per layout step: k64 for 16-bit activations, k128 for E4M3 (same bytes per row).
constexpr int step_k(bool fp8) { return fp8 ? 128 : 64; }
constexpr int act_stage_bytes(int tokens) { return tokens * 128; }  // tokens x 128 bytes of K
// k64 steps per ring stage: one full / empty barrier round and one bulk copy per consumer
// (its chunks of consecutive steps are contiguous in the layout) for that many steps. A CTA's
// ring moves a bounded number of stages per microsecond whatever their size, so small stages
// starve the small-token tiles: measured on the H200 (bench/experiments/stream_floor.py,
// 2026-12-04, the bytes of an 8192 x 8192 MXFP4 matrix over 128 CTAs, no decode or MMA), one
// step per stage (2 copies of 2176 bytes) streams 2.0 TB/s (17.8 us), two steps per stage
// (2 copies of 4352) 2.95 TB/s (12.1 us), four no more (12.0); 28672 x 8192: 2.4 TB/s against
// 4.0 (the copy bandwidth). From 128 tokens the activation tile alone is 16 KB a step.
// (FP8: one k128 step per stage, see above.)
constexpr int stage_steps(int tokens, int, bool fp8 = false) {
  return fp8 ? 1 : tokens <= 64 ? 2 : 1;
}
constexpr int stage_bytes(int tokens, bool fp4, int c, int kh = 1, bool fp8 = false,
                          int tw = 0, bool tiles = false) {
  return stage_steps(tokens, c, fp8) * (act_stage_bytes(tokens) +
                                        row_blocks(c, kh) * chunk_bytes(fp4, fp8, tiles) +
                                        a_tile_bytes(c, tw));
}
// Split K across the CTAs of a cluster (reduced through distributed shared memory) for token
// tiles up to 256: the reduction buffer holds (splits - 1) x 128 C threads x the floats of one
// reduction round (128 tokens, 2 splits: 64 KB, leaving a 7-stage (E2M1) / 6-stage (E4M3)
// ring; 16 tokens, 8 splits, 3 consumers: 84 KB, a 17 / 10-stage ring).
// 256 tokens split in 2: for the layers with 64 items of 128 rows (N = 8192) at M = 256, where
// unsplit 256-token items fill 64 of 132 SMs and two 128-token tiles decode every weight twice
// (8192^2 M = 256: 57.0 us against cuBLAS BF16's 45.8, gemm-hopper.md). Its 128 accumulators
// per thread go through a 32 KB buffer in 4 rounds of 32, so the ring keeps 5 (E2M1) / 4 (E4M3)
// stages of 36-40 KB instead of 6 / 5 (a 128 KB buffer would leave 2).
// (FP8 with transform warpgroups or pre-decoded tiles: no split; their tile is for the GEMMs
// with many items, and the ring keeps its stages.)
constexpr int max_splits(int tokens, int c, int tw = 0, bool tiles = false) {  // (4: either kh)
  return tw > 0 || tiles ? 1
         : c == 4 ? 4
                  : tokens <= 16 ? 8 : tokens <= 32 ? 4 : tokens <= 128 || tokens == 256 ? 2 : 1;
}
constexpr int reduce_rounds(int tokens) { return tokens == 256 ? 4 : 1; }
constexpr int reduce_round_floats(int tokens) { return tokens / 2 / reduce_rounds(tokens); }
constexpr int epilogue_bytes(int tokens, int c);
constexpr int reduce_bytes(int tokens, int c, int kh = 1, int tw = 0, bool tiles = false) {
  return tw > 0 || tiles ? epilogue_bytes(tokens, c)  // (no split: only the epilogue's tiles)
                : (max_splits(tokens, c) - 1) * 128 * row_blocks(c, kh) *
                      reduce_round_floats(tokens) * 4;
}
// K halves: the second half's partial sums, one float per accumulator and thread of its
// row_blocks warpgroups (16 tokens: 8 KB).
constexpr int pair_bytes(int tokens, int c, int kh) {
  return kh == 2 ? row_blocks(c, kh) * 128 * (tokens / 2) * 4 : 0;
}
// The dense epilogue for 16-bit outputs goes through shared memory and TMA stores: each
// consumer warpgroup writes its 64 rows x epilogue_rows(tokens) tokens of the output tile
// transposed into a [tokens][64 columns] tile (stmatrix .trans, 128-byte rows, 128-byte
// swizzle: conflict-free) and one thread stores it with one TMA box, double buffered, so the
// next round (or item) is written while the last one drains. (Direct stores of the swap-AB
// accumulators are 2-byte stores scattered over 8 output rows per warp instruction.) The tiles
// live in the reduction buffer, which is free outside a split item's reduction: every dense
// tile has one at least this large (static_assert in KernelShape), so the ring keeps its
// stages. Tail tiles (grouped only) have neither.
constexpr int epilogue_rows(int tokens) { return tokens < 64 ? tokens : 64; }
constexpr int epilogue_bytes(int tokens, int c) { return 2 * c * epilogue_rows(tokens) * 128; }
// 2 x kMaxStages + 2 mbarriers, rounded up (FP8 with transform warpgroups: 3 per stage + 2,
// its few stages checked in the kernel)
constexpr int kBarrierBytes = 512;
constexpr int table_bytes(bool fp8) { return fp8 ? kFp8TableBytes : 0; }
constexpr int stages(int tokens, bool fp4, int c, int kh = 1, bool fp8 = false, int tw = 0,
                     bool tiles = false) {
  const int s = (kSmemLimit - 1024 - kBarrierBytes - table_bytes(fp8) -
                 reduce_bytes(tokens, c, kh, tw, tiles) - pair_bytes(tokens, c, kh)) /
                stage_bytes(tokens, fp4, c, kh, fp8, tw, tiles);
  return s < kMaxStages ? s : kMaxStages;
}
constexpr int smem_bytes(int tokens, bool fp4, int c, int kh = 1, bool fp8 = false, int tw = 0,
                         bool tiles = false) {
  return 1024 +
         stages(tokens, fp4, c, kh, fp8, tw, tiles) *
             stage_bytes(tokens, fp4, c, kh, fp8, tw, tiles) +
         kBarrierBytes + table_bytes(fp8) + reduce_bytes(tokens, c, kh, tw, tiles) +
         pair_bytes(tokens, c, kh);
}

struct HopperGemmConfig {
  int tokens = 16;     // wgmma N: token rows per item (16, 32, 64, 128, 256)
  bool fp8 = false;    // FP8 wgmma on E4M3 activation codes (steps are k128, see above)
  // FP8: k128 stages chained in the tensor core before each promotion into the FP32
  // accumulators (1 = every stage, the default and the measured precision of docs/cuda.md;
  // 2 or 4 by MXQ_HOPPER_FP8_PROMOTE for A/B runs: fewer FADDs, less precision).
  int fp8_promote_stages = 1;
  // FP8, fp8-dynamic-group128: each promotion multiplies by the token's scale of the stage's
  // 128-column group (promote_stages 1).
  bool fp8_group_scales = false;
  // FP8: transform warpgroups decoding the weights into shared memory for shared-memory wgmma
  // (has_fp8_transform; 0: the consumers decode into registers).
  int fp8_transform = 0;
  // FP8: the weights pre-decoded into E4M3 tiles (has_fp8_tiles; fp8_predecode.h) in a
  // workspace of fp8_chunk_rows rows x K bytes, one pre-pass + GEMM launch per chunk of rows;
  // items in groups of raster_group 128-row blocks (token tiles inner), so that a group's tiles
  // stay in L2 while every token tile reads them.
  bool fp8_tiles = false;
  int fp8_chunk_rows = 0;
  int fp8_chunks = 0;
  int raster_group = 0;  // 0: token tiles outer over every row block (the other paths)
  int stages = 0;      // shared-memory ring depth (stages of stage_steps k64 / k128 steps)
  int stage_steps = 1;
  int splits = 1;      // CTAs per cluster, each a K range of the same item
  int consumers = 2;   // consumer warpgroups: item rows = 64 x consumers / k_halves
  int k_halves = 1;    // 2: K split inside the CTA between consumer pairs (has_k_halves)
  int m_tiles = 0, n_blocks = 0;
  int items = 0;       // m_tiles x n_blocks
  int clusters = 0;    // persistent clusters launched (<= items)
  double estimate_us = 0;  // the cost model's estimate (gemm.cu, estimate_cycles)
  bool forced = false;     // tile / consumers / split set by MXQ_HOPPER_CONFIG (A/B, tests)
  // Dense 16-bit outputs: through shared memory and TMA stores (epilogue_bytes above) when the
  // output rows are 16-byte aligned, unless MXQ_HOPPER_EPILOGUE=direct (gemm.cu); else direct
  // stores from the accumulators (F32 outputs, grouped GEMMs).
  bool tma_store = false;
  int ctas() const { return clusters * splits; }
  std::string to_string() const;
};

}  // namespace mxq::cuda::hopper
