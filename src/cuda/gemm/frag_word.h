// One lane's words of the fragment layout (frag_layout.h), computed from canonical MX weights.
// Shared by the CPU definition (frag_layout.cc) and the GPU repack kernel (repack.cu), so the
// two cannot drift apart; compiled as host and device code.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MXQ_FRAG_FN __host__ __device__ __forceinline__
#else
#define MXQ_FRAG_FN inline
#endif

namespace mxq::cuda::frag {

// How fragment rows map to canonical rows (frag_layout.h, "Row orders").
enum class RowOrder : int { kPlain = 0, kChunked = 1, kInterleaved = 2, kSeparate = 3 };

// Canonical source: codes [batch * rows, k] (E2M1: 2 per byte, low nibble first; E4M3: 1 per
// byte), scales [batch * rows, k / 32]; rows = n, or n / 2 per tensor for kSeparate.
struct Source {
  const uint8_t* packed;
  const uint8_t* scales;
  int64_t n, k;     // fragment rows and K per batch entry
  bool fp4 = true;  // E2M1 (2 codes per byte) or E4M3
  RowOrder order = RowOrder::kPlain;
  const uint8_t* up_packed = nullptr;  // kSeparate: the up tensor (w3)
  const uint8_t* up_scales = nullptr;
  // K order inside a k16 step. false (cuda-mma): lane t's elements e0..e3 are k = 4t..4t+3,
  // used as the MMA's k = {2t, 2t+1, 2t+8, 2t+9} (the activations are permuted to match).
  // true (cuda-hopper, whose activations arrive by TMA in memory order): e0..e3 are exactly
  // the MMA's k = {2t, 2t+1, 2t+8, 2t+9}.
  bool natural_k = false;
};

// One canonical row: its codes and its scales.
struct RowRef {
  const uint8_t* codes;
  const uint8_t* scales;
};

// Fragment row r of batch entry b. The gate/up orders put, in 16-row tile tn, the gate rows of
// intermediate columns 8tn..8tn+7 first and the matching up rows after them.
MXQ_FRAG_FN RowRef source_row(const Source& s, int64_t b, int64_t r) {
  const int64_t col = 8 * (r / 16) + r % 8;  // the intermediate column (gate/up orders)
  const bool up = (r % 16) >= 8;
  int64_t row = r, rows = s.n;
  const uint8_t* packed = s.packed;
  const uint8_t* scales = s.scales;
  switch (s.order) {
    case RowOrder::kChunked: row = up ? s.n / 2 + col : col; break;
    case RowOrder::kInterleaved: row = 2 * col + (up ? 1 : 0); break;
    case RowOrder::kSeparate:
      row = col;
      rows = s.n / 2;
      if (up) {
        packed = s.up_packed;
        scales = s.up_scales;
      }
      break;
    default: break;
  }
  const int64_t code_bytes = s.fp4 ? s.k / 2 : s.k;
  return {packed + (b * rows + row) * code_bytes, scales + (b * rows + row) * (s.k / 32)};
}

MXQ_FRAG_FN uint32_t fp4_code(const Source& s, const RowRef& row, int64_t k) {
  if (k >= s.k) return 0;
  const uint8_t b = row.codes[k / 2];
  return (k & 1) ? uint32_t(b >> 4) : uint32_t(b & 15);
}
MXQ_FRAG_FN uint32_t fp8_code(const Source& s, const RowRef& row, int64_t k) {
  return k < s.k ? uint32_t(row.codes[k]) : 0u;
}

// Row of lane `lane` in 16-row tile tn: r0 (half 0) or r0 + 8 (half 1); first K of sub-step.
MXQ_FRAG_FN RowRef lane_row(const Source& s, int64_t b, int64_t tn, int lane, int half) {
  return source_row(s, b, 16 * tn + (lane >> 2) + 8 * half);
}
MXQ_FRAG_FN int64_t lane_k(int64_t tk, int lane, int sub) { return 64 * tk + 16 * sub + 4 * (lane & 3); }
// K of element j (0..3) of a lane's sub-step (Source::natural_k).
MXQ_FRAG_FN int64_t elem_k(const Source& s, int64_t tk, int lane, int sub, int j) {
  if (!s.natural_k) return lane_k(tk, lane, sub) + j;
  return 64 * tk + 16 * sub + 2 * (lane & 3) + (j < 2 ? j : j + 6);
}

// E2M1: the 32-bit word of sub-step `sub` (nibble order in frag_layout.h).
MXQ_FRAG_FN uint32_t fp4_word(const Source& s, int64_t b, int64_t tn, int64_t tk, int lane, int sub) {
  const RowRef r0 = lane_row(s, b, tn, lane, 0), r1 = lane_row(s, b, tn, lane, 1);
  // nibble position of (row half, element j)
  constexpr int kPos[2][4] = {{3, 7, 1, 5}, {2, 6, 0, 4}};
  uint32_t w = 0;
  for (int j = 0; j < 4; ++j) {
    const int64_t k = elem_k(s, tk, lane, sub, j);
    w |= fp4_code(s, r0, k) << (4 * kPos[0][j]);
    w |= fp4_code(s, r1, k) << (4 * kPos[1][j]);
  }
  return w;
}

// E4M3: word `half` (0: row r0, 1: row r1) of sub-step `sub`: elements e0..e3 in bytes 0..3.
MXQ_FRAG_FN uint32_t fp8_word(const Source& s, int64_t b, int64_t tn, int64_t tk, int lane, int sub,
                         int half) {
  const RowRef r = lane_row(s, b, tn, lane, half);
  uint32_t w = 0;
  for (int j = 0; j < 4; ++j) w |= fp8_code(s, r, elem_k(s, tk, lane, sub, j)) << (8 * j);
  return w;
}

// Scales: one 32-bit word per lane quad (the four lanes of quad g share rows r0 and r1), so a
// tile has 8 scale words (32 bytes, one sector: the quad's lanes load the same address and the
// warp's load is one 32-byte request). Storing a word per lane would read 4x the scale bytes:
// for E2M1, 128 bytes of scales per 512 bytes of weights instead of 32.
constexpr int kScaleWordsPerTile = 8;
MXQ_FRAG_FN int64_t scale_word_index(int64_t tile, int lane) {
  return tile * kScaleWordsPerTile + (lane >> 2);
}

// The scale word of a lane: (r0, 2tk), (r0, 2tk + 1), (r1, 2tk), (r1, 2tk + 1); padded blocks
// get 127 (1.0).
MXQ_FRAG_FN uint32_t scale_word(const Source& s, int64_t b, int64_t tn, int64_t tk, int lane) {
  const int64_t blocks = s.k / 32;
  uint32_t w = 0;
  for (int half = 0; half < 2; ++half) {
    const RowRef r = lane_row(s, b, tn, lane, half);
    for (int j = 0; j < 2; ++j) {
      const int64_t blk = 2 * tk + j;
      const uint32_t c = blk < blocks ? uint32_t(r.scales[blk]) : 127u;
      w |= c << (8 * (2 * half + j));
    }
  }
  return w;
}

}  // namespace mxq::cuda::frag
