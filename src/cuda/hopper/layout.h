// The cuda-hopper weight layout: canonical MX weights [batch, N, K] cut into "chunks", one per
// (64-row block, k64 step), each chunk one contiguous run that a single bulk copy (TMA) brings
// into shared memory, holding everything one consumer warpgroup needs for one k64 step:
//
//   chunk (b, nb, kt) at byte ((b * n64 + nb) * k64 + kt) * chunk_bytes:
//     [stripe j = 0..3][lane 0..31][lane_bytes]   the elements (16 B E2M1, 32 B E4M3 per lane)
//     [stripe j = 0..3][quad 0..7][4 bytes]        the E8M0 scale words
//
// Stripe j is the 16-row tile 4 nb + j, which warp j of the warpgroup feeds to wgmma as its
// slice of the 64-row register A operand. A lane's bytes are its mma.m16n8k16 A fragments for
// the four k16 steps, as cuda-mma's (frag_word.h) with two differences: the K order inside a
// k16 step is the MMA's own (Source::natural_k), because the activations arrive by TMA in
// memory order and cannot be permuted on the way; and E2M1 codes sit in the bit positions
// that make the decode cheapest (layout_word.h, hopper_e2m1_word: 11 instead of 15
// instructions per word of 8 codes for BF16; E4M3 bytes as cuda-mma's). A warp reads
// its stripe with one 16-byte LDS per lane (512 contiguous bytes: conflict-free) and its scale
// word with one 4-byte LDS (the quad's lanes share it).
//
// Rows are padded to a multiple of 128 (the two consumer warpgroups of a CTA) and K to a
// multiple of 64 with zero elements and scale code 127, so a padded element contributes 0;
// the kernel never stores rows >= N.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/gemm/frag_layout.h"

namespace mxq::cuda::hopper {

struct HopperLayout {
  ElemType elem = ElemType::kE2M1;
  int64_t batch = 1, n = 0, k = 0;

  static constexpr int kRowAlign = 128;  // rows per CTA (2 consumer warpgroups x 64)
  int64_t n_pad() const { return (n + kRowAlign - 1) / kRowAlign * kRowAlign; }
  int64_t n64() const { return n_pad() / 64; }
  int64_t k64() const { return (k + 63) / 64; }
  static int lane_bytes(ElemType e) { return e == ElemType::kE2M1 ? 16 : 32; }
  static int chunk_weight_bytes(ElemType e) { return 4 * 32 * lane_bytes(e); }
  static int chunk_bytes(ElemType e) { return chunk_weight_bytes(e) + 4 * frag::kScaleWordsPerTile * 4; }
  int chunk_bytes() const { return chunk_bytes(elem); }
  int64_t chunks() const { return batch * n64() * k64(); }
  size_t bytes() const { return size_t(chunks()) * size_t(chunk_bytes()); }
};

inline HopperLayout hopper_layout(const FragSource& s) {
  return {s.w.elem, s.w.batch, s.n(), s.w.k};
}

// The layout on the CPU: the definition the GPU repack (repack.cu) is tested against.
// `out` gets hopper_layout(s).bytes(). The source must pass check_frag_layout.
void repack_hopper_cpu(const FragSource& s, uint8_t* out);

}  // namespace mxq::cuda::hopper
