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
//   E2M1  (16 B)  per 16 elements (8 bytes): vpmovzxbd; the low nibbles are the even elements,
//                 the high nibbles (>> 4) the odd ones; vpermps on the low 3 bits + one XOR
//                 for the sign (3 ALU uops per 8 elements). d = 1.
//                 AVX-512: the whole block in two __m512: one vpmovzxbd of the 16 bytes, then
//                 vpermps on the 16-entry table (low 4 bits: the low nibble needs no mask) for
//                 the even elements and vpsrld 4 + vpermps for the odd ones (3 shuffle uops per
//                 block instead of 6).
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

// E2M1 (mx_gemv_common.h lane_elem): w[h] holds the even elements 16h + 2l of the block's half
// h (the low nibbles of its 8 bytes), w[2 + h] the odd ones (the high nibbles). vpmovzxbd puts
// byte l of the half in lane l. vpermps looks the magnitude up from the low 3 bits (the other
// nibble never matters), and one XOR with (index << 28) sets the sign; the table entries are
// pre-XORed with (j << 28) so that the same XOR also cancels the index bits it drags into bits
// 28..30.
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
      w[h] = lookup(v);
      w[2 + h] = lookup(_mm256_srli_epi32(v, 4));
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
// X (an activation block), S (a broadcast block multiplier), Acc (one row's 16 lanes);
// decode(p, w, exact); nonzero(w) (any decoded value != 0); load_x, bcast, zero, load, store;
// fma_block(w, x, s, acc): the block step of mx_gemv.h,
//   q = w[e_0(L)] * x[e_0(L)];  q = fma(w[e_1(L)], x[e_1(L)], q);  acc[L] = fma(q, s, acc[L]).

// Any format on __m256: lanes 0..7 from w0/x0 and w2/x2, lanes 8..15 from w1/x1 and w3/x3.
template <ElemType T>
struct Ymm {
  static constexpr int kBlockBytes = Decoder<T>::kBlockBytes;
  // Two accumulators per row: 8 rows fill 16 of AVX-512VL's 32 registers, 4 rows 8 of AVX2's 16.
  static constexpr int kMaxTile = MXQ_KERNELS_AVX512 ? 8 : 4;
  struct W { __m256 v[4]; };
  struct X { __m256 v[4]; };
  struct Acc { __m256 lo, hi; };
  using S = __m256;
  Decoder<T> dec;
  MXQ_KI Ymm() {}  // explicit: an implicit one would be compiled outside the target region
  MXQ_KI void decode(const uint8_t* p, W& w, int& exact) const { dec(p, w.v, exact); }
  MXQ_KI static int nonzero(const W& w) {
    const __m256 any = _mm256_or_ps(_mm256_or_ps(w.v[0], w.v[1]), _mm256_or_ps(w.v[2], w.v[3]));
    return _mm256_movemask_ps(_mm256_cmp_ps(any, _mm256_setzero_ps(), _CMP_NEQ_UQ));
  }
  MXQ_KI static X load_x(const float* xb) {
    return {{_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8), _mm256_loadu_ps(xb + 16),
             _mm256_loadu_ps(xb + 24)}};
  }
  MXQ_KI static S bcast(const float* s) { return _mm256_broadcast_ss(s); }
  MXQ_KI static Acc zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  MXQ_KI static Acc load(const float* a) { return {_mm256_loadu_ps(a), _mm256_loadu_ps(a + 8)}; }
  MXQ_KI static void store(float* a, const Acc& acc) {
    _mm256_storeu_ps(a, acc.lo);
    _mm256_storeu_ps(a + 8, acc.hi);
  }
  MXQ_KI static void fma_block(const W& w, const X& x, S s, Acc& acc) {
    __m256 lo = _mm256_mul_ps(w.v[0], x.v[0]);
    __m256 hi = _mm256_mul_ps(w.v[1], x.v[1]);
    lo = _mm256_fmadd_ps(w.v[2], x.v[2], lo);
    hi = _mm256_fmadd_ps(w.v[3], x.v[3], hi);
    acc.lo = _mm256_fmadd_ps(lo, s, acc.lo);
    acc.hi = _mm256_fmadd_ps(hi, s, acc.hi);
  }
};

