// Internal to src/cpu/fast: the SIMD kernels of mx_gemv.h, one source compiled twice:
// mx_gemv_avx2.cc includes it with MXQ_KERNELS_AVX512 = 0 (AVX2 + FMA + F16C), mx_gemv_avx512.cc
// with 1 (adds AVX-512F/VL). Everything below the standard headers sits in one
// `#pragma GCC target` region (so every function gets that ISA, and no std:: template is
// instantiated with the wider ISA and shared through COMDAT). The arithmetic is the same on both
// (mx_gemv.h): every row accumulator is 16 FP32 lanes, held as two __m256 (lanes 0..7, 8..15) or,
// for E2M1 on AVX-512, one __m512.
//
// Decoding, per 32-element block, into four __m256 w0..w3 of 8 elements each (lane l of w_j
// holds element lane_elem(T, j, l), mx_gemv_common.h; lanes 0..7 of the accumulator take
// w0 * x0 + w2 * x2, lanes 8..15 w1 * x1 + w3 * x3):
//   E2M1  (16 B)  the element table is scaled per block first (mx_gemv.h), then looked up.
//                 AVX2: per 16 elements (8 bytes) vpmovzxbd; the low nibbles are the even
//                 elements, the high nibbles (>> 4) the odd ones; vpermps on the low 3 bits of the
//                 8-entry magnitude table (scaled by one vmulps per block) + one XOR for the sign.
//                 AVX-512: the whole block in two __m512: one vpaddd (masked: the zero entries
//                 stay zero) adds log2(S) to the exponents of the 16-entry table, one vpmovzxbd of
//                 the 16 bytes, then vpermps (low 4 bits: the low nibble needs no mask) for the
//                 even elements and vpsrld 4 + vpermps for the odd ones: 4 shuffle-port uops per
//                 block instead of 6, and 2 FMAs per activation row.
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
// M = 1 runs several weight rows in lockstep (gemv_streams); E2M1 on AVX-512 has its own M = 1
// loop (gemv_e2m1_zmm) that moves the per-block scale lookups and flag tests out of the inner
// loop. Same arithmetic everywhere.

#include "cpu/fast/mx_gemv_common.h"

#ifndef MXQ_KERNELS_AVX512
#error "define MXQ_KERNELS_AVX512 (0 or 1) before including mx_gemv_kernels.h"
#endif

#if MXQ_KERNELS_AVX512
#define MXQ_KERNELS_ENTRY gemm_rows_avx512
#define MXQ_KERNELS_COMPILED avx512_compiled
#else
#define MXQ_KERNELS_ENTRY gemm_rows_avx2
#define MXQ_KERNELS_COMPILED avx2_compiled
#endif

#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#pragma GCC push_options
#if MXQ_KERNELS_AVX512
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,prefer-vector-width=256")
#else
#pragma GCC target("avx2,fma,f16c")
#endif

#define MXQ_KI __attribute__((always_inline)) inline

