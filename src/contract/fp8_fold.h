// The E8M0 fold for the FP8 tensor cores (issue 17, deliverable 2): which MX weight rows can run
// as exact E4M3 operands, and with which per-row base exponent.
//
// A row of MX weights is w[k] = e[k] * 2^(s[k / 32] - 127) (element value e, E8M0 scale code s).
// On FP8 wgmma the weight operand must be E4M3. Take one integer `base` per row and let
//   q[k] = e[k] * 2^(s[k / 32] - base),   w[k] = q[k] * 2^(base - 127),
// so the GEMM runs on q and the epilogue multiplies by 2^(base - 127) (an exact FP32 power of
// two). The row *folds* when some base makes every q[k] exactly an E4M3 value: no rounding, no
// saturation, no NaN. Then the FP8 path computes the same products as the 16-bit path.
//
// Per element code the exact shifts form one interval [lo, hi] of d = s - base: hi is set by the
// largest magnitude (E4M3's 448 = 1.75 * 2^8), lo by the lowest set bit (E4M3's smallest
// subnormal 2^-9). Zeros take any shift. A row folds when the intersection over its elements of
// [s - hi, s - lo] is not empty (and 2^(base - 127) is a finite FP32). For MXFP4 weights that is
// a scale span <= 14 binades when a row holds both 6 and 0.5 (d in [-8, 6]); for MXFP8 weights,
// whose elements use E4M3's whole range, typically only rows whose blocks share one scale fold.
// Rows that do not fold take the per-32-block promotion path (FP32 scale per block), never a
// rounded or clamped weight.
#pragma once

#include <climits>
#include <cstdint>
#include <string>

#include "mxq/formats.h"
#include "mxq/status.h"
#include "mxq/views.h"

namespace mxq::contract {

// Shifts d for which e * 2^d is exactly an E4M3 value: every d in [lo, hi]. Zero elements take
// every shift (lo = kAnyLo, hi = kAnyHi); an element that is never exact (NaN, Inf, or a value
// with more significant bits than E4M3 holds) has lo > hi.
struct ShiftRange {
  int lo = 0, hi = -1;
  bool empty() const { return lo > hi; }
};
inline constexpr int kAnyLo = -1000, kAnyHi = 1000;
ShiftRange e4m3_shift_range(ElemType t, uint8_t code);

// One row's fold: every base in [base_lo, base_hi] works when `folds`. `base` is the one chosen
// (base_lo: the elements as large as possible). A row of zeros folds with base 127.
struct Fp8FoldRow {
  bool folds = false;
  int base_lo = 0, base_hi = -1, base = 127;
  int64_t first_conflict_block = -1;  // where the feasible set became empty (-1: none / folds)
};
// packed_row: the row's element codes packed as the canonical layout (mxq/packing.h), k codes;
// scales_row: its k / 32 E8M0 codes. k % 32 == 0.
Fp8FoldRow fp8_fold_row(ElemType t, const uint8_t* packed_row, const uint8_t* scales_row,
                        int64_t k);

// Over a whole weight: how many rows fold, and (optionally) each row's base.
struct Fp8FoldStats {
  int64_t rows = 0, folded = 0;
  std::string summary() const;  // "12 of 4096 rows fold (0.3%); 4084 take per-block promotion"
};
// row_bases (batch * n entries) gets each row's base, or kRowDoesNotFold.
inline constexpr int32_t kRowDoesNotFold = INT32_MIN;
StatusOr<Fp8FoldStats> fp8_fold_stats(const MXWeightView& w, int32_t* row_bases = nullptr);

}  // namespace mxq::contract
