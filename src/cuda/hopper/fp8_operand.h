// The E4M3 weight operand of the FP8 wgmma path (issue 17, first building block): MXFP4 weights
// decoded in registers to E4M3 bytes with each 32-block's E8M0 scale folded in, relative to its
// row's base (src/contract/fp8_fold.h decides which rows fold and their base). Shared by the CPU
// definition and tests (tests/cuda/fp8_operand_test.cc) and the kernel, so they cannot drift.
// C++17-clean, host and device code.
//
// The A fragment of wgmma.m64nNk32 with 8-bit types in registers (PTX ISA, "Register fragments"
// of wgmma; CuTe calls it ALayout_64x32): lane (g = lane / 4, t = lane % 4) of warp w of the
// warpgroup holds 4 registers of 4 bytes,
//   reg 0: row 16 w + g,     k = 4 t + byte        reg 2: row 16 w + g,     k = 16 + 4 t + byte
//   reg 1: row 16 w + g + 8, k = 4 t + byte        reg 3: row 16 w + g + 8, k = 16 + 4 t + byte
// One k32 step is exactly one MX block per row, so each of a lane's two rows needs one shift
// d = s - base per step, and the 8 codes of one row and one step (16 bytes of E2M1 per 4 lanes)
// form one 32-bit *operand word*:
//   nibble i     (i < 4) = the E2M1 code of k = 4 t + i       -> register 0 (or 1), byte i
//   nibble 4 + i         = the E2M1 code of k = 16 + 4 t + i  -> register 2 (or 3), byte i
// i.e. the raw codes: the decode is a byte permute (PRMT) through a table of 8 bytes per shift.
//
// The decode of one word (9 instructions per 8 E4M3 bytes, the scale included):
//   magnitude: PRMT(L0, L1, w & 0x7777) takes byte (code & 7) of the row's table
//              L(d) = E4M3 codes of {0, 0.5, 1, 1.5, 2, 3, 4, 6} x 2^d (L0: the first four);
//              for the high half the selector is (w & 0x77777777) >> 16 (PRMT reads 16 bits);
//   sign:      PRMT(w, w << 4, S) in sign-replicate mode: byte j of w has the signs of codes
//              2j + 1 (bit 7) and, in w << 4, 2j (bit 7), so the constant selector S (nibble
//              8 | source byte) gives 0xFF for each negative code and 0x00 otherwise;
//   result:    magnitude | (sign & 0x80808080) (one LOP3), for each half.
// Exact for every d in [kMinShift, kMaxShift] = [-8, 6]: 0.5 x 2^-8 = 2^-9 is E4M3's smallest
// subnormal and 6 x 2^6 = 384 <= 448 (fp8_fold.h: the E2M1 shift intervals). Negative zero
// stays negative zero (0x80), as the reference's decode of code 8 does.
#pragma once

#include <cstdint>

#include "cuda/gemm/frag_word.h"  // MXQ_FRAG_FN