namespace mxq::cpu::fast::detail {
namespace {

MXQ_KI int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// ---- decoders: one 32-element block -> four __m256 --------------------------------------------

// The primary template is the FP6 decoder (E2M3, E3M2); the other formats specialise it.
// FP6: byte-gather controls and left-align multipliers for the two 16-element halves.
template <ElemType T>
struct Decoder {
  static_assert(T == ElemType::kE2M3 || T == ElemType::kE3M2);  // E2M1: YmmE2M1 / ZmmE2M1
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

// ---- block arithmetic: one policy per register shape ---------------------------------------------
//
// A policy P has: kBlockBytes; kMaxTile (activation rows per register tile); W (a decoded block),
// X (an activation block), B (what a block's scale code gives: S broadcast, or the scaled element
// table), Acc (one row's 16 lanes); block(tb, c) -> B; decode(p, b, w, exact);
// nonzero(p, w) (any element of the block != 0); load_x, zero, load, store; and
// fma_block(w, x, b, acc): the block step of mx_gemv.h for one activation row.

// The __m256 shape of a block and of a row's 16 lanes: lanes 0..7 from w0/x0 and w2/x2, lanes
// 8..15 from w1/x1 and w3/x3. Two accumulators per row: 8 rows fill 16 of AVX-512VL's 32
// registers, 4 rows 8 of AVX2's 16.
struct YmmLanes {
  static constexpr int kMaxTile = MXQ_KERNELS_AVX512 ? 8 : 4;
  struct W { __m256 v[4]; };
  struct X { __m256 v[4]; };
  struct Acc { __m256 lo, hi; };
  MXQ_KI static X load_x(const float* xb) {
    return {{_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8), _mm256_loadu_ps(xb + 16),
             _mm256_loadu_ps(xb + 24)}};
  }
  MXQ_KI static Acc zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  MXQ_KI static Acc load(const float* a) { return {_mm256_loadu_ps(a), _mm256_loadu_ps(a + 8)}; }
  MXQ_KI static void store(float* a, const Acc& acc) {
    _mm256_storeu_ps(a, acc.lo);
    _mm256_storeu_ps(a + 8, acc.hi);
  }
};

// Every format but E2M1 on __m256: block partials q, then one FMA by S per 8 lanes.
template <ElemType T>
struct Ymm : YmmLanes {
  static constexpr int kBlockBytes = Decoder<T>::kBlockBytes;
  using B = __m256;  // S
  Decoder<T> dec;
  MXQ_KI Ymm() {}  // explicit: an implicit one would be compiled outside the target region
  MXQ_KI static B block(const FormatTables& tb, uint8_t c) { return _mm256_broadcast_ss(tb.scale + c); }
  MXQ_KI void decode(const uint8_t* p, B, W& w, int& exact) const { dec(p, w.v, exact); }
  MXQ_KI static int nonzero(const uint8_t*, const W& w) {
    const __m256 any = _mm256_or_ps(_mm256_or_ps(w.v[0], w.v[1]), _mm256_or_ps(w.v[2], w.v[3]));
    return _mm256_movemask_ps(_mm256_cmp_ps(any, _mm256_setzero_ps(), _CMP_NEQ_UQ));
  }
  MXQ_KI static void fma_block(const W& w, const X& x, B s, Acc& acc) {
    __m256 lo = _mm256_mul_ps(w.v[0], x.v[0]);
    __m256 hi = _mm256_mul_ps(w.v[1], x.v[1]);
    lo = _mm256_fmadd_ps(w.v[2], x.v[2], lo);
    hi = _mm256_fmadd_ps(w.v[3], x.v[3], hi);
    acc.lo = _mm256_fmadd_ps(lo, s, acc.lo);
    acc.hi = _mm256_fmadd_ps(hi, s, acc.hi);
  }
};

// E2M1's zero check looks at the codes: the scaled table of a flagged scale code is not
// meaningful (S = 0, or an exponent add that underflowed).
MXQ_KI int e2m1_nonzero(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return !_mm_testz_si128(v, _mm_set1_epi8(0x77));  // any magnitude bits
}

// E2M1 on __m256 (AVX2): lanes 0..7 from w0 (even elements of half 0) and w2 (odd), 8..15 from
// w1 and w3. The magnitude table scaled by S is pre-XORed with (j << 28) so that one XOR with
// (index << 28) after vpermps sets the sign and cancels the index bits it drags into bits 28..30.
struct YmmE2M1 : YmmLanes {
  static constexpr int kBlockBytes = 16;
  using B = __m256;  // the scaled, pre-XORed magnitude table
  __m256 mag, tag;
  MXQ_KI YmmE2M1() {
    alignas(32) float t[8];
    alignas(32) uint32_t g[8];
    for (uint32_t j = 0; j < 8; ++j) {
      t[j] = num::decode_elem(ElemType::kE2M1, uint8_t(j));
      g[j] = j << 28;
    }
    mag = _mm256_load_ps(t);
    tag = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(g)));
  }
  MXQ_KI B block(const FormatTables& tb, uint8_t c) const {
    return _mm256_xor_ps(_mm256_mul_ps(mag, _mm256_broadcast_ss(tb.scale + c)), tag);
  }
  MXQ_KI static __m256 lookup(B t, __m256i idx) {
    return _mm256_xor_ps(_mm256_permutevar8x32_ps(t, idx),
                         _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
  MXQ_KI void decode(const uint8_t* p, B t, W& w, int&) const {
    for (int h = 0; h < 2; ++h) {
      const __m256i v =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * h)));
      w.v[h] = lookup(t, v);
      w.v[2 + h] = lookup(t, _mm256_srli_epi32(v, 4));
    }
  }
  MXQ_KI static int nonzero(const uint8_t* p, const W&) { return e2m1_nonzero(p); }
  MXQ_KI static void fma_block(const W& w, const X& x, B, Acc& acc) {
    acc.lo = _mm256_fmadd_ps(w.v[0], x.v[0], acc.lo);
    acc.hi = _mm256_fmadd_ps(w.v[1], x.v[1], acc.hi);
    acc.lo = _mm256_fmadd_ps(w.v[2], x.v[2], acc.lo);
    acc.hi = _mm256_fmadd_ps(w.v[3], x.v[3], acc.hi);
  }
};