#if MXQ_KERNELS_AVX512
// E2M1 on __m512: lane L = byte L of the block: even element 2L (w.e), odd 2L + 1 (w.o); the
// same lanes as Ymm<kE2M1>'s lo | hi.
struct ZmmE2M1 {
  static constexpr int kBlockBytes = 16;
  static constexpr int kMaxTile = 16;  // 16 accumulators of the 32 registers
  struct W { __m512 e, o; };
  using X = W;  // x.e = the even elements' activations, x.o the odd ones'
  using Acc = __m512;
  using S = __m512;
  __m512 lut;
  MXQ_KI ZmmE2M1() {
    alignas(64) float t[16];
    for (int j = 0; j < 16; ++j) t[j] = num::decode_elem(ElemType::kE2M1, uint8_t(j));
    lut = _mm512_load_ps(t);
  }
  // (The all-lanes maskz forms compile to the plain instructions; the plain intrinsics trip
  // GCC 12's -Wmaybe-uninitialized on their undefined pass-through operand.)
  MXQ_KI void decode(const uint8_t* p, W& w, int&) const {
    const __mmask16 all = 0xFFFF;
    const __m512i v =
        _mm512_maskz_cvtepu8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    w.e = _mm512_maskz_permutexvar_ps(all, v, lut);  // vpermps reads the index's low 4 bits
    w.o = _mm512_maskz_permutexvar_ps(all, _mm512_maskz_srli_epi32(all, v, 4), lut);
  }
  MXQ_KI static int nonzero(const W& w) {
    const __m512 any = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(w.e), _mm512_castps_si512(w.o)));
    return int(_mm512_cmp_ps_mask(any, _mm512_setzero_ps(), _CMP_NEQ_UQ));
  }
  MXQ_KI static X load_x(const float* xb) { return {_mm512_loadu_ps(xb), _mm512_loadu_ps(xb + 16)}; }
  MXQ_KI static S bcast(const float* s) { return _mm512_set1_ps(*s); }
  MXQ_KI static Acc zero() { return _mm512_setzero_ps(); }
  MXQ_KI static Acc load(const float* a) { return _mm512_loadu_ps(a); }
  MXQ_KI static void store(float* a, const Acc& acc) { _mm512_storeu_ps(a, acc); }
  MXQ_KI static void fma_block(const W& w, const X& x, S s, Acc& acc) {
    const __m512 q = _mm512_fmadd_ps(w.o, x.o, _mm512_mul_ps(w.e, x.e));
    acc = _mm512_fmadd_ps(q, s, acc);
  }
};
#endif

// ---- kernels --------------------------------------------------------------------------------------

// The rare-path checks of a block with scale code c (mx_gemv_common.h, FormatTables): sets
// `exact` when the row must be recomputed by the float64 loop.
template <typename P>
MXQ_KI void check_block(const uint8_t* flags, uint8_t c, const typename P::W& w, int& exact) {
  if (__builtin_expect(flags[c] != 0, 0)) {
    exact |= flags[c] & kFlagExact;
    if (flags[c] & kFlagZeroCheck) exact |= P::nonzero(w);  // subnormal multiplier: all-zero only
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
    typename P::W w;
    pol.decode(prow + b * P::kBlockBytes, w, exact);
    const uint8_t c = srow[b];
    check_block<P>(tb.flags, c, w, exact);
    const typename P::S s = P::bcast(tb.scale + c);
    const float* xb = x + b * bstride;
    for (int r = 0; r < MT; ++r) P::fma_block(w, P::load_x(xb + r * kBlockSize), s, acc[r]);
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
constexpr int kStreams = 8;

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
      for (int s = 0; s < kStreams; ++s) {
        typename P::W wv;
        pol.decode(prow[s] + b * P::kBlockBytes, wv, exact[s]);
        const uint8_t c = srow[s][b];
        check_block<P>(tb.flags, c, wv, exact[s]);
        P::fma_block(wv, xb, P::bcast(tb.scale + c), acc[s]);
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
#if MXQ_KERNELS_AVX512
  if constexpr (T == ElemType::kE2M1)
    return gemm_rows_with<ZmmE2M1>(w, x, m, ldx, xi, y, ldy, n0, n1);
#endif
  return gemm_rows_with<Ymm<T>>(w, x, m, ldx, xi, y, ldy, n0, n1);
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
