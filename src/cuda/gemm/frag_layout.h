// The cuda-mma weight layout ("fragment order"): canonical MX weights [batch, N, K] permuted so
// that one coalesced 16-byte load per lane hands each lane exactly the tensor-core A fragments
// it multiplies, already in the bit positions the in-register decode wants.
//
// The GEMM computes y^T = W x^T with W as the 16x16 A operand of mma.m16n8k16 and 8 tokens of
// x as the B operand. Tiles are 16 rows x 64 K ("a k64 tile"); tile (tn, tk) of batch b is
// stored at ((b * N16 + tn) * K64 + tk), so a 16-row stripe is contiguous along K. Inside a
// tile, lane L = 4g + t (g = L / 4, t = L % 4) owns rows r0 = 16 tn + g and r1 = r0 + 8, and
// for each of the 4 k16 sub-steps s the 4 elements e_j at k = 64 tk + 16 s + 4 t + j.
//
// The MMA's k index inside a k16 step is a dummy summation index: A and B only need the same
// permutation. Lane t takes k = 4t..4t+3 for the MMA's k = {2t, 2t+1, 2t+8, 2t+9}, so its B
// fragment is 4 consecutive activations (one 8-byte load) and its A elements are consecutive.
//
// E2M1 (16 bytes per lane per tile): one 32-bit word per sub-step s, nibble i holding
//   nibble 3: (r0, e0)  7: (r0, e1)   -> A reg 0 (a0a1)
//   nibble 2: (r1, e0)  6: (r1, e1)   -> A reg 1 (a2a3)
//   nibble 1: (r0, e2)  5: (r0, e3)   -> A reg 2 (a4a5)
//   nibble 0: (r1, e2)  4: (r1, e3)   -> A reg 3 (a6a7)
// so A reg i is decoded from (word << 4i): the two codes sit at bits 12..15 and 28..31 of the
// two 16-bit halves, sign already at bit 15 / 31 (see mx_gemm.cuh, decode).
// E4M3 (32 bytes per lane per tile): per sub-step two words, (r0, e0..e3) then (r1, e0..e3),
// one byte per element; A regs are formed with byte permutes.
// Scales (one 4-byte word per lane quad g, 8 words per tile, frag::scale_word_index): E8M0
// codes of (r0, block 2tk), (r0, 2tk+1), (r1, 2tk), (r1, 2tk+1).
// Padding: K is padded to a multiple of 64 with zero elements and scale code 127 (1.0), so a
// padded block contributes exactly 0 (the kernel also zero-fills activations beyond K).
//
// Row orders: fragment row r is canonical row r (plain), or, for an MoE gate/up tensor of 2I
// rows, 16-row tile tn holds the gate rows of intermediate columns 8tn..8tn+7 in its first 8
// rows and the matching up rows in its last 8. The MMA accumulator fragment then has a
// column's gate (row g) and up (row g + 8) in the same lane, so the GEMM applies the
// activation in its epilogue. Every canonical gate/up layout maps to this one order: chunked
// (gate i, up I + i), interleaved (gate 2i, up 2i + 1, gpt-oss) and separate w1/w3 tensors.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/gemm/frag_word.h"
#include "mxq/status.h"
#include "mxq/views.h"

namespace mxq::cuda {

struct FragLayout {
  ElemType elem = ElemType::kE2M1;
  int64_t batch = 1, n = 0, k = 0;

  int64_t n16() const { return n / 16; }
  int64_t k64() const { return (k + 63) / 64; }
  int lane_bytes() const { return elem == ElemType::kE2M1 ? 16 : 32; }
  int64_t tiles() const { return batch * n16() * k64(); }
  size_t packed_bytes() const { return size_t(tiles()) * 32 * size_t(lane_bytes()); }
  size_t scale_bytes() const { return size_t(tiles()) * frag::kScaleWordsPerTile * 4; }
};

using frag::RowOrder;

// What a repack reads: canonical weights and the row order of the result. `w` is the tensor
// ([batch, n, k]; for RowOrder::kSeparate the gate tensor [batch, n/2, k] with `up` the up
// tensor of the same shape); n counts fragment rows.
struct FragSource {
  MXWeightView w;
  RowOrder order = RowOrder::kPlain;
  MXWeightView up;  // kSeparate only

  static FragSource plain(const MXWeightView& w) { return {w, RowOrder::kPlain, {}}; }
  int64_t n() const { return order == RowOrder::kSeparate ? 2 * w.n : w.n; }
  FragLayout layout() const { return {w.elem, w.batch, n(), w.k}; }
  frag::Source source() const {
    return {w.packed, w.scales, n(), w.k, w.elem == ElemType::kE2M1, order, up.packed, up.scales};
  }
  // Experts [b0, b0 + count) only (their rows are contiguous in every order).
  FragSource experts(int64_t b0, int64_t count) const;
};

// The weight formats and shapes the layout covers: E2M1 or E4M3 elements, N a multiple of 16,
// K a multiple of 32, batch >= 1; gate/up orders need 2I rows with I a multiple of 8, and
// separate w1/w3 tensors of one shape. The error names the offending value.
Status check_frag_layout(const FragSource& s);
inline Status check_frag_layout(const MXWeightView& w) {
  return check_frag_layout(FragSource::plain(w));
}

// The permutation on the CPU: the definition the GPU repack (repack.cu) is tested against.
// `packed` gets layout.packed_bytes(), `scales` layout.scale_bytes().
void repack_frag_cpu(const FragSource& s, uint8_t* packed, uint8_t* scales);
inline void repack_frag_cpu(const MXWeightView& w, uint8_t* packed, uint8_t* scales) {
  repack_frag_cpu(FragSource::plain(w), packed, scales);
}

}  // namespace mxq::cuda