#if MXQ_KERNELS_AVX512
// E2M1 on __m512: lane L = byte L of the block: even element 2L (w.e), odd 2L + 1 (w.o); the
// same lanes as YmmE2M1's lo | hi.
struct ZmmE2M1 {
  static constexpr int kBlockBytes = 16;
  static constexpr int kMaxTile = 16;  // 16 accumulators of the 32 registers
  struct W { __m512 e, o; };
  using X = W;  // x.e = the even elements' activations, x.o the odd ones'
  using Acc = __m512;
  using B = __m512;  // the scaled 16-entry table
  __m512i table;
  MXQ_KI ZmmE2M1() {
    alignas(64) float t[16];
    for (int j = 0; j < 16; ++j) t[j] = num::decode_elem(ElemType::kE2M1, uint8_t(j));
    table = _mm512_castps_si512(_mm512_load_ps(t));
  }
  // v * S for every table entry v != 0 (codes 0 and 8 are +-0), exact for the scale codes
  // that reach the arithmetic (mx_gemv_common.h).
  MXQ_KI B block(const FormatTables& tb, uint8_t c) const {
    return _mm512_castsi512_ps(
        _mm512_mask_add_epi32(table, __mmask16(0xFEFE), table, _mm512_set1_epi32(tb.scale_bits[c])));
  }
  // (The all-lanes maskz forms compile to the plain instructions; the plain intrinsics trip
  // GCC 12's -Wmaybe-uninitialized on their undefined pass-through operand.)
  MXQ_KI void decode(const uint8_t* p, B t, W& w, int&) const {
    const __mmask16 all = 0xFFFF;
    const __m512i v =
        _mm512_maskz_cvtepu8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    w.e = _mm512_maskz_permutexvar_ps(all, v, t);  // vpermps reads the index's low 4 bits
    w.o = _mm512_maskz_permutexvar_ps(all, _mm512_maskz_srli_epi32(all, v, 4), t);
  }
  MXQ_KI static int nonzero(const uint8_t* p, const W&) { return e2m1_nonzero(p); }
  MXQ_KI static X load_x(const float* xb) { return {_mm512_loadu_ps(xb), _mm512_loadu_ps(xb + 16)}; }
  MXQ_KI static Acc zero() { return _mm512_setzero_ps(); }
  MXQ_KI static Acc load(const float* a) { return _mm512_loadu_ps(a); }
  MXQ_KI static void store(float* a, const Acc& acc) { _mm512_storeu_ps(a, acc); }
  MXQ_KI static void fma_block(const W& w, const X& x, B, Acc& acc) {
    acc = _mm512_fmadd_ps(w.e, x.e, acc);
    acc = _mm512_fmadd_ps(w.o, x.o, acc);
  }
};
#endif

// ---- kernels --------------------------------------------------------------------------------------

// The rare-path checks of a block with scale code c (mx_gemv_common.h, FormatTables): sets
// `exact` when the row must be recomputed by the float64 loop.
template <typename P>
MXQ_KI void check_block(const uint8_t* flags, uint8_t c, const uint8_t* p, const typename P::W& w,
                        int& exact) {
  if (__builtin_expect(flags[c] != 0, 0)) {
    exact |= flags[c] & kFlagExact;
    if (flags[c] & kFlagZeroCheck) exact |= P::nonzero(p, w);  // subnormal multiplier: zeros only
  }
}

