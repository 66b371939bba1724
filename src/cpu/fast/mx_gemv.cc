// Dispatch, per-format tables, the portable scalar kernel and the exact fallback of mx_gemv.h.
#include "cpu/fast/mx_gemv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/fast/mx_gemv_common.h"
#include "mxq/packing.h"

namespace mxq::cpu::fast {

namespace detail {

namespace {

// Multipliers above 2^64 (weights beyond ~1e19) go to the float64 loop: there an FP32 lane
// partial p * S could overflow although the row's total does not.
constexpr double kMaxFastScale = 18446744073709551616.0;  // 2^64

FormatTables make_tables(ElemType t) {
  FormatTables tb{};
  const int ld = decode_log2_factor(t);
  const int n = 1 << elem_info(t).bits;
  for (int c = 0; c < 256; ++c) {
    // d * elem is exact: d is a power of two and every decoded value stays a normal FP32
    // number or zero (E2M3 subnormals times 2^-14 are >= 2^-17).
    tb.decoded[c] = c < n ? std::ldexp(num::decode_elem(t, uint8_t(c)), ld) : 0.0f;
    const double s = std::ldexp(1.0, c - 127 - ld);
    tb.scale_bits[c] = (c - 127 - ld) * (1 << 23);
    if (c == num::kScaleNaN) {
      tb.scale[c] = std::numeric_limits<float>::quiet_NaN();
      if (t == ElemType::kE2M1) tb.flags[c] = kFlagExact;  // the scaled table cannot hold NaN
    } else if (t == ElemType::kE2M1 && 0.5 * s < double(std::numeric_limits<float>::min())) {
      tb.scale[c] = c == 0 ? 0.0f : float(s);  // c = 1: 0.5 * S would be subnormal
      tb.flags[c] = kFlagZeroCheck;
    } else if (s > kMaxFastScale) {
      tb.scale[c] = float(std::min(s, double(std::numeric_limits<float>::max())));
      tb.flags[c] = kFlagExact;
    } else if (s < double(std::numeric_limits<float>::min())) {
      tb.scale[c] = 0.0f;
      tb.flags[c] = kFlagZeroCheck;
    } else {
      tb.scale[c] = float(s);
    }
  }
  // The run of codes without flags (one run: flags sit only at both ends of the code range).
  int lo = 0, hi = 255;
  while (lo < 255 && tb.flags[lo] != 0) ++lo;
  hi = lo;
  while (hi < 255 && tb.flags[hi + 1] == 0) ++hi;
  tb.plain_lo = uint8_t(lo);
  tb.plain_hi = uint8_t(hi);
  return tb;
}

const FormatTables kTables[] = {make_tables(ElemType::kE2M1), make_tables(ElemType::kE2M3),
                                make_tables(ElemType::kE3M2), make_tables(ElemType::kE4M3),
                                make_tables(ElemType::kE5M2), make_tables(ElemType::kInt8)};

// The portable kernel: the arithmetic of mx_gemv.h spelled out lane by lane, for up to
// kScalarTile activation rows per decoded block.
constexpr int64_t kScalarTile = 8;
void gemm_row_scalar(const MXMatrixRef& w, const FormatTables& tb, const float* x, int64_t m,
                     int64_t ldx, float* y, int64_t ldy, int64_t n) {
  const ElemType t = w.elem;
  const int64_t kb = w.k / kBlockSize;
  const int64_t block_bytes = packed_bytes(t, kBlockSize);
  const uint8_t* prow = w.packed + n * kb * block_bytes;
  const uint8_t* srow = w.scales + n * kb;
  float acc[kScalarTile][kLanes] = {};
  bool exact = false;
  uint8_t codes[kBlockSize];
  float wv[kBlockSize];
  for (int64_t b = 0; b < kb; ++b) {
    pack::unpack_codes(t, prow + b * block_bytes, kBlockSize, codes);
    for (int i = 0; i < kBlockSize; ++i) wv[i] = tb.decoded[codes[i]];
    if (t == ElemType::kE4M3)
      for (int i = 0; i < kBlockSize; ++i) exact = exact || (codes[i] & 0x7F) == 0x7F;
    const uint8_t c = srow[b];
    exact = exact || (tb.flags[c] & kFlagExact) != 0;
    if ((tb.flags[c] & kFlagZeroCheck) != 0)
      for (int i = 0; i < kBlockSize; ++i) exact = exact || tb.decoded[codes[i]] != 0.0f;
    const float s = tb.scale[c];
    if (t == ElemType::kE2M1) {  // scaled elements (exact), accumulated one by one
      for (int i = 0; i < kBlockSize; ++i) wv[i] *= s;
      for (int64_t r = 0; r < m; ++r) {
        const float* xr = x + r * ldx + b * kBlockSize;
        for (int l = 0; l < kLanes; ++l) {
          const int e0 = block_elem(t, l, 0), e1 = block_elem(t, l, 1);
          acc[r][l] = std::fma(wv[e0], xr[e0], acc[r][l]);
          acc[r][l] = std::fma(wv[e1], xr[e1], acc[r][l]);
        }
      }
      continue;
    }
    for (int64_t r = 0; r < m; ++r) {
      const float* xr = x + r * ldx + b * kBlockSize;
      for (int l = 0; l < kLanes; ++l) {
        const int e0 = block_elem(t, l, 0), e1 = block_elem(t, l, 1);
        float q = wv[e0] * xr[e0];
        q = std::fma(wv[e1], xr[e1], q);
        acc[r][l] = std::fma(q, s, acc[r][l]);
      }
    }
  }
  for (int64_t r = 0; r < m; ++r) y[r * ldy + n] = hsum16(acc[r]);
  if (exact) mx_gemm_rows_exact(w, x, m, ldx, y, ldy, n, n + 1);
}

}  // namespace

const FormatTables& format_tables(ElemType t) { return kTables[int(t)]; }

float decode_factor(ElemType t) { return std::ldexp(1.0f, decode_log2_factor(t)); }

void gemm_rows_scalar(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, float* y,
                      int64_t ldy, int64_t n0, int64_t n1) {
  const FormatTables& tb = format_tables(w.elem);
  // Weight row outer, activation tiles inner: each weight row comes from memory once.
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t r0 = 0; r0 < m; r0 += kScalarTile)
      gemm_row_scalar(w, tb, x + r0 * ldx, std::min<int64_t>(kScalarTile, m - r0), ldx,
                      y + r0 * ldy, ldy, n);
}

void interleave_x(ElemType t, const float* x, int64_t m, int64_t ldx, int64_t k, float* xi) {
  const int64_t kb = k / kBlockSize;
  int perm[kBlockSize];  // destination slot 8j + l <- source element lane_elem(t, j, l)
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < 8; ++l) perm[8 * j + l] = lane_elem(t, j, l);
  for (int64_t m0 = 0; m0 < m; m0 += kSuperTile) {
    const int64_t mc = std::min(kSuperTile, m - m0);
    float* base = xi + m0 * k;
    for (int64_t r = 0; r < mc; ++r) {
      for (int64_t b = 0; b < kb; ++b) {
        const float* src = x + (m0 + r) * ldx + b * kBlockSize;
        float* dst = base + (b * mc + r) * kBlockSize;
        for (int i = 0; i < kBlockSize; ++i) dst[i] = src[perm[i]];
      }
    }
  }
}

