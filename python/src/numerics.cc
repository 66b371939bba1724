// mxq._core: element-level numerics (the test interface, vectorised).
#include "core.h"

namespace mxq::py {
namespace {

using namespace nb::literals;

// codes (uint8, one per element) -> float32
void decode_codes(const std::string& type, const Array& codes, const MutArray& out) {
  check_cpu(codes, "codes");
  check_cpu(Array(out), "out");
  check_u8(codes, "codes");
  check_contiguous(codes, "codes");
  check_contiguous(out, "out");
  if (dense_dtype(out, "out", std::nullopt) != DType::kF32) fail("out must be float32");
  if (numel(codes) != numel(out))
    fail("out has " + std::to_string(numel(out)) + " elements, codes " + std::to_string(numel(codes)));
  const auto* c = static_cast<const uint8_t*>(codes.data());
  auto* o = static_cast<float*>(out.data());
  const int64_t n = numel(codes);
  if (type == "e8m0") {
    for (int64_t i = 0; i < n; ++i) o[i] = num::e8m0_to_f32(c[i]);
    return;
  }
  const ElemType t = elem_of(type);
  const unsigned limit = 1u << elem_info(t).bits;
  for (int64_t i = 0; i < n; ++i) {
    if (c[i] >= limit)
      fail("codes[" + std::to_string(i) + "] = " + std::to_string(c[i]) + " does not fit " +
           elem_type_name(t) + " (" + std::to_string(elem_info(t).bits) + " bits)");
    o[i] = num::decode_elem(t, c[i]);
  }
}

// float32 values -> element codes of x / 2^(scale-127)
void encode_values(const std::string& type, const Array& x, const MutArray& out, int scale,
                   const std::string& rounding, const std::string& saturation) {
  check_cpu(x, "x");
  check_cpu(Array(out), "out");
  check_contiguous(x, "x");
  check_contiguous(out, "out");
  if (dense_dtype(x, "x", std::nullopt) != DType::kF32) fail("x must be float32");
  check_u8(out, "out");
  if (numel(x) != numel(out))
    fail("out has " + std::to_string(numel(out)) + " elements, x " + std::to_string(numel(x)));
  if (scale < 0 || scale > 254) fail("scale = " + std::to_string(scale) + " is not an E8M0 code in 0..254");
  QuantOptions o;
  o.elem = elem_of(type);
  o.rounding = get(parse_rounding(rounding));
  o.saturation = get(parse_saturation(saturation));
  throw_if_error(validate(o));
  const auto* xv = static_cast<const float*>(x.data());
  auto* c = static_cast<uint8_t*>(out.data());
  for (int64_t i = 0; i < numel(x); ++i) {
    const uint32_t b = num::f32_bits(xv[i]);
    if ((b & num::kF32AbsMask) >= num::kF32Inf)
      fail("x[" + std::to_string(i) + "] is not finite; element encode takes finite values "
           "(a block with NaN/Inf gets scale 0xFF instead)");
    c[i] = num::encode_elem(o.elem, b, scale - 127, o.rounding, o.saturation);
  }
}

// float32 block amaxes -> E8M0 scale codes under a rule
void scale_codes(const std::string& type, const std::string& rule, const Array& amax,
                 const MutArray& out, bool saturate_scale) {
  check_cpu(amax, "amax");
  check_cpu(Array(out), "out");
  check_contiguous(amax, "amax");
  check_contiguous(out, "out");
  if (dense_dtype(amax, "amax", std::nullopt) != DType::kF32) fail("amax must be float32");
  check_u8(out, "out");
  if (numel(amax) != numel(out)) fail("out and amax differ in size");
  const ElemType t = elem_of(type);
  const ScaleRule r = get(parse_scale_rule(rule));
  const auto* a = static_cast<const float*>(amax.data());
  auto* c = static_cast<uint8_t*>(out.data());
  for (int64_t i = 0; i < numel(amax); ++i)
    c[i] = num::scale_code(t, r, num::f32_bits(a[i]) & num::kF32AbsMask, saturate_scale);
}

void pack_or_unpack(const std::string& type, const Array& in, const MutArray& out, bool pack) {
  check_cpu(in, "input");
  check_cpu(Array(out), "out");
  check_u8(in, "input");
  check_u8(out, "out");
  check_contiguous(in, "input");
  check_contiguous(out, "out");
  const ElemType t = elem_of(type);
  const int64_t n = pack ? numel(in) : numel(out);  // element count
  const int64_t bytes = packed_bytes(t, n);
  if ((pack ? numel(out) : numel(in)) != bytes)
    fail(std::string(pack ? "out" : "packed") + " has " +
         std::to_string(pack ? numel(out) : numel(in)) + " bytes, expected " +
         std::to_string(bytes) + " for " + std::to_string(n) + " " + elem_type_name(t) + " elements");
  const auto* src = static_cast<const uint8_t*>(in.data());
  auto* dst = static_cast<uint8_t*>(out.data());
  throw_if_error(pack ? pack_codes(t, src, n, dst) : unpack_codes(t, src, n, dst));
}

}  // namespace

void bind_numerics(nb::module_& m) {
  // element numerics
  m.def("decode_codes", &decode_codes, "type"_a, "codes"_a, "out"_a);
  m.def("encode_values", &encode_values, "type"_a, "x"_a, "out"_a, "scale"_a = 127,
        "rounding"_a = "rne", "saturation"_a = "saturate");
  m.def("scale_codes", &scale_codes, "type"_a, "rule"_a, "amax"_a, "out"_a, "saturate_scale"_a = false);
  m.def("pack_codes", [](const std::string& t, const Array& codes, const MutArray& out) {
    pack_or_unpack(t, codes, out, true);
  }, "type"_a, "codes"_a, "out"_a);
  m.def("unpack_codes", [](const std::string& t, const Array& packed, const MutArray& out) {
    pack_or_unpack(t, packed, out, false);
  }, "type"_a, "packed"_a, "out"_a);
  m.def("elem_info", [](const std::string& t) {
    const ElemType e = elem_of(t);
    const ElemInfo i = elem_info(e);
    nb::dict d;
    d["elem"] = std::string(elem_type_name(e));
    d["format"] = std::string(mx_format_name(e));
    d["bits"] = i.bits;
    d["max_normal"] = i.max_normal;
    d["is_int"] = i.is_int;
    d["pack_group"] = pack::pack_group(e);
    return d;
  }, "type"_a);
  m.def("quantized_k", [](int64_t k, bool pad_k) { return get(quantized_k(k, pad_k)); }, "k"_a, "pad_k"_a = false);
}

}  // namespace mxq::py