// One weight row, blocks [b0, b1), times MT activation rows: acc (MT x 16 lanes, in memory)
// += the blocks' contributions. Returns nonzero when the row needs the float64 path.
template <typename P, int MT>
MXQ_KI int row_tile(const P& pol, const FormatTables& tb, const uint8_t* prow, const uint8_t* srow,
                    int64_t b0, int64_t b1, const float* x, int64_t bstride, float* acc_io) {
  typename P::Acc acc[MT];
  for (int r = 0; r < MT; ++r) acc[r] = P::load(acc_io + kLanes * r);
  int exact = 0;
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* pb = prow + b * P::kBlockBytes;
    const uint8_t c = srow[b];
    const typename P::B blk = pol.block(tb, c);
    typename P::W w;
    pol.decode(pb, blk, w, exact);
    check_block<P>(tb.flags, c, pb, w, exact);
    const float* xb = x + b * bstride;
    for (int r = 0; r < MT; ++r) P::fma_block(w, P::load_x(xb + r * kBlockSize), blk, acc[r]);
  }
  for (int r = 0; r < MT; ++r) P::store(acc_io + kLanes * r, acc[r]);
  return exact;
}

// mc activation rows in tiles of P::kMaxTile, 8, 4, 2, 1: every row gets the same arithmetic.
template <typename P>
MXQ_KI int row_tiles(const P& pol, const FormatTables& tb, const uint8_t* prow,
                     const uint8_t* srow, int64_t b0, int64_t b1, const float* x, int64_t mc,
                     float* acc) {
  const int64_t bs = mc * kBlockSize;  // x is block-interleaved: [block][row][32]
  int exact = 0;
  int64_t r = 0;
  const auto tile = [&](auto rows) {
    constexpr int kRows = decltype(rows)::value;
    exact |= row_tile<P, kRows>(pol, tb, prow, srow, b0, b1, x + r * kBlockSize, bs,
                                acc + kLanes * r);
    r += kRows;
  };
  if constexpr (P::kMaxTile >= 16)
    while (r + 16 <= mc) tile(std::integral_constant<int, 16>());
  if constexpr (P::kMaxTile >= 8)
    while (r + 8 <= mc) tile(std::integral_constant<int, 8>());
  while (r + 4 <= mc) tile(std::integral_constant<int, 4>());
  if (r + 2 <= mc) tile(std::integral_constant<int, 2>());
  if (r < mc) tile(std::integral_constant<int, 1>());
  return exact;
}

// M = 1: kStreams weight rows from kStreams far-apart parts of [n0, n1) advance block by block
// in lockstep. One sequential stream per core is as fast as the L2 prefetcher runs (~10 GB/s
// here, and less while the core is busy decoding); several streams keep more misses in flight.
// Each x block is loaded once for all of them. Every row's arithmetic is row_tile<P, 1>'s.
constexpr int kStreams = 4;
// Each stream also prefetches its weights kPrefetchBytes ahead into L1, one line per 4 E2M1
// blocks (measured on the 2-core VM: 256 B ahead gave +15-25% at DRAM, 1 KiB less).
constexpr int64_t kPrefetchBytes = 256;

