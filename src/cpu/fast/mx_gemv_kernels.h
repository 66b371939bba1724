// Internal to src/cpu/fast: the SIMD kernels of mx_gemv.h as templates, compiled once per ISA.
// Included only by mx_gemv_avx2.cc and mx_gemv_avx512.cc, each inside its own
// `#pragma GCC target` region (so every function here gets that ISA) and after every standard
// header (so no std:: template is instantiated with the wider ISA and shared through COMDAT).
// MXQ_KERNELS_AVX512VL selects AVX-512VL's two-register permute for E2M1 and the 32 vector
// registers for 16-row tiles; the arithmetic is the same either way (mx_gemv.h).
//
// Decoding, per 32-element block, into four __m256 w0..w3 of 8 elements each (lane l of w_j
// holds element lane_elem(T, j, l), mx_gemv_common.h):
//   E2M1  (16 B)  per 16 elements: vpmovzxbd of 8 bytes; the low nibbles are the even elements,
//                 the high nibbles (>> 4) the odd ones. AVX2: vpermps on the low 3 bits + one
//                 XOR for the sign (3 ALU uops per 8 elements); AVX-512VL: vpermi2ps on all 4
//                 bits (1-2 uops). d = 1.
//   E2M3, E3M2 (24 B)  per 16 elements: vpshufb gathers the two bytes holding each 6-bit code
//                 into a 16-bit lane, vpmullw by 2^(10 - bit offset) left-aligns the code at
//                 bit 15, vpsraw + vpand move exponent and mantissa under the FP16 fields
//                 (keeping the sign at bit 15), vcvtph2ps widens: value * 2^(bias - 15).
//   E4M3  (32 B)  per 16: vpmovsxbw, << 7, & 0xBF80 -> FP16 pattern of value * 2^-8.
//                 NaN codes (0x7F/0xFF) would decode as finite numbers: detected per block
//                 (vpcmpeqb), the row then takes the float64 path.
//   E5M2  (32 B)  per 16: the code is the high byte of the FP16 pattern (exact, Inf/NaN too).
//   INT8  (32 B)  per 8: vpmovsxbd + vcvtdq2ps (the integer q = 64 * value).
// FP16 subnormals are widened exactly by vcvtph2ps, so element subnormals need no special case.
//
// (No #pragma once: each including file wants its own copy.)

#define MXQ_KI __attribute__((always_inline)) inline

namespace mxq::cpu::fast::detail {
namespace {

// Rows of x per register tile: 8 accumulators fit the 16 AVX2 registers next to the 4 decoded
// weight vectors; AVX-512VL's 32 registers take 16.
constexpr int kMaxTile = MXQ_KERNELS_AVX512VL ? 16 : 8;

MXQ_KI int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// The primary template is the FP6 decoder (E2M3, E3M2); the other formats specialise it.
// FP6: byte-gather controls and left-align multipliers for the two 16-element halves.
template <ElemType T>
struct Decoder {
  static_assert(T == ElemType::kE2M3 || T == ElemType::kE3M2);
  static constexpr int kBlockBytes = 24;
  // Right shift after left-aligning the 6-bit code at bits 15..10: E2M3 (s ee mmm) -> 3,
  // E3M2 (s eee mm) -> 2, so the exponent lands in FP16 bits 14..10 and the mantissa below.
  static constexpr int kSra = T == ElemType::kE2M3 ? 3 : 2;
  __m256i ctrl[2], mul, mask;
  MXQ_KI Decoder() {
    // Half h reads bytes [8h, 8h + 16) of the block into both 128-bit lanes; lane L holds
    // elements e = 16h + 8L + i (i = 0..7), whose code starts at block bit 6e.
    for (int h = 0; h < 2; ++h) {
      alignas(32) int8_t c[32];
      for (int lane = 0; lane < 2; ++lane) {
        for (int i = 0; i < 8; ++i) {
          const int e = 16 * h + 8 * lane + i;
          const int lo = 6 * e / 8 - 8 * h;
          c[16 * lane + 2 * i] = int8_t(lo);
          // The second byte only matters when the code straddles a byte boundary (bit offset
          // 4 or 6); the last element's code lies inside its byte.
          c[16 * lane + 2 * i + 1] = int8_t(lo + 1 < 16 ? lo + 1 : 0x80);
        }
      }
      ctrl[h] = _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
    }
    alignas(32) int16_t m[16];
    for (int lane = 0; lane < 2; ++lane)
      for (int i = 0; i < 8; ++i) m[8 * lane + i] = int16_t(1 << (10 - (6 * i) % 8));
    mul = _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
    mask = _mm256_set1_epi16(int16_t(T == ElemType::kE2M3 ? 0x8F80 : 0x9F00));
  }
  MXQ_KI void operator()(const uint8_t* p, __m256* w, int&) const {
    for (int h = 0; h < 2; ++h) {
      const __m256i src = _mm256_broadcastsi128_si256(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8 * h)));
      __m256i v = _mm256_shuffle_epi8(src, ctrl[h]);
      v = _mm256_and_si256(_mm256_srai_epi16(_mm256_mullo_epi16(v, mul), kSra), mask);
      w[2 * h] = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
      w[2 * h + 1] = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
    }
  }
};

