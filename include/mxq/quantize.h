// Whole-tensor MX quantize / dequantize on the CPU (multi-threaded, vectorised), the option
// parser, and checked packing. Host-only API; the per-element contract is numerics.h.
//
// Layout (the canonical in-memory form used everywhere in mxq): a [rows, K] row-major input
// becomes packed elements [rows, K * bits / 8] and E8M0 scale bytes [rows, K / 32].
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq {

struct QuantOptions {
  ElemType elem = ElemType::kE2M1;
  ScaleRule scale_rule = ScaleRule::kFloor;
  Rounding rounding = Rounding::kRne;
  Saturation saturation = Saturation::kSaturate;
  // rceil / round_up: a block whose amax / max_normal exceeds 2^127 gets 0xFE instead of 0xFF.
  bool saturate_scale = false;
  // K not a multiple of 32: zero-pad each row to the next multiple instead of rejecting.
  bool pad_k = false;
  // Worker threads; 0 uses every hardware thread.
  int threads = 0;
};

// Checks option combinations (e.g. nan_inf saturation exists only for FP8).
Status validate(const QuantOptions& opts);

// Parsers for the names in formats.h. Unknown names are errors listing the accepted ones.
// parse_elem_type accepts element names (e2m1, e4m3, ...) and format names (mxfp4, mxfp8, ...).
StatusOr<ElemType> parse_elem_type(std::string_view s);
StatusOr<ScaleRule> parse_scale_rule(std::string_view s);
StatusOr<Rounding> parse_rounding(std::string_view s);
StatusOr<Saturation> parse_saturation(std::string_view s);
StatusOr<DType> parse_dtype(std::string_view s);
std::string describe(const QuantOptions& opts);  // "mxfp4 scale=floor round=rne sat=saturate"

// K after optional padding: K itself, or the next multiple of 32 when opts.pad_k.
// Fails when K is not a multiple of 32 and padding was not requested.
StatusOr<int64_t> quantized_k(int64_t k, bool pad_k);

// Quantizes `rows` rows of `k` values of type `in_dtype` (row-major, contiguous) into
// `packed` [rows, packed_bytes(elem, kq)] and `scales` [rows, kq / 32], kq = quantized_k(k).
Status quantize(const void* in, DType in_dtype, int64_t rows, int64_t k, const QuantOptions& opts,
                uint8_t* packed, uint8_t* scales);

// Dequantizes [rows, k] (k a multiple of 32) back to `out_dtype`: x = element * 2^(scale-127),
// exact in FP32, then rounded to nearest even for BF16/FP16.
Status dequantize(const uint8_t* packed, const uint8_t* scales, ElemType elem, int64_t rows,
                  int64_t k, DType out_dtype, void* out, int threads = 0);

// Owning convenience form.
struct MXMatrix {
  ElemType elem = ElemType::kE2M1;
  int64_t rows = 0, k = 0;       // k is the quantized (possibly padded) K
  std::vector<uint8_t> packed;   // [rows, packed_bytes(elem, k)]
  std::vector<uint8_t> scales;   // [rows, k / 32]
};
StatusOr<MXMatrix> quantize(const std::vector<float>& in, int64_t rows, int64_t k,
                            const QuantOptions& opts);
StatusOr<std::vector<float>> dequantize(const MXMatrix& m, int threads = 0);

// Checked packing of `n` element codes (one per byte) to the packed layout and back.
// n must be a multiple of 2 (FP4) or 4 (FP6); codes must fit the element width.
Status pack_codes(ElemType t, const uint8_t* codes, int64_t n, uint8_t* out);
Status unpack_codes(ElemType t, const uint8_t* packed, int64_t n, uint8_t* codes);

}  // namespace mxq