template <typename P>
MXQ_KI void gemv_streams(const P& pol, const FormatTables& tb, const MXMatrixRef& w,
                         const float* x, int64_t ldx, const float* xi, float* y, int64_t n0,
                         int64_t n1) {
  const int64_t kb = w.k / kBlockSize;
  const int64_t row_bytes = kb * P::kBlockBytes;
  const int64_t part = (n1 - n0) / kStreams;  // rows per stream; the rest go one by one
  alignas(64) float a[kLanes];
  for (int64_t i = 0; i < part; ++i) {
    const uint8_t* prow[kStreams];
    const uint8_t* srow[kStreams];
    int64_t row[kStreams];
    typename P::Acc acc[kStreams];
    int exact[kStreams];
    for (int s = 0; s < kStreams; ++s) {
      row[s] = n0 + s * part + i;
      prow[s] = w.packed + row[s] * row_bytes;
      srow[s] = w.scales + row[s] * kb;
      acc[s] = P::zero();
      exact[s] = 0;
    }
    for (int64_t b = 0; b < kb; ++b) {
      const typename P::X xb = P::load_x(xi + b * kBlockSize);
      if (b % (64 / P::kBlockBytes) == 0)  // once per 64-byte line
        for (int s = 0; s < kStreams; ++s)
          _mm_prefetch(reinterpret_cast<const char*>(prow[s] + b * P::kBlockBytes + kPrefetchBytes),
                       _MM_HINT_T0);
      for (int s = 0; s < kStreams; ++s) {
        const uint8_t* pb = prow[s] + b * P::kBlockBytes;
        const uint8_t c = srow[s][b];
        const typename P::B blk = pol.block(tb, c);
        typename P::W wv;
        pol.decode(pb, blk, wv, exact[s]);
        check_block<P>(tb.flags, c, pb, wv, exact[s]);
        P::fma_block(wv, xb, blk, acc[s]);
      }
    }
    for (int s = 0; s < kStreams; ++s) {
      P::store(a, acc[s]);
      y[row[s]] = hsum16(a);
      if (exact[s] != 0) mx_gemm_rows_exact(w, x, 1, ldx, y, 1, row[s], row[s] + 1);
    }
  }
  for (int64_t n = n0 + kStreams * part; n < n1; ++n) {  // the remaining rows
    for (float& v : a) v = 0.0f;
    const int e = row_tile<P, 1>(pol, tb, w.packed + n * row_bytes, w.scales + n * kb, 0, kb, xi,
                                 kBlockSize, a);
    y[n] = hsum16(a);
    if (e != 0) mx_gemm_rows_exact(w, x, 1, ldx, y, 1, n, n + 1);
  }
}

#if MXQ_KERNELS_AVX512
// M = 1, E2M1 on __m512: gemv_streams' lockstep streams with the per-block scalar work taken
// out of the inner loop. Per segment of kSegBlocks blocks, a prepass turns each stream's scale
// codes into c << 23 in a small buffer (vpmovzxbd + vpslld per 16 blocks) and tracks their
// minimum and maximum; the inner loop then scales the table with one masked vpaddd whose
// operand is broadcast from that buffer, and has no flag loads or branches. The table has
// 127 << 23 taken from its nonzero entries beforehand, so table + (c << 23) is, as a 32-bit
// integer sum, exactly the table + scale_bits[c] of ZmmE2M1::block, and every row's arithmetic
// is row_tile<ZmmE2M1, 1>'s. A row with any scale code outside [plain_lo, plain_hi] (where a
// block needs a check: mx_gemv_common.h) is recomputed afterwards by row_tile<ZmmE2M1, 1> itself,
// and its fast result (meaningless for such codes) discarded.
constexpr int64_t kSegBlocks = 64;