void mx_gemm_rows_exact(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, float* y,
                        int64_t ldy, int64_t n0, int64_t n1) {
  const ElemType t = w.elem;
  const int64_t kb = w.k / kBlockSize;
  const int64_t block_bytes = packed_bytes(t, kBlockSize);
  std::vector<uint8_t> codes(size_t(w.k));
  std::vector<double> wrow(size_t(w.k));
  for (int64_t n = n0; n < n1; ++n) {
    pack::unpack_codes(t, w.packed + n * kb * block_bytes, w.k, codes.data());
    for (int64_t i = 0; i < w.k; ++i) {
      const uint8_t s = w.scales[n * kb + i / kBlockSize];
      wrow[size_t(i)] = s == num::kScaleNaN
                            ? std::numeric_limits<double>::quiet_NaN()
                            : double(num::decode_elem(t, codes[size_t(i)])) * std::ldexp(1.0, int(s) - 127);
    }
    for (int64_t r = 0; r < m; ++r) {
      double acc = 0.0;
      for (int64_t i = 0; i < w.k; ++i) acc += double(x[r * ldx + i]) * wrow[size_t(i)];
      y[r * ldy + n] = float(acc);
    }
  }
}

}  // namespace detail

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2+fma+f16c";
    case Isa::kAvx512: return "avx2+avx512vl";
  }
  return "?";
}

bool isa_available(Isa isa) {
#if defined(__x86_64__)
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return detail::avx2_compiled() && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  static const bool avx512 = avx2 && detail::avx512_compiled() &&
                             __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#else
  constexpr bool avx2 = false, avx512 = false;
#endif
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return avx2;
    case Isa::kAvx512: return avx512;
  }
  return false;
}

Isa best_isa() {
  static const Isa isa = isa_available(Isa::kAvx512) ? Isa::kAvx512
                         : isa_available(Isa::kAvx2) ? Isa::kAvx2
                                                     : Isa::kScalar;
  return isa;
}

PackedX::PackedX(Isa isa, ElemType t, const float* x, int64_t m, int64_t ldx, int64_t k)
    : isa_(isa), elem_(t), x_(x), m_(m), ldx_(ldx) {
  // A path the CPU lacks falls back to the next one down (same results, bit for bit).
  if (isa_ == Isa::kAvx512 && !isa_available(Isa::kAvx512)) isa_ = Isa::kAvx2;
  if (isa_ == Isa::kAvx2 && !isa_available(Isa::kAvx2)) isa_ = Isa::kScalar;
  // The SIMD kernels read a copy unless it would equal x (one row, natural lanes).
  if (isa_ != Isa::kScalar && m > 0 && (m > 1 || t == ElemType::kE2M1)) {
    buf_.resize(static_cast<size_t>(m * k));
    detail::interleave_x(t, x, m, ldx, k, buf_.data());
  }
}

void mx_gemm_rows(const MXMatrixRef& w, const PackedX& x, float* y, int64_t ldy, int64_t n0,
                  int64_t n1) {
  if (n1 <= n0 || x.m() <= 0) return;
  switch (x.isa()) {
    case Isa::kAvx512:
      return detail::gemm_rows_avx512(w, x.rows(), x.m(), x.ldx(), x.simd(), y, ldy, n0, n1);
    case Isa::kAvx2:
      return detail::gemm_rows_avx2(w, x.rows(), x.m(), x.ldx(), x.simd(), y, ldy, n0, n1);
    case Isa::kScalar:
      return detail::gemm_rows_scalar(w, x.rows(), x.m(), x.ldx(), y, ldy, n0, n1);
  }
}

void mx_gemm_rows(Isa isa, const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, float* y,
                  int64_t ldy, int64_t n0, int64_t n1) {
  mx_gemm_rows(w, PackedX(isa, w.elem, x, m, ldx, w.k), y, ldy, n0, n1);
}

}  // namespace mxq::cpu::fast