// E2M1 lanes (mx_gemv.h): w[2h] holds the even elements 16h + 2l of the block's half h (the low
// nibbles of its 8 bytes), w[2h + 1] the odd ones (the high nibbles). vpmovzxbd puts byte l of
// the half in lane l; the low nibble is the code, the high one is shifted down for the odd
// elements. Table lookups use only the index's low bits, so the other nibble never matters.
#if MXQ_KERNELS_AVX512VL
// AVX-512VL: vpermi2ps looks the whole 4-bit code (sign included) up in a 16-entry table held
// in two registers.
template <>
struct Decoder<ElemType::kE2M1> {
  static constexpr int kBlockBytes = 16;
  __m256 lo, hi;
  MXQ_KI Decoder() {
    alignas(32) float t[16];
    for (int j = 0; j < 16; ++j) t[j] = num::decode_elem(ElemType::kE2M1, uint8_t(j));
    lo = _mm256_load_ps(t);
    hi = _mm256_load_ps(t + 8);
  }
  MXQ_KI void operator()(const uint8_t* p, __m256* w, int&) const {
    for (int h = 0; h < 2; ++h) {
      const __m256i v =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * h)));
      w[2 * h] = _mm256_permutex2var_ps(lo, v, hi);
      w[2 * h + 1] = _mm256_permutex2var_ps(lo, _mm256_srli_epi32(v, 4), hi);
    }
  }
};
#else
// AVX2: vpermps looks the magnitude up from the low 3 bits, and one XOR with (index << 28) sets
// the sign; the table entries are pre-XORed with (j << 28) so that the same XOR also cancels
// the index bits it drags into bits 28..30.
template <>
struct Decoder<ElemType::kE2M1> {
  static constexpr int kBlockBytes = 16;
  __m256 lut;
  MXQ_KI Decoder() {
    alignas(32) uint32_t t[8];
    for (uint32_t j = 0; j < 8; ++j)
      t[j] = num::f32_bits(num::decode_elem(ElemType::kE2M1, uint8_t(j))) ^ (j << 28);
    lut = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(t)));
  }
  MXQ_KI __m256 lookup(__m256i idx) const {
    return _mm256_xor_ps(_mm256_permutevar8x32_ps(lut, idx),
                         _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
  MXQ_KI void operator()(const uint8_t* p, __m256* w, int&) const {
    for (int h = 0; h < 2; ++h) {
      const __m256i v =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * h)));
      w[2 * h] = lookup(v);
      w[2 * h + 1] = lookup(_mm256_srli_epi32(v, 4));
    }
  }
};
#endif

template <>
struct Decoder<ElemType::kE4M3> {
  static constexpr int kBlockBytes = 32;
  __m256i mask, low7;
  MXQ_KI Decoder() {
    mask = _mm256_set1_epi16(int16_t(0xBF80));
    low7 = _mm256_set1_epi8(0x7F);
  }
  MXQ_KI void operator()(const uint8_t* p, __m256* w, int& exact) const {
    const __m256i all = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i nan = _mm256_cmpeq_epi8(_mm256_and_si256(all, low7), low7);
    exact |= _mm256_movemask_epi8(nan);
    for (int h = 0; h < 2; ++h) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h));
      const __m256i v = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7), mask);
      w[2 * h] = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
      w[2 * h + 1] = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
    }
  }
};

template <>
struct Decoder<ElemType::kE5M2> {
  static constexpr int kBlockBytes = 32;
  MXQ_KI void operator()(const uint8_t* p, __m256* w, int&) const {
    for (int h = 0; h < 2; ++h) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h));
      const __m256i v = _mm256_slli_epi16(_mm256_cvtepu8_epi16(b), 8);
      w[2 * h] = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
      w[2 * h + 1] = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
    }
  }
};

template <>
struct Decoder<ElemType::kInt8> {
  static constexpr int kBlockBytes = 32;
  MXQ_KI void operator()(const uint8_t* p, __m256* w, int&) const {
    for (int j = 0; j < 4; ++j) {
      const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * j));
      w[j] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    }
  }
};