template <int S>
void gemv_e2m1_zmm(const FormatTables& tb, const MXMatrixRef& w, const float* x, int64_t ldx,
                   const float* xi, float* y, int64_t n0, int64_t n1) {
  const ZmmE2M1 pol;
  const int64_t kb = w.k / kBlockSize;
  const int64_t row_bytes = kb * ZmmE2M1::kBlockBytes;
  const int64_t part = (n1 - n0) / S;  // rows per stream; the rest go one by one
  const __mmask16 nz = 0xFEFE;         // the table's nonzero entries (codes 0 and 8 are +-0)
  const __mmask16 all = 0xFFFF;        // (maskz forms: see ZmmE2M1::decode)
  const __m512i table = _mm512_mask_sub_epi32(pol.table, nz, pol.table, _mm512_set1_epi32(127 << 23));
  alignas(64) int32_t sb[S][kSegBlocks];
  alignas(64) float a[kLanes];
  const auto careful_row = [&](int64_t n) {
    for (float& v : a) v = 0.0f;
    const int e = row_tile<ZmmE2M1, 1>(pol, tb, w.packed + n * row_bytes, w.scales + n * kb, 0,
                                       kb, xi, kBlockSize, a);
    y[n] = hsum16(a);
    if (e != 0) mx_gemm_rows_exact(w, x, 1, ldx, y, 1, n, n + 1);
  };
  for (int64_t i = 0; i < part; ++i) {
    const uint8_t* prow[S];
    const uint8_t* srow[S];
    __m512 acc[S];
    __m512i cmin[S], cmax[S];
    int smin[S], smax[S];
    for (int s = 0; s < S; ++s) {
      const int64_t row = n0 + s * part + i;
      prow[s] = w.packed + row * row_bytes;
      srow[s] = w.scales + row * kb;
      acc[s] = _mm512_setzero_ps();
      cmin[s] = _mm512_set1_epi32(255);
      cmax[s] = _mm512_setzero_si512();
      smin[s] = 255;
      smax[s] = 0;
    }
    for (int64_t b0 = 0; b0 < kb; b0 += kSegBlocks) {
      const int64_t nb = imin(kSegBlocks, kb - b0), nb16 = nb / 16 * 16;
      for (int s = 0; s < S; ++s) {
        for (int64_t j = 0; j < nb16; j += 16) {
          const __m512i c = _mm512_maskz_cvtepu8_epi32(all, 
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(srow[s] + b0 + j)));
          cmin[s] = _mm512_maskz_min_epu32(all, cmin[s], c);
          cmax[s] = _mm512_maskz_max_epu32(all, cmax[s], c);
          _mm512_store_si512(sb[s] + j, _mm512_maskz_slli_epi32(all, c, 23));
        }
        for (int64_t j = nb16; j < nb; ++j) {
          const int c = srow[s][b0 + j];
          smin[s] = c < smin[s] ? c : smin[s];
          smax[s] = c > smax[s] ? c : smax[s];
          sb[s][j] = c << 23;
        }
      }
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t b = b0 + j;
        const __m512 xe = _mm512_loadu_ps(xi + b * kBlockSize);
        const __m512 xo = _mm512_loadu_ps(xi + b * kBlockSize + 16);
        if (b % 4 == 0)  // once per 64-byte line
          for (int s = 0; s < S; ++s)
            _mm_prefetch(reinterpret_cast<const char*>(prow[s] + b * 16 + kPrefetchBytes),
                         _MM_HINT_T0);
        for (int s = 0; s < S; ++s) {
          const __m512 t = _mm512_castsi512_ps(
              _mm512_mask_add_epi32(table, nz, table, _mm512_set1_epi32(sb[s][j])));
          const __m512i v = _mm512_maskz_cvtepu8_epi32(all, 
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(prow[s] + b * 16)));
          acc[s] = _mm512_fmadd_ps(_mm512_maskz_permutexvar_ps(all, v, t), xe, acc[s]);
          acc[s] = _mm512_fmadd_ps(_mm512_maskz_permutexvar_ps(all, _mm512_maskz_srli_epi32(all, v, 4), t), xo, acc[s]);
        }
      }
    }
    for (int s = 0; s < S; ++s) {
      const int64_t row = n0 + s * part + i;
      alignas(64) uint32_t v[2][16];
      _mm512_store_si512(v[0], cmin[s]);
      _mm512_store_si512(v[1], cmax[s]);
      int lo = smin[s], hi = smax[s];
      for (int l = 0; l < 16; ++l) {
        lo = int(v[0][l]) < lo ? int(v[0][l]) : lo;
        hi = int(v[1][l]) > hi ? int(v[1][l]) : hi;
      }
      if (lo < tb.plain_lo || hi > tb.plain_hi) {
        careful_row(row);
        continue;
      }
      _mm512_store_ps(a, acc[s]);
      y[row] = hsum16(a);
    }
  }
  for (int64_t n = n0 + S * part; n < n1; ++n) careful_row(n);
}
#endif

// Cache blocking for M > 1. The activations arrive block-interleaved per super-tile of kMc rows
// (interleave_x in mx_gemv_common.h): one chunk of kcb blocks x mc rows is one contiguous piece
// that fits L1 (<= kXChunkBytes; with plain rows, 16 rows 16 KiB apart would all map to the same
// L1 sets). Every chunk serves a group of kGroup weight rows (<= 64 KiB of weights at K = 4096
// FP8, kept in L2) before the next; the 16-lane row accumulators live in `acc` between chunks.
// Only the order in which whole blocks are visited changes, never a row's arithmetic.
constexpr int64_t kGroup = 16;
constexpr int64_t kMc = kSuperTile;
constexpr int64_t kXChunkBytes = 24 * 1024;

