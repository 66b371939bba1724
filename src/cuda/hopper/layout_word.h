// The words of one lane of one chunk of the cuda-hopper layout (layout.h), shared by the CPU
// definition (layout.cc) and the GPU repack (repack.cu) so the two cannot drift apart.
#pragma once

#include <cstdint>

#include "cuda/gemm/frag_word.h"

namespace mxq::cuda::hopper {

// Byte offsets inside a chunk.
MXQ_FRAG_FN int64_t chunk_lane_offset(int lane_bytes, int stripe, int lane) {
  return (int64_t(stripe) * 32 + lane) * lane_bytes;
}
MXQ_FRAG_FN int64_t chunk_scale_offset(int lane_bytes, int stripe, int quad) {
  return int64_t(4) * 32 * lane_bytes + (int64_t(stripe) * frag::kScaleWordsPerTile + quad) * 4;
}

// E2M1 bit positions of the cuda-hopper layout. Each 16-bit half of a lane's 32-bit word holds
// four codes, one per A register of the decode (register `reg` takes the code of the low half
// as its low element and that of the high half as its high element). The decode needs, per
// half, the code's 3 magnitude bits at 6..8 (BF16) or 9..11 (FP16) and its sign at 15, the rest
// zero; one HMUL2 then fixes the exponent bias and applies the E8M0 scale. Where the bits sit
// in the word decides what that costs: an exhaustive search over the placements
// (scripts/e2m1_decode_layout_search.py --mixed, 2026-12-03) found no layout at one shift + one
// AND per register and this one as the cheapest mix for BF16 (11 shift / mask / merge
// instructions per word of 8 codes, against 15 for cuda-mma's nibbles; FP16 14):
//   register 0: magnitude at 6, sign at 15  (one AND)
//   register 1: magnitude at 3, sign at 12  (one shift brings both: shift + AND)
//   register 2: magnitude at 0, sign at 13  (shift + AND, shift + merge)
//   register 3: magnitude at 9, sign at 14  (shift + AND, shift + merge)
MXQ_FRAG_FN constexpr int e2m1_mag_bit(int reg) { return reg == 0 ? 6 : reg == 1 ? 3 : reg == 2 ? 0 : 9; }
MXQ_FRAG_FN constexpr int e2m1_sign_bit(int reg) { return reg == 0 ? 15 : reg == 1 ? 12 : reg == 2 ? 13 : 14; }

// cuda-mma's E2M1 word (frag::fp4_word: register i's code at nibble 3 - i of each half) in the
// hopper bit positions above.
MXQ_FRAG_FN uint32_t hopper_e2m1_word(uint32_t nibbles) {
  uint32_t w = 0;
  for (int h = 0; h < 2; ++h)
    for (int reg = 0; reg < 4; ++reg) {
      const uint32_t c = (nibbles >> (16 * h + 4 * (3 - reg))) & 15u;
      w |= (c & 7u) << (16 * h + e2m1_mag_bit(reg));
      w |= (c >> 3) << (16 * h + e2m1_sign_bit(reg));
    }
  return w;
}

// The decode of register kReg from such a word, before the HMUL2: in each half the magnitude
// at kTarget..kTarget + 2 (6: BF16, 9: FP16) and the sign at 15. Times 2^126 (BF16) / 2^14
// (FP16) it is the element's value (the code's exponent bits become the low exponent bits,
// E2M1's subnormal 0.5 a 16-bit subnormal). The kernel and the CPU layout test both call it.
template <int kShift>
MXQ_FRAG_FN uint32_t shift_left(uint32_t w) {  // a right shift for negative kShift
  if constexpr (kShift >= 0)
    return w << kShift;
  else
    return w >> -kShift;
}
template <int kTarget, int kReg>
MXQ_FRAG_FN uint32_t e2m1_operand_bits(uint32_t w) {
  constexpr int d = kTarget - e2m1_mag_bit(kReg);   // moves the magnitude into place
  constexpr int ds = 15 - e2m1_sign_bit(kReg);      // moves the sign into place
  constexpr uint32_t kMag = (7u << kTarget) * 0x10001u;
  constexpr uint32_t kSign = 0x80008000u;
  if constexpr (d == ds)  // the same shift brings the sign
    return shift_left<d>(w) & (kMag | kSign);
  else
    return (shift_left<d>(w) & kMag) | (shift_left<ds>(w) & kSign);
}

// Lane `lane` of 16-row tile tn, k64 step tk: its element words (4 for E2M1, 8 for E4M3, in
// the order the kernel loads them) and its quad's scale word. Tiles past the source's rows
// (the padding to 128 rows) are zeros with scale code 127.
MXQ_FRAG_FN void lane_words(const frag::Source& s, int64_t b, int64_t tn, int64_t tk, int lane,
                            uint32_t (&w)[8], uint32_t& scale) {
  if (16 * tn >= s.n) {
    for (int i = 0; i < 8; ++i) w[i] = 0;
    scale = 0x7F7F7F7Fu;
    return;
  }
  if (s.fp4) {
    for (int sub = 0; sub < 4; ++sub) w[sub] = hopper_e2m1_word(frag::fp4_word(s, b, tn, tk, lane, sub));
    for (int i = 4; i < 8; ++i) w[i] = 0;
  } else {
    for (int sub = 0; sub < 4; ++sub)
      for (int h = 0; h < 2; ++h) w[2 * sub + h] = frag::fp8_word(s, b, tn, tk, lane, sub, h);
  }
  scale = frag::scale_word(s, b, tn, tk, lane);
}

}  // namespace mxq::cuda::hopper
