// MX element types, scale rules and options: the vocabulary shared by every layer of mxq.
//
// Everything here is plain constexpr data usable from host and device code (no CUDA headers:
// MXQ_HD expands to __host__ __device__ only under nvcc). The numerics that use it live in
// numerics.h; string parsing (host only) is declared at the bottom.
#pragma once

#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define MXQ_HD __host__ __device__
#define MXQ_HD_INLINE __host__ __device__ __forceinline__
#else
#define MXQ_HD
// Hot numerics are force-inlined so that each vectorised CPU kernel (compiled per ISA through
// target_clones) gets its own copy instead of calling a shared out-of-line one.
#define MXQ_HD_INLINE __attribute__((always_inline)) inline
#endif

namespace mxq {

// Scale block size along K, fixed by the OCP MX spec for every MX format.
inline constexpr int kBlockSize = 32;

// Element types of the MX formats. MXFP4 = E2M1, MXFP6 = E2M3 / E3M2, MXFP8 = E4M3 / E5M2,
// MXINT8 = Int8 (two's complement, value q/64).
enum class ElemType : uint8_t { kE2M1, kE2M3, kE3M2, kE4M3, kE5M2, kInt8 };
inline constexpr ElemType kAllElemTypes[] = {ElemType::kE2M1, ElemType::kE2M3, ElemType::kE3M2,
                                             ElemType::kE4M3, ElemType::kE5M2, ElemType::kInt8};

// How the block's E8M0 scale is chosen from its amax (NUMERICS.md, "Options").
enum class ScaleRule : uint8_t { kFloor, kRceil, kRoundUp, kEven, kEvenFp4Mantissa };
inline constexpr ScaleRule kAllScaleRules[] = {ScaleRule::kFloor, ScaleRule::kRceil,
                                               ScaleRule::kRoundUp, ScaleRule::kEven,
                                               ScaleRule::kEvenFp4Mantissa};

// How an element is rounded once scaled. All three round to nearest; they differ on ties.
enum class Rounding : uint8_t { kRne, kHalfAway, kTowardZeroTies };
inline constexpr Rounding kAllRoundings[] = {Rounding::kRne, Rounding::kHalfAway,
                                             Rounding::kTowardZeroTies};

// What a finite element beyond the largest normal becomes. kNanInf exists only for FP8
// (E4M3 -> NaN, E5M2 -> Inf), the types that have such codes.
enum class Saturation : uint8_t { kSaturate, kNanInf };

// Dense floating-point types mxq reads and writes around the MX formats.
enum class DType : uint8_t { kF32, kBF16, kF16 };

MXQ_HD constexpr int dtype_bytes(DType d) { return d == DType::kF32 ? 4 : 2; }

// Static description of an element type. Field meanings follow NUMERICS.md's format table.
struct ElemInfo {
  int bits;            // storage bits per element
  int mbits;           // explicit mantissa bits (Int8: 6 fraction bits of q/64)
  int bias;            // exponent bias (Int8: unused)
  int emin;            // unbiased exponent of the smallest normal (Int8: quantum exponent -6)
  int emax;            // emax_elem: unbiased exponent of the largest normal
  uint8_t max_mag;     // magnitude code of the largest finite value (sign bit clear)
  uint8_t sign_mask;   // the sign bit (Int8: two's complement, 0x80 for reference only)
  uint8_t nan_fill;    // element code written into every lane of a NaN-scaled (0xFF) block
  uint8_t overflow_mag;  // magnitude code for overflow under Saturation::kNanInf (FP8 only)
  bool is_int;         // MXINT8
  bool has_nan_inf;    // FP8 types have NaN (and E5M2 Inf) codes
  float max_normal;    // largest finite magnitude
  int even_mbits;      // mantissa width the `even` scale rule rounds amax to
};

MXQ_HD_INLINE constexpr ElemInfo elem_info(ElemType t) {
  switch (t) {
    case ElemType::kE2M1: return {4, 1, 1, 0, 2, 0x7, 0x8, 0x00, 0x7, false, false, 6.0f, 1};
    case ElemType::kE2M3: return {6, 3, 1, 0, 2, 0x1F, 0x20, 0x00, 0x1F, false, false, 7.5f, 3};
    case ElemType::kE3M2: return {6, 2, 3, -2, 4, 0x1F, 0x20, 0x00, 0x1F, false, false, 28.0f, 2};
    case ElemType::kE4M3: return {8, 3, 7, -6, 8, 0x7E, 0x80, 0x7F, 0x7F, false, true, 448.0f, 3};
    case ElemType::kE5M2:
      return {8, 2, 15, -14, 15, 0x7B, 0x80, 0x7F, 0x7C, false, true, 57344.0f, 2};
    case ElemType::kInt8: return {8, 6, 0, -6, 0, 0x7F, 0x80, 0x00, 0x7F, true, false, 127.0f / 64, 6};
  }
  return {};
}

// Packed bytes for `k` elements of one row (k a multiple of the packing group).
MXQ_HD constexpr int64_t packed_bytes(ElemType t, int64_t k) {
  return k * elem_info(t).bits / 8;
}

// ---- names (host only) -------------------------------------------------------------------
// Canonical lowercase names, used by the CLI, config files and error messages.
const char* elem_type_name(ElemType t);    // "e2m1", "e2m3", "e3m2", "e4m3", "e5m2", "int8"
const char* mx_format_name(ElemType t);    // "mxfp4", "mxfp6-e2m3", ..., "mxint8"
const char* scale_rule_name(ScaleRule r);  // "floor", "rceil", "round_up", "even", ...
const char* rounding_name(Rounding r);     // "rne", "half_away", "toward_zero_ties"
const char* saturation_name(Saturation s); // "saturate", "nan_inf"
const char* dtype_name(DType d);           // "f32", "bf16", "f16"

}  // namespace mxq