template <typename P>
void gemm_rows_with(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, const float* xi,
                    float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const P pol;
  const FormatTables& tb = format_tables(w.elem);
#if MXQ_KERNELS_AVX512
  if constexpr (std::is_same_v<P, ZmmE2M1>)
    if (m == 1) return gemv_e2m1_zmm<kStreams>(tb, w, x, ldx, xi, y, n0, n1);
#endif
  if (m == 1) return gemv_streams<P>(pol, tb, w, x, ldx, xi, y, n0, n1);
  const int64_t kb = w.k / kBlockSize;
  const int64_t row_bytes = kb * P::kBlockBytes;
  const int64_t kcb = kXChunkBytes / (imin(m, kMc) * kBlockSize * int64_t(sizeof(float)));
  alignas(64) float acc[kGroup * kMc * kLanes];
  int exact[kGroup];
  for (int64_t g0 = n0; g0 < n1; g0 += kGroup) {
    const int64_t g1 = imin(n1, g0 + kGroup);
    for (int64_t n = g0; n < g1; ++n) exact[n - g0] = 0;
    for (int64_t m0 = 0; m0 < m; m0 += kMc) {
      const int64_t mc = imin(kMc, m - m0);
      for (int64_t i = 0; i < (g1 - g0) * mc * kLanes; ++i) acc[i] = 0.0f;
      for (int64_t c0 = 0; c0 < kb; c0 += kcb) {
        const int64_t c1 = imin(kb, c0 + kcb);
        for (int64_t n = g0; n < g1; ++n)
          exact[n - g0] |= row_tiles<P>(pol, tb, w.packed + n * row_bytes, w.scales + n * kb, c0,
                                        c1, xi + m0 * w.k, mc, acc + (n - g0) * mc * kLanes);
      }
      for (int64_t n = g0; n < g1; ++n)
        for (int64_t r = 0; r < mc; ++r)
          y[(m0 + r) * ldy + n] = hsum16(acc + ((n - g0) * mc + r) * kLanes);
    }
    for (int64_t n = g0; n < g1; ++n)
      if (exact[n - g0] != 0) mx_gemm_rows_exact(w, x, m, ldx, y, ldy, n, n + 1);
  }
}

template <ElemType T>
void gemm_rows(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, const float* xi,
               float* y, int64_t ldy, int64_t n0, int64_t n1) {
  if constexpr (T == ElemType::kE2M1) {
#if MXQ_KERNELS_AVX512
    return gemm_rows_with<ZmmE2M1>(w, x, m, ldx, xi, y, ldy, n0, n1);
#else
    return gemm_rows_with<YmmE2M1>(w, x, m, ldx, xi, y, ldy, n0, n1);
#endif
  } else {
    return gemm_rows_with<Ymm<T>>(w, x, m, ldx, xi, y, ldy, n0, n1);
  }
}

}  // namespace

bool MXQ_KERNELS_COMPILED() { return true; }

void MXQ_KERNELS_ENTRY(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx,
                       const float* xi, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  switch (w.elem) {
    case ElemType::kE2M1: return gemm_rows<ElemType::kE2M1>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kE2M3: return gemm_rows<ElemType::kE2M3>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kE3M2: return gemm_rows<ElemType::kE3M2>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kE4M3: return gemm_rows<ElemType::kE4M3>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kE5M2: return gemm_rows<ElemType::kE5M2>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kInt8: return gemm_rows<ElemType::kInt8>(w, x, m, ldx, xi, y, ldy, n0, n1);
  }
}

}  // namespace mxq::cpu::fast::detail

#undef MXQ_KI
#pragma GCC pop_options

#else  // not x86-64: the scalar kernel is the only one

namespace mxq::cpu::fast::detail {
bool MXQ_KERNELS_COMPILED() { return false; }
void MXQ_KERNELS_ENTRY(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx,
                       const float* xi, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  (void)xi;
  gemm_rows_scalar(w, x, m, ldx, y, ldy, n0, n1);
}
}  // namespace mxq::cpu::fast::detail

#endif

#undef MXQ_KERNELS_ENTRY
#undef MXQ_KERNELS_COMPILED
