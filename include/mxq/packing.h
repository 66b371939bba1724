// Sub-byte element packing, shared by host and device code.
//
// FP4: element 2i in the LOW nibble of byte i, element 2i+1 in the high nibble (every
//      producer agrees: OCP, compressed-tensors, gpt-oss, Quark, ModelOpt).
// FP6: 4 elements in 3 bytes as a little-endian bit stream: element j of a group occupies
//      bits [6j, 6j+6) of the 24-bit word b0 | b1<<8 | b2<<16. This is the order of AMD Quark's
//      packed MXFP6 tensors and of the OCP/PTX packed layouts (docs/numerics.md).
// 8-bit types: one element per byte.
#pragma once

#include <cstdint>

#include "mxq/formats.h"

namespace mxq::pack {

MXQ_HD constexpr uint8_t fp4_pair(uint8_t even, uint8_t odd) {
  return uint8_t((even & 0xFu) | ((odd & 0xFu) << 4));
}
MXQ_HD constexpr uint8_t fp4_lo(uint8_t byte) { return byte & 0xFu; }
MXQ_HD constexpr uint8_t fp4_hi(uint8_t byte) { return byte >> 4; }

MXQ_HD constexpr void fp6_pack4(const uint8_t* c, uint8_t* out) {
  const uint32_t w = (c[0] & 0x3Fu) | (uint32_t(c[1] & 0x3Fu) << 6) |
                     (uint32_t(c[2] & 0x3Fu) << 12) | (uint32_t(c[3] & 0x3Fu) << 18);
  out[0] = uint8_t(w);
  out[1] = uint8_t(w >> 8);
  out[2] = uint8_t(w >> 16);
}
MXQ_HD constexpr void fp6_unpack4(const uint8_t* in, uint8_t* c) {
  const uint32_t w = in[0] | (uint32_t(in[1]) << 8) | (uint32_t(in[2]) << 16);
  for (int j = 0; j < 4; ++j) c[j] = uint8_t((w >> (6 * j)) & 0x3Fu);
}

// Packs n codes (n a multiple of the group: 2 for FP4, 4 for FP6) of type t into `out`.
MXQ_HD constexpr void pack_codes(ElemType t, const uint8_t* codes, int64_t n, uint8_t* out) {
  const int bits = elem_info(t).bits;
  if (bits == 4) {
    for (int64_t i = 0; i < n; i += 2) out[i / 2] = fp4_pair(codes[i], codes[i + 1]);
  } else if (bits == 6) {
    for (int64_t i = 0; i < n; i += 4) fp6_pack4(codes + i, out + i / 4 * 3);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = codes[i];
  }
}

// Inverse of pack_codes.
MXQ_HD constexpr void unpack_codes(ElemType t, const uint8_t* packed, int64_t n, uint8_t* codes) {
  const int bits = elem_info(t).bits;
  if (bits == 4) {
    for (int64_t i = 0; i < n; i += 2) {
      codes[i] = fp4_lo(packed[i / 2]);
      codes[i + 1] = fp4_hi(packed[i / 2]);
    }
  } else if (bits == 6) {
    for (int64_t i = 0; i < n; i += 4) fp6_unpack4(packed + i / 4 * 3, codes + i);
  } else {
    for (int64_t i = 0; i < n; ++i) codes[i] = packed[i];
  }
}

// Elements per packing group: the element counts pack_codes accepts are multiples of this.
MXQ_HD constexpr int pack_group(ElemType t) {
  const int bits = elem_info(t).bits;
  return bits == 4 ? 2 : (bits == 6 ? 4 : 1);
}

}  // namespace mxq::pack
