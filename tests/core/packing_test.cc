// Sub-byte packing: the header-level pack:: helpers and the checked mxq::pack_codes /
// unpack_codes. Expected bytes come from the layout rules written out bit by bit here:
//  - FP4: element 2i is the LOW nibble of byte i, element 2i+1 the high nibble;
//  - FP6: element j of a 4-element group occupies bits [6j, 6j+6) of the little-endian 24-bit
//    word b0 | b1 << 8 | b2 << 16 (so bit b of element j is bit (6j+b) % 8 of byte (6j+b) / 8);
//  - 8-bit types: one element per byte, unchanged.
#include "mxq/packing.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mxq/formats.h"
#include "mxq/quantize.h"
#include "mxq/status.h"

namespace mxq {
namespace {

// Reference packer: sets bits one at a time from the layout rule, for any width.
std::vector<uint8_t> ref_pack(int bits, const std::vector<uint8_t>& codes) {
  std::vector<uint8_t> out(codes.size() * size_t(bits) / 8, 0);
  for (size_t i = 0; i < codes.size(); ++i)
    for (int b = 0; b < bits; ++b)
      if ((codes[i] >> b) & 1u) {
        const size_t pos = i * size_t(bits) + size_t(b);  // little-endian bit stream
        out[pos / 8] = uint8_t(out[pos / 8] | (1u << (pos % 8)));
      }
  return out;
}

std::vector<uint8_t> random_codes(std::mt19937& rng, size_t n, int bits) {
  std::vector<uint8_t> c(n);
  for (auto& v : c) v = uint8_t(rng() & ((1u << bits) - 1u));
  return c;
}

bool contains(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}

// ---- FP4 --------------------------------------------------------------------------------

TEST(Packing, Fp4NibbleOrderAllPairs) {
  for (unsigned a = 0; a < 16; ++a)
    for (unsigned b = 0; b < 16; ++b) {
      const uint8_t byte = pack::fp4_pair(uint8_t(a), uint8_t(b));
      EXPECT_EQ(byte, uint8_t(a | (b << 4))) << a << "," << b;
      EXPECT_EQ(pack::fp4_lo(byte), a);
      EXPECT_EQ(pack::fp4_hi(byte), b);
      // Through the checked API too: element 0 is the low nibble.
      const uint8_t codes[2] = {uint8_t(a), uint8_t(b)};
      uint8_t out = 0xAA;
      ASSERT_TRUE(pack_codes(ElemType::kE2M1, codes, 2, &out).ok());
      EXPECT_EQ(out, uint8_t(a | (b << 4)));
      uint8_t back[2] = {0xFF, 0xFF};
      ASSERT_TRUE(unpack_codes(ElemType::kE2M1, &out, 2, back).ok());
      EXPECT_EQ(back[0], a);
      EXPECT_EQ(back[1], b);
    }
}

TEST(Packing, Fp4DocumentedExample) {
  // E2M1 codes: 1.0 = 0x2, -6 = 0xF, 0.5 = 0x1, -0 = 0x8.
  const uint8_t codes[4] = {0x2, 0xF, 0x1, 0x8};
  uint8_t out[2] = {};
  ASSERT_TRUE(pack_codes(ElemType::kE2M1, codes, 4, out).ok());
  EXPECT_EQ(out[0], 0xF2);
  EXPECT_EQ(out[1], 0x81);
}

TEST(Packing, Fp4EveryCodeAtEveryPositionRoundTrips) {
  std::mt19937 rng(7);
  for (int pos = 0; pos < 64; ++pos)
    for (unsigned v = 0; v < 16; ++v) {
      std::vector<uint8_t> codes = random_codes(rng, 64, 4);
      codes[size_t(pos)] = uint8_t(v);
      std::vector<uint8_t> packed(32, 0);
      ASSERT_TRUE(pack_codes(ElemType::kE2M1, codes.data(), 64, packed.data()).ok());
      EXPECT_EQ(packed, ref_pack(4, codes)) << "pos " << pos << " code " << v;
      std::vector<uint8_t> back(64, 0xEE);
      ASSERT_TRUE(unpack_codes(ElemType::kE2M1, packed.data(), 64, back.data()).ok());
      EXPECT_EQ(back, codes) << "pos " << pos << " code " << v;
    }
}

// Every byte value unpacks to two nibbles that pack back to the same byte.
TEST(Packing, Fp4EveryByteRoundTrips) {
  std::vector<uint8_t> bytes(256), codes(512), again(256);
  for (int i = 0; i < 256; ++i) bytes[size_t(i)] = uint8_t(i);
  ASSERT_TRUE(unpack_codes(ElemType::kE2M1, bytes.data(), 512, codes.data()).ok());
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(codes[2 * size_t(i)], i & 0xF);
    EXPECT_EQ(codes[2 * size_t(i) + 1], i >> 4);
  }
  ASSERT_TRUE(pack_codes(ElemType::kE2M1, codes.data(), 512, again.data()).ok());
  EXPECT_EQ(again, bytes);
}

// ---- FP6 --------------------------------------------------------------------------------

TEST(Packing, Fp6SingleBitPositions) {
  // One set bit b in element j must land exactly on stream bit 6j + b.
  for (int j = 0; j < 4; ++j)
    for (int b = 0; b < 6; ++b) {
      uint8_t codes[4] = {0, 0, 0, 0};
      codes[j] = uint8_t(1u << b);
      uint8_t out[3] = {0xFF, 0xFF, 0xFF};
      pack::fp6_pack4(codes, out);
      const int pos = 6 * j + b;
      for (int k = 0; k < 3; ++k)
        EXPECT_EQ(out[k], k == pos / 8 ? uint8_t(1u << (pos % 8)) : 0)
            << "element " << j << " bit " << b << " byte " << k;
    }
}

TEST(Packing, Fp6DocumentedExample) {
  // Codes 0x01, 0x02, 0x04, 0x3F: word = 1 | 2<<6 | 4<<12 | 63<<18 = 0xFC4081.
  const uint8_t codes[4] = {0x01, 0x02, 0x04, 0x3F};
  uint8_t out[3] = {};
  ASSERT_TRUE(pack_codes(ElemType::kE2M3, codes, 4, out).ok());
  EXPECT_EQ(out[0], 0x81);
  EXPECT_EQ(out[1], 0x40);
  EXPECT_EQ(out[2], 0xFC);
}

TEST(Packing, Fp6EveryCodeAtEveryPositionRoundTrips) {
  std::mt19937 rng(11);
  for (ElemType t : {ElemType::kE2M3, ElemType::kE3M2})
    for (int pos = 0; pos < 32; ++pos)
      for (unsigned v = 0; v < 64; ++v) {
        std::vector<uint8_t> codes = random_codes(rng, 32, 6);
        codes[size_t(pos)] = uint8_t(v);
        std::vector<uint8_t> packed(24, 0);
        ASSERT_TRUE(pack_codes(t, codes.data(), 32, packed.data()).ok());
        EXPECT_EQ(packed, ref_pack(6, codes)) << elem_type_name(t) << " pos " << pos;
        std::vector<uint8_t> back(32, 0xEE);
        ASSERT_TRUE(unpack_codes(t, packed.data(), 32, back.data()).ok());
        EXPECT_EQ(back, codes) << elem_type_name(t) << " pos " << pos << " code " << v;
      }
}

// All 2^24 three-byte groups: unpack then pack is the identity, and unpack agrees with the
// bit-stream rule. Together with the code-side round trips this makes packing a bijection.
TEST(Packing, Fp6EveryThreeByteGroupRoundTrips) {
  int bad = 0;
  for (uint32_t w = 0; w < (1u << 24); ++w) {
    const uint8_t in[3] = {uint8_t(w), uint8_t(w >> 8), uint8_t(w >> 16)};
    uint8_t c[4], out[3];
    pack::fp6_unpack4(in, c);
    pack::fp6_pack4(c, out);
    bool ok = out[0] == in[0] && out[1] == in[1] && out[2] == in[2];
    for (int j = 0; j < 4; ++j) ok = ok && c[j] == ((w >> (6 * j)) & 0x3Fu);
    if (!ok && ++bad <= 5) ADD_FAILURE() << "word 0x" << std::hex << w;
  }
  EXPECT_EQ(bad, 0);
}

// The same layout written per byte, as AMD Quark's Pack_fp6 documents it (amd/Quark main,
// quark/torch/utils/pack.py: "the layout expected by mfma_scale_f32_16x16x128_f8f6f4"):
//   byte 0 = v0 (6 bits) | low 2 bits of v1 in bits 6..7
//   byte 1 = high 4 bits of v1 | low 4 bits of v2 in bits 4..7
//   byte 2 = high 2 bits of v2 | v3 in bits 2..7
// Checked for every one of the 64^4 code groups. (The amd-quark 0.9 wheel packed FP6
// differently: a byte of four 2-bit high parts followed by two bytes of 4-bit low parts.)
TEST(Packing, Fp6MatchesQuarkByteDiagramForEveryGroup) {
  int bad = 0;
  for (uint32_t w = 0; w < (1u << 24); ++w) {
    const uint8_t c[4] = {uint8_t(w & 0x3F), uint8_t((w >> 6) & 0x3F), uint8_t((w >> 12) & 0x3F),
                          uint8_t(w >> 18)};
    const uint8_t want[3] = {uint8_t(c[0] | (c[1] & 0x3) << 6),
                             uint8_t(c[1] >> 2 | (c[2] & 0xF) << 4),
                             uint8_t(c[2] >> 4 | c[3] << 2)};
    uint8_t out[3];
    pack::fp6_pack4(c, out);
    if ((out[0] != want[0] || out[1] != want[1] || out[2] != want[2]) && ++bad <= 5)
      ADD_FAILURE() << "codes " << int(c[0]) << "," << int(c[1]) << "," << int(c[2]) << ","
                    << int(c[3]);
  }
  EXPECT_EQ(bad, 0);
}

// ---- 8-bit --------------------------------------------------------------------------------

TEST(Packing, EightBitIsIdentity) {
  std::vector<uint8_t> codes(256);
  for (int i = 0; i < 256; ++i) codes[size_t(i)] = uint8_t(255 - i);
  for (ElemType t : {ElemType::kE4M3, ElemType::kE5M2, ElemType::kInt8}) {
    EXPECT_EQ(pack::pack_group(t), 1) << elem_type_name(t);
    EXPECT_EQ(packed_bytes(t, 256), 256) << elem_type_name(t);
    std::vector<uint8_t> packed(256, 0), back(256, 0);
    ASSERT_TRUE(pack_codes(t, codes.data(), 256, packed.data()).ok());
    EXPECT_EQ(packed, codes) << elem_type_name(t);
    ASSERT_TRUE(unpack_codes(t, packed.data(), 256, back.data()).ok());
    EXPECT_EQ(back, codes) << elem_type_name(t);
    // Any count is a whole number of 8-bit groups.
    EXPECT_TRUE(pack_codes(t, codes.data(), 3, packed.data()).ok()) << elem_type_name(t);
  }
}

TEST(Packing, GroupsAndPackedBytes) {
  EXPECT_EQ(pack::pack_group(ElemType::kE2M1), 2);
  EXPECT_EQ(pack::pack_group(ElemType::kE2M3), 4);
  EXPECT_EQ(pack::pack_group(ElemType::kE3M2), 4);
  EXPECT_EQ(packed_bytes(ElemType::kE2M1, 32), 16);
  EXPECT_EQ(packed_bytes(ElemType::kE2M3, 32), 24);
  EXPECT_EQ(packed_bytes(ElemType::kE3M2, 4096), 3072);
}

// ---- checked API errors ---------------------------------------------------------------------

TEST(PackingErrors, Fp4OddCount) {
  std::vector<uint8_t> codes(64, 1), out(64, 0);
  const Status s = pack_codes(ElemType::kE2M1, codes.data(), 33, out.data());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "33")) << s.message();
  EXPECT_TRUE(contains(s.message(), "2")) << s.message();
  const Status u = unpack_codes(ElemType::kE2M1, out.data(), 33, codes.data());
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(u.message(), "33")) << u.message();
}