namespace mxq::cuda::hopper::fp8 {

inline constexpr int kMinShift = -8, kMaxShift = 6;
inline constexpr int kShifts = kMaxShift - kMinShift + 1;  // 15 tables

// The E4M3 code (sign clear) of the E2M1 magnitude `mag` (0..7) times 2^d, d in [-8, 6]:
// magnitudes in units of 0.5 are u = {0, 1, 2, 3, 4, 6, 8, 12}, so the value is u x 2^(d - 1).
MXQ_FRAG_FN constexpr uint32_t e4m3_of_e2m1(uint32_t mag, int d) {
  constexpr uint32_t kUnits[8] = {0, 1, 2, 3, 4, 6, 8, 12};
  const uint32_t u = kUnits[mag & 7u];
  if (u == 0) return 0;
  int top = 0;  // floor(log2 u)
  while ((u >> (top + 1)) != 0) ++top;
  const int e = top + d - 1;                       // the value's binade
  if (e < -6) return u << (d - 1 + 9);             // subnormal: value / 2^-9 (an integer < 8)
  const uint32_t frac = (u << 3 >> top) & 7u;      // 3 mantissa bits below the leading one
  return (uint32_t(e + 7) << 3) | frac;
}

// The 8-byte table of shift d as two registers: byte j of (lo, hi) = e4m3_of_e2m1(j, d).
struct ShiftTable {
  uint32_t lo = 0, hi = 0;
};
MXQ_FRAG_FN constexpr ShiftTable shift_table(int d) {
  ShiftTable t;
  for (uint32_t j = 0; j < 4; ++j) {
    t.lo |= e4m3_of_e2m1(j, d) << (8 * j);
    t.hi |= e4m3_of_e2m1(4 + j, d) << (8 * j);
  }
  return t;
}

// PRMT (default mode) as the PTX ISA defines it: bytes 0..3 of a then 0..3 of b are sources
// 0..7; result byte i is source (c >> 4 i) & 7, or, when bit 3 of that nibble is set, the sign
// bit of that source byte replicated into all 8 bits. On the device it is __byte_perm.
MXQ_FRAG_FN uint32_t prmt(uint32_t a, uint32_t b, uint32_t c) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(a, b, c);
#else
  const uint64_t src = uint64_t(a) | (uint64_t(b) << 32);
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t n = (c >> (4 * i)) & 15u;
    uint32_t byte = uint32_t(src >> (8 * (n & 7u))) & 0xFFu;
    if (n & 8u) byte = (byte & 0x80u) ? 0xFFu : 0x00u;
    r |= byte << (8 * i);
  }
  return r;
#endif
}

// One operand word -> its two registers (low half: k 4t..4t+3, high half: k 16+4t..16+4t+3),
// with the row's shift table for this k32 step.
// Sign selectors: code i's sign is bit 4 i + 3 of w, i.e. bit 7 of byte i / 2 of w for odd i
// (sources 0..3) and bit 7 of byte i / 2 of w << 4 for even i (sources 4..7); each nibble is
// 8 | source (sign-replicate mode). Codes 0..3 -> kSignLo, codes 4..7 -> kSignHi.
inline constexpr uint32_t kSignLo = 0x9D8Cu;  // sources 4, 0, 5, 1
inline constexpr uint32_t kSignHi = 0xBFAEu;  // sources 6, 2, 7, 3
MXQ_FRAG_FN void decode_word(uint32_t w, const ShiftTable& t, uint32_t& reg_lo, uint32_t& reg_hi) {
  const uint32_t m = w & 0x77777777u;
  const uint32_t mag_lo = prmt(t.lo, t.hi, m), mag_hi = prmt(t.lo, t.hi, m >> 16);
  const uint32_t w4 = w << 4;
  const uint32_t neg_lo = prmt(w, w4, kSignLo), neg_hi = prmt(w, w4, kSignHi);
  reg_lo = mag_lo | (neg_lo & 0x80808080u);
  reg_hi = mag_hi | (neg_hi & 0x80808080u);
}

// The operand word of lane (g, t) for one row from that row's 32 E2M1 codes of one k32 step
// (codes[k], k = 0..31, each 0..15): the repack's definition.
MXQ_FRAG_FN uint32_t operand_word(const uint8_t* codes32, int t) {
  uint32_t w = 0;
  for (int i = 0; i < 4; ++i) {
    w |= uint32_t(codes32[4 * t + i] & 15u) << (4 * i);
    w |= uint32_t(codes32[16 + 4 * t + i] & 15u) << (16 + 4 * i);
  }
  return w;
}

// Row and k (within the 64-row block and the k32 step) of byte `byte` of A register `reg` of
// warpgroup thread (warp, lane): the wgmma fragment above, for the layout test.
struct RowK {
  int row, k;
};
MXQ_FRAG_FN constexpr RowK fragment_element(int warp, int lane, int reg, int byte) {
  return {16 * warp + lane / 4 + 8 * (reg & 1), 4 * (lane % 4) + byte + 16 * (reg >> 1)};
}

}  // namespace mxq::cuda::hopper::fp8
