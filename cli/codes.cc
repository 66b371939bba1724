// `mxq codes`: the numerics as plain text, so other implementations (tests/python) can be
// compared against mxq code by code.
//
//   mxq codes decode TYPE            every code of TYPE (or e8m0): "<code> <f32 bits hex>"
//   mxq codes encode TYPE [opts]     stdin: one f32 bit pattern (hex) per line;
//                                    stdout: the element code of x / 2^(scale-127) per line
#include <cstdio>
#include <iostream>
#include <string>

#include "commands.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"

namespace mxq::cli {
namespace {

template <typename T>
T value_or_throw(StatusOr<T> v) {
  return std::move(v).value();  // throws mxq::Error with the parser's message
}

void print_bits(unsigned code, float v) {
  std::printf("%u %08x\n", code, num::f32_bits(v));
}

}  // namespace

void add_codes(CLI::App& app) {
  auto* codes = app.add_subcommand("codes", "Decode tables and element encodes (test interface)");
  codes->require_subcommand(1);

  static std::string dec_type;
  auto* dec = codes->add_subcommand("decode", "Print the FP32 value of every code of a type");
  dec->add_option("type", dec_type, "e2m1 | e2m3 | e3m2 | e4m3 | e5m2 | int8 | e8m0")->required();
  dec->callback([] {
    if (dec_type == "e8m0") {
      for (unsigned c = 0; c < 256; ++c) print_bits(c, num::e8m0_to_f32(uint8_t(c)));
      return;
    }
    const auto parsed = parse_elem_type(dec_type);
    if (!parsed.ok())  // decode also takes the scale type; say so in the error
      throw Error(invalid_argument(parsed.status().message() + " or e8m0"));
    const ElemType t = parsed.value();
    for (unsigned c = 0; c < (1u << elem_info(t).bits); ++c)
      print_bits(c, num::decode_elem(t, uint8_t(c)));
  });

  static std::string enc_type, enc_round = "rne", enc_sat = "saturate";
  static int enc_scale = 127;
  auto* enc = codes->add_subcommand("encode", "Encode FP32 bit patterns read from stdin");
  enc->add_option("type", enc_type, "element type")->required();
  enc->add_option("--rounding", enc_round, "rne | half_away | toward_zero_ties");
  enc->add_option("--saturation", enc_sat, "saturate | nan_inf");
  enc->add_option("--scale", enc_scale, "E8M0 scale code of the block (0..254)")
      ->check(CLI::Range(0, 254));
  enc->callback([] {
    QuantOptions o;
    o.elem = value_or_throw(parse_elem_type(enc_type));
    o.rounding = value_or_throw(parse_rounding(enc_round));
    o.saturation = value_or_throw(parse_saturation(enc_sat));
    throw_if_error(validate(o));
    std::string line;
    int lineno = 0;
    while (std::getline(std::cin, line)) {
      ++lineno;
      if (line.empty()) continue;
      size_t used = 0;
      unsigned long bits = 0;
      try {
        bits = std::stoul(line, &used, 16);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != line.size() || bits > 0xFFFFFFFFul)
        throw Error(invalid_argument("stdin line " + std::to_string(lineno) + ": '" + line +
                                     "' is not an FP32 bit pattern in hex"));
      const uint32_t x = uint32_t(bits);
      if ((x & num::kF32AbsMask) >= num::kF32Inf)
        throw Error(invalid_argument("stdin line " + std::to_string(lineno) +
                                     ": non-finite input; element encode takes finite values "
                                     "(a block with NaN/Inf gets scale 0xFF instead)"));
      std::printf("%u\n", unsigned(num::encode_elem(o.elem, x, enc_scale - 127, o.rounding,
                                                    o.saturation)));
    }
  });
}

}  // namespace mxq::cli
