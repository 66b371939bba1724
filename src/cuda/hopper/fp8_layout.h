// The FP8 path's weight layout (issue 17; fp8_operand.h holds the decode it feeds): canonical
// MXFP4 weights [batch, N, K] whose rows fold (src/contract/fp8_fold.h: one base per row makes
// every element times 2^(s - base) an E4M3 value) cut into chunks, one per (64-row block, k128
// step: 4 wgmma.m64nNk32 steps), each one contiguous run for one bulk copy:
//
//   chunk (b, nb, ks) at byte ((b * n64 + nb) * k128 + ks) * kChunkBytes:
//     [warp 0..3][k32 step pair 0..1][lane 0..31][step 2p..2p+1][row half 0..1]
//                                                            uint32 operand words   4096 B
//     [warp 0..3][group 0..7][row half 0..1][k32 step 0..3]  shift-table indices     256 B
//
// Warp w feeds rows 16 w .. 16 w + 15 of the block; lane (g, t) holds, per k32 step, the operand
// words of rows 16 w + g (half 0: A registers 0 and 2) and 16 w + g + 8 (half 1: registers 1
// and 3), so a lane reads its stage's 8 words with two 16-byte loads, one per step pair, each
// 512 contiguous bytes per warp (conflict-free: 4 wavefronts; the earlier [warp][lane][step][half]
// order put a lane's 32 bytes together, so each 16-byte load strode 32 bytes across the lanes and
// took 8 wavefronts, ncu 2026-12-07) and its 8 table indices d - kMinShift with one 8-byte load (the 4 lanes of a
// group read the same address). The row's base goes to the epilogue as 2^(base - 127).
//
// Rows are padded to a multiple of 128 (as the 16-bit layout, layout.h) and K to a multiple of
// 128, with zero codes; blocks whose codes are all zero (padding included) take the d = 0 table
// (any table gives zero for them).
#pragma once

#include <cstdint>
#include <vector>

#include "mxq/status.h"
#include "mxq/views.h"

namespace mxq::cuda::hopper::fp8 {

// constexpr members: the GPU repack (fp8_repack.cu) uses them too.
struct Fp8Layout {
  int64_t batch = 1, n = 0, k = 0;

  static constexpr int kRowAlign = 128, kStepK = 128;
  static constexpr int kWordBytes = 4 * 32 * 4 * 2 * 4;  // [warp][lane][k32][half] uint32
  static constexpr int kIndexBytes = 4 * 8 * 2 * 4;      // [warp][group][half][k32] uint8
  static constexpr int kChunkBytes = kWordBytes + kIndexBytes;
  constexpr int64_t n_pad() const { return (n + kRowAlign - 1) / kRowAlign * kRowAlign; }
  constexpr int64_t n64() const { return n_pad() / 64; }
  constexpr int64_t k128() const { return (k + kStepK - 1) / kStepK; }
  constexpr int64_t chunks() const { return batch * n64() * k128(); }
  constexpr size_t bytes() const { return size_t(chunks()) * size_t(kChunkBytes); }
};

// Byte offsets inside a chunk.
constexpr int word_offset(int warp, int lane, int step, int half) {
  return ((warp * 2 + step / 2) * 32 + lane) * 16 + ((step % 2) * 2 + half) * 4;
}
// The decode's two loads per lane (gemm_device.cuh, decode_fp8_chunk): steps 0-1 and 2-3 each
// 16 contiguous bytes in the order [step][half], lanes 16 bytes apart.
static_assert(word_offset(0, 0, 1, 1) == 12 && word_offset(0, 1, 0, 0) == 16 &&
              word_offset(0, 0, 2, 0) == 512 && word_offset(3, 31, 3, 1) == 4096 - 4,
              "the operand words' order");
constexpr int index_offset(int warp, int group, int half, int step) {
  return Fp8Layout::kWordBytes + ((warp * 8 + group) * 2 + half) * 4 + step;
}

// The layout on the CPU (the definition a GPU repack will be tested against). `w`: E2M1,
// N % 16 == 0, K % 32 == 0; `row_bases`: batch * n bases (fp8_fold_stats), each row's every
// nonzero block within d = s - base in [kMinShift, kMaxShift]. `out` gets layout.bytes(); `bases`
// batch * n_pad entries (padding rows 127). Errors name the row and block that do not fit.
StatusOr<Fp8Layout> repack_fp8_cpu(const MXWeightView& w, const int32_t* row_bases,
                                   std::vector<uint8_t>& out, std::vector<int32_t>& bases);

// ---- The pre-decoded tiles (the FP8 path at large M: fp8_predecode.h, gemm_config.h
// has_fp8_tiles) -----------------------------------------------------------------------------
// The chunks of `blocks` consecutive 64-row blocks decoded into E4M3 operand bytes (each element
// times 2^(s - base) of its row, exactly the register decode's bytes), one tile per (block,
// k128 step) in the order of the chunks, kTileBytes each:
//
//   tile (nb, ks) at byte (nb * k128 + ks) * kTileBytes; inside, the byte of row r (0..63) and
//   k (0..127) at r * 128 + ((k / 16) ^ (r % 8)) * 16 + k % 16
//
// i.e. 128-byte rows of K with the 16-byte chunks XOR-swizzled by the row inside each 8-row
// (1024-byte) atom: a K-major wgmma shared-memory operand with the 128-byte swizzle, as the
// activation tiles are, so the GEMM copies a tile into shared memory and uses it as it is.
inline constexpr int kTileBytes = 64 * 128;
constexpr int tile_byte_offset(int row, int k) {
  return row * 128 + (((k / 16) ^ (row % 8)) * 16) + k % 16;
}
// The CPU definition (what the GPU pre-pass is tested against): blocks [nb_begin, nb_begin +
// blocks) of the layout `l` (batch 1), whose chunks are `chunks` (l.bytes() bytes), into `out`
// (blocks * l.k128() * kTileBytes bytes).
Status predecode_fp8_cpu(const Fp8Layout& l, const uint8_t* chunks, int64_t nb_begin,
                         int64_t blocks, std::vector<uint8_t>& out);

}  // namespace mxq::cuda::hopper::fp8