// The rare-path checks of a block with scale code c (mx_gemv_common.h, FormatTables): sets
// `exact` when the row must be recomputed by the float64 loop.
MXQ_KI void check_block(const uint8_t* flags, uint8_t c, const __m256* w, int& exact) {
  if (__builtin_expect(flags[c] != 0, 0)) {
    exact |= flags[c] & kFlagExact;
    if (flags[c] & kFlagZeroCheck) {  // subnormal multiplier: only an all-zero block is fine
      const __m256 any = _mm256_or_ps(_mm256_or_ps(w[0], w[1]), _mm256_or_ps(w[2], w[3]));
      exact |= _mm256_movemask_ps(_mm256_cmp_ps(any, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    }
  }
}

// One weight row, blocks [b0, b1), times MT activation rows: acc (MT x 8 lanes, in memory)
// += the blocks' contributions. Returns nonzero when the row needs the float64 path.
template <ElemType T, int MT>
MXQ_KI int row_tile(const Decoder<T>& dec, const FormatTables& tb, const uint8_t* prow,
                    const uint8_t* srow, int64_t b0, int64_t b1, const float* x, int64_t bstride,
                    float* acc_io) {
  const float* scale = tb.scale;
  const uint8_t* flags = tb.flags;
  __m256 acc[MT];
  for (int r = 0; r < MT; ++r) acc[r] = _mm256_load_ps(acc_io + 8 * r);
  int exact = 0;
  for (int64_t b = b0; b < b1; ++b) {
    __m256 w[4];
    dec(prow + b * Decoder<T>::kBlockBytes, w, exact);
    const uint8_t c = srow[b];
    check_block(flags, c, w, exact);
    const __m256 s = _mm256_broadcast_ss(scale + c);
    const float* xb = x + b * bstride;
    for (int r = 0; r < MT; ++r) {
      const float* xr = xb + r * kBlockSize;
      __m256 p = _mm256_mul_ps(w[0], _mm256_loadu_ps(xr));
      p = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xr + 8), p);
      p = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xr + 16), p);
      p = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xr + 24), p);
      acc[r] = _mm256_fmadd_ps(p, s, acc[r]);
    }
  }
  for (int r = 0; r < MT; ++r) _mm256_store_ps(acc_io + 8 * r, acc[r]);
  return exact;
}

// mc activation rows in tiles of 16 (AVX-512VL), 8, 4, 2, 1: every row gets the same arithmetic.
template <ElemType T>
MXQ_KI int row_tiles(const Decoder<T>& dec, const FormatTables& tb, const uint8_t* prow,
                     const uint8_t* srow, int64_t b0, int64_t b1, const float* x, int64_t mc,
                     float* acc) {
  const int64_t bs = mc * kBlockSize;  // x is block-interleaved: [block][row][32]
  int exact = 0;
  int64_t r = 0;
  if constexpr (kMaxTile >= 16)
    for (; r + 16 <= mc; r += 16)
      exact |= row_tile<T, 16>(dec, tb, prow, srow, b0, b1, x + r * kBlockSize, bs, acc + 8 * r);
  for (; r + 8 <= mc; r += 8)
    exact |= row_tile<T, 8>(dec, tb, prow, srow, b0, b1, x + r * kBlockSize, bs, acc + 8 * r);
  if (r + 4 <= mc) {
    exact |= row_tile<T, 4>(dec, tb, prow, srow, b0, b1, x + r * kBlockSize, bs, acc + 8 * r);
    r += 4;
  }
  if (r + 2 <= mc) {
    exact |= row_tile<T, 2>(dec, tb, prow, srow, b0, b1, x + r * kBlockSize, bs, acc + 8 * r);
    r += 2;
  }
  if (r < mc) exact |= row_tile<T, 1>(dec, tb, prow, srow, b0, b1, x + r * kBlockSize, bs, acc + 8 * r);
  return exact;
}

// M = 1: kStreams weight rows from kStreams far-apart parts of [n0, n1) advance block by block
// in lockstep. One sequential stream per core is as fast as the L2 prefetcher runs (~10 GB/s
// here, and less while the core is busy decoding); several streams keep more misses in flight.
// Each x block is loaded once for all of them. Every row's arithmetic is row_tile<T, 1>'s.
constexpr int kStreams = 4;