TEST(PackingErrors, Fp6CountNotMultipleOfFour) {
  std::vector<uint8_t> codes(64, 1), out(64, 0);
  for (ElemType t : {ElemType::kE2M3, ElemType::kE3M2})
    for (int64_t n : {1, 2, 3, 30, 37}) {
      const Status s = pack_codes(t, codes.data(), n, out.data());
      ASSERT_FALSE(s.ok()) << elem_type_name(t) << " n=" << n;
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
      EXPECT_TRUE(contains(s.message(), std::to_string(n))) << s.message();
      EXPECT_TRUE(contains(s.message(), "4")) << s.message();
      const Status u = unpack_codes(t, out.data(), n, codes.data());
      ASSERT_FALSE(u.ok()) << elem_type_name(t) << " n=" << n;
      EXPECT_TRUE(contains(u.message(), std::to_string(n))) << u.message();
    }
}

TEST(PackingErrors, NegativeCount) {
  std::vector<uint8_t> codes(8, 0), out(8, 0);
  for (ElemType t : kAllElemTypes) {
    EXPECT_FALSE(pack_codes(t, codes.data(), -4, out.data()).ok()) << elem_type_name(t);
    EXPECT_FALSE(unpack_codes(t, out.data(), -4, codes.data()).ok()) << elem_type_name(t);
  }
}

