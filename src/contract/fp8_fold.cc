#include "contract/fp8_fold.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <vector>

#include "mxq/numerics.h"
#include "mxq/packing.h"

namespace mxq::contract {

namespace {

// Exactly an E4M3 value: finite in FP32 and unchanged by E4M3 encode (RNE, saturating) + decode.
bool exact_in_e4m3(double u) {
  if (!std::isfinite(u) || std::fabs(u) > 448.0) return false;
  const float f = float(u);
  if (double(f) != u) return false;  // more bits than FP32 (never for the shifts tried)
  const uint8_t c = num::encode_elem(ElemType::kE4M3, num::f32_bits(f), 0, Rounding::kRne,
                                     Saturation::kSaturate);
  return num::decode_elem(ElemType::kE4M3, c) == f;
}

// The shifts tried: every element value of every MX type is 2^[-17, 16) in magnitude, and E4M3
// holds 2^[-9, 9), so exact shifts lie well inside [-40, 40].
constexpr int kShiftSpan = 40;

ShiftRange compute_range(ElemType t, uint8_t code) {
  const float v = num::decode_elem(t, code);
  if (!std::isfinite(v)) return {};
  if (v == 0.0f) return {kAnyLo, kAnyHi};
  ShiftRange r{kAnyHi, kAnyLo};  // empty until a shift is exact
  for (int d = -kShiftSpan; d <= kShiftSpan; ++d) {
    if (!exact_in_e4m3(std::ldexp(double(v), d))) continue;
    r.lo = std::min(r.lo, d);
    r.hi = std::max(r.hi, d);
  }
  return r.lo <= r.hi ? r : ShiftRange{};
}

struct Table {
  std::array<ShiftRange, 256> r{};
};

const Table& table(ElemType t) {
  static const std::array<Table, 6> tables = [] {
    std::array<Table, 6> all{};
    for (ElemType e : kAllElemTypes) {
      const int codes = 1 << elem_info(e).bits;
      for (int c = 0; c < codes; ++c) all[size_t(e)].r[size_t(c)] = compute_range(e, uint8_t(c));
    }
    return all;
  }();
  return tables[size_t(t)];
}

// 2^(base - 127) must be a finite FP32 power of two, subnormals included: base - 127 in
// [-149, 127].
constexpr int kBaseMin = 127 - 149, kBaseMax = 127 + 127;

}  // namespace

ShiftRange e4m3_shift_range(ElemType t, uint8_t code) {
  const int codes = 1 << elem_info(t).bits;
  if (int(code) >= codes) return {};
  return table(t).r[code];
}

Fp8FoldRow fp8_fold_row(ElemType t, const uint8_t* packed_row, const uint8_t* scales_row,
                        int64_t k) {
  const Table& tab = table(t);
  const ElemInfo ei = elem_info(t);
  int lo = kBaseMin, hi = kBaseMax;
  bool any_nonzero = false;
  Fp8FoldRow out;
  uint8_t codes[32];
  for (int64_t b = 0; b < k / 32; ++b) {
    const int s = scales_row[b];
    if (s == num::kScaleNaN) {  // the whole block is NaN (zero codes too): never an E4M3 operand
      out.first_conflict_block = b;
      return out;
    }
    pack::unpack_codes(t, packed_row + b * 32 * ei.bits / 8, 32, codes);
    // The block's own shift interval: the intersection over its elements.
    int dlo = kAnyLo, dhi = kAnyHi;
    for (uint8_t c : codes) {
      const ShiftRange r = tab.r[c];
      dlo = std::max(dlo, r.lo);
      dhi = std::min(dhi, r.hi);
    }
    if (dlo == kAnyLo && dhi == kAnyHi) continue;  // all zeros: any scale, any base
    any_nonzero = true;
    if (dlo > dhi) {  // an element no shift makes an E4M3 value
      out.first_conflict_block = b;
      return out;
    }
    // A weight beyond FP32's range is Inf in the reference (dequantize_elem); the FP8 path would
    // keep it finite, so such a block never folds. Only possible for s >= 239: every element
    // magnitude of every MX type is below 2^16.
    if (s >= 239) {
      for (uint8_t c : codes) {
        if (!std::isfinite(num::dequantize_elem(t, c, uint8_t(s)))) {
          out.first_conflict_block = b;
          return out;
        }
      }
    }
    // d = s - base in [dlo, dhi]  <=>  base in [s - dhi, s - dlo].
    lo = std::max(lo, s - dhi);
    hi = std::min(hi, s - dlo);
    if (lo > hi) {
      out.first_conflict_block = b;
      return out;
    }
  }
  out.folds = true;
  if (!any_nonzero) {
    out.base_lo = out.base_hi = out.base = 127;
    return out;
  }
  out.base_lo = lo;
  out.base_hi = hi;
  out.base = lo;
  return out;
}

std::string Fp8FoldStats::summary() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%lld of %lld rows fold (%.1f%%); %lld take per-block promotion",
                static_cast<long long>(folded), static_cast<long long>(rows),
                rows > 0 ? 100.0 * double(folded) / double(rows) : 0.0,
                static_cast<long long>(rows - folded));
  return buf;
}

StatusOr<Fp8FoldStats> fp8_fold_stats(const MXWeightView& w, int32_t* row_bases) {
  if (w.k <= 0 || w.k % 32 != 0 || w.n <= 0 || w.batch <= 0)
    return invalid_argument("fp8 fold: weights of shape [" + std::to_string(w.batch) + ", " +
                            std::to_string(w.n) + ", " + std::to_string(w.k) +
                            "]: expected batch, n > 0 and k a positive multiple of 32");
  if (w.packed == nullptr || w.scales == nullptr)
    return invalid_argument("fp8 fold: weight codes or scales missing (null)");
  const int64_t row_bytes = w.k * elem_info(w.elem).bits / 8, row_scales = w.k / 32;
  Fp8FoldStats st;
  st.rows = w.batch * w.n;
  for (int64_t r = 0; r < st.rows; ++r) {
    const Fp8FoldRow f = fp8_fold_row(w.elem, w.packed + r * row_bytes,
                                      w.scales + r * row_scales, w.k);
    st.folded += f.folds ? 1 : 0;
    if (row_bases != nullptr) row_bases[r] = f.folds ? f.base : kRowDoesNotFold;
  }
  return st;
}

}  // namespace mxq::contract