template <ElemType T>
MXQ_KI void gemv_streams(const Decoder<T>& dec, const FormatTables& tb, const MXMatrixRef& w,
                         const float* x, int64_t ldx, const float* xi, float* y, int64_t n0,
                         int64_t n1) {
  const int64_t kb = w.k / kBlockSize;
  const int64_t row_bytes = kb * Decoder<T>::kBlockBytes;
  const float* scale = tb.scale;
  const uint8_t* flags = tb.flags;
  const int64_t part = (n1 - n0) / kStreams;  // rows per stream; the rest go one by one
  for (int64_t i = 0; i < part; ++i) {
    const uint8_t* prow[kStreams];
    const uint8_t* srow[kStreams];
    int64_t row[kStreams];
    __m256 acc[kStreams];
    int exact[kStreams];
    for (int s = 0; s < kStreams; ++s) {
      row[s] = n0 + s * part + i;
      prow[s] = w.packed + row[s] * row_bytes;
      srow[s] = w.scales + row[s] * kb;
      acc[s] = _mm256_setzero_ps();
      exact[s] = 0;
    }
    for (int64_t b = 0; b < kb; ++b) {
      const float* xb = xi + b * kBlockSize;
      const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8),
                   x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
      for (int s = 0; s < kStreams; ++s) {
        __m256 wv[4];
        dec(prow[s] + b * Decoder<T>::kBlockBytes, wv, exact[s]);
        const uint8_t c = srow[s][b];
        check_block(flags, c, wv, exact[s]);
        __m256 p = _mm256_mul_ps(wv[0], x0);
        p = _mm256_fmadd_ps(wv[1], x1, p);
        p = _mm256_fmadd_ps(wv[2], x2, p);
        p = _mm256_fmadd_ps(wv[3], x3, p);
        acc[s] = _mm256_fmadd_ps(p, _mm256_broadcast_ss(scale + c), acc[s]);
      }
    }
    for (int s = 0; s < kStreams; ++s) {
      alignas(32) float a[8];
      _mm256_store_ps(a, acc[s]);
      y[row[s]] = hsum8(a);
      if (exact[s] != 0) mx_gemm_rows_exact(w, x, 1, ldx, y, 1, row[s], row[s] + 1);
    }
  }
  for (int64_t n = n0 + kStreams * part; n < n1; ++n) {  // the remaining rows
    alignas(32) float a[8] = {};
    const int e = row_tile<T, 1>(dec, tb, w.packed + n * row_bytes, w.scales + n * kb, 0, kb, xi,
                                 kBlockSize, a);
    y[n] = hsum8(a);
    if (e != 0) mx_gemm_rows_exact(w, x, 1, ldx, y, 1, n, n + 1);
  }
}

// Cache blocking for M > 1. The activations arrive
// block-interleaved per super-tile of kMc rows (interleave_x in mx_gemv_common.h): one chunk
// of kcb blocks x mc rows is one contiguous piece that fits L1 (<= kXChunkBytes; with plain
// rows, 16 rows 16 KiB apart would all map to the same L1 sets). Every chunk serves a group of
// kGroup weight rows (<= 64 KiB of weights at K = 4096 FP8, kept in L2) before the next; the
// 8-lane row accumulators live in `acc` between chunks. Only the order in which whole blocks
// are visited changes, never a row's arithmetic.
constexpr int64_t kGroup = 16;
constexpr int64_t kMc = kSuperTile;
constexpr int64_t kXChunkBytes = 24 * 1024;

template <ElemType T>
void gemm_rows(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, const float* xi,
               float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const Decoder<T> dec;
  const FormatTables& tb = format_tables(T);
  if (m == 1) return gemv_streams<T>(dec, tb, w, x, ldx, xi, y, n0, n1);
  const int64_t kb = w.k / kBlockSize;
  const int64_t row_bytes = kb * Decoder<T>::kBlockBytes;
  const int64_t kcb = kXChunkBytes / (imin(m, kMc) * kBlockSize * int64_t(sizeof(float)));
  alignas(32) float acc[kGroup * kMc * 8];
  int exact[kGroup];
  for (int64_t g0 = n0; g0 < n1; g0 += kGroup) {
    const int64_t g1 = imin(n1, g0 + kGroup);
    for (int64_t n = g0; n < g1; ++n) exact[n - g0] = 0;
    for (int64_t m0 = 0; m0 < m; m0 += kMc) {
      const int64_t mc = imin(kMc, m - m0);
      for (int64_t i = 0; i < (g1 - g0) * mc * 8; ++i) acc[i] = 0.0f;
      for (int64_t c0 = 0; c0 < kb; c0 += kcb) {
        const int64_t c1 = imin(kb, c0 + kcb);
        for (int64_t n = g0; n < g1; ++n)
          exact[n - g0] |= row_tiles<T>(dec, tb, w.packed + n * row_bytes, w.scales + n * kb, c0,
                                        c1, xi + m0 * w.k, mc, acc + (n - g0) * mc * 8);
      }
      for (int64_t n = g0; n < g1; ++n)
        for (int64_t r = 0; r < mc; ++r)
          y[(m0 + r) * ldy + n] = hsum8(acc + ((n - g0) * mc + r) * 8);
    }
    for (int64_t n = g0; n < g1; ++n)
      if (exact[n - g0] != 0) mx_gemm_rows_exact(w, x, m, ldx, y, ldy, n, n + 1);
  }
}

}  // namespace
}  // namespace mxq::cpu::fast::detail

#undef MXQ_KI