TEST(PackingErrors, CodeTooWideNamesIndexAndCode) {
  struct Case {
    ElemType t;
    uint8_t bad_code;
  };
  for (const Case& c : {Case{ElemType::kE2M1, 0x11}, Case{ElemType::kE2M1, 0xF0},
                        Case{ElemType::kE2M3, 0x40}, Case{ElemType::kE3M2, 0xC1}}) {
    std::vector<uint8_t> codes(32, 0), out(32, 0x5A);
    codes[13] = c.bad_code;
    codes[20] = c.bad_code;  // the first offending index is the one reported
    const Status s = pack_codes(c.t, codes.data(), 32, out.data());
    ASSERT_FALSE(s.ok()) << elem_type_name(c.t) << " code " << int(c.bad_code);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(s.message(), "13")) << s.message();
    EXPECT_FALSE(contains(s.message(), "20")) << s.message();
    EXPECT_TRUE(contains(s.message(), std::to_string(int(c.bad_code)))) << s.message();
    // The largest code that fits is accepted.
    codes[13] = codes[20] = uint8_t((1u << elem_info(c.t).bits) - 1u);
    EXPECT_TRUE(pack_codes(c.t, codes.data(), 32, out.data()).ok()) << elem_type_name(c.t);
  }
}

TEST(PackingErrors, ZeroCountIsFine) {
  uint8_t dummy = 0;
  for (ElemType t : kAllElemTypes) {
    EXPECT_TRUE(pack_codes(t, &dummy, 0, &dummy).ok()) << elem_type_name(t);
    EXPECT_TRUE(unpack_codes(t, &dummy, 0, &dummy).ok()) << elem_type_name(t);
  }
}

}  // namespace
}  // namespace mxq
