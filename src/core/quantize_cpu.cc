// Whole-tensor MX quantize / dequantize on the CPU.
//
// Speed comes from three things: (1) the per-element numerics (numerics.h) are branch-free
// integer code, force-inlined into (2) per-(element type, rounding, input dtype) block loops
// that the compiler vectorises, compiled twice through target_clones (AVX2 and baseline x86-64,
// picked at load time), and (3) blocks are split across threads in contiguous chunks.
// Results are identical to numerics.h's scalar quantize_block by construction; tests check it.
#include <algorithm>
#include <cstring>
#include <string>

#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "mxq/quantize.h"
#include "parallel.h"

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(MXQ_NO_TARGET_CLONES)
#define MXQ_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MXQ_TARGET_CLONES
#endif

namespace mxq {
namespace {

using num::f32_bits;

// Blocks per thread below which splitting is not worth a thread start (~32K elements).
constexpr int64_t kMinBlocksPerThread = 1024;

template <DType D>
MXQ_HD_INLINE uint32_t load_bits(const void* in, int64_t i) {
  if constexpr (D == DType::kF32) {
    uint32_t u;
    std::memcpy(&u, static_cast<const char*>(in) + i * 4, 4);
    return u;
  } else {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(in) + i * 2, 2);
    if constexpr (D == DType::kBF16) return uint32_t(h) << 16;
    return f32_bits(num::f16_to_f32(h));
  }
}

struct QuantJob {
  const void* in;
  int64_t k;   // input row length
  int64_t kb;  // blocks per (padded) row
  num::BlockRules rules;
  uint8_t* packed;
  uint8_t* scales;
};

// Quantizes blocks [b0, b1) of the flattened [rows, kb] block grid.
template <ElemType T, Rounding R, DType D>
MXQ_HD_INLINE void quantize_blocks(const QuantJob& job, int64_t b0, int64_t b1) {
  constexpr ElemInfo ei = elem_info(T);
  constexpr int kBlockBytes = kBlockSize * ei.bits / 8;
  const Saturation sat = job.rules.saturation;
  alignas(64) uint32_t x[kBlockSize];
  alignas(64) uint8_t codes[kBlockSize];
  int64_t row = b0 / job.kb, j = b0 % job.kb;
  const int64_t row_bytes = job.kb * kBlockBytes;
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t col0 = j * kBlockSize;
    const int64_t base = row * job.k + col0;
    if (col0 + kBlockSize <= job.k) {
      for (int i = 0; i < kBlockSize; ++i) x[i] = load_bits<D>(job.in, base + i);
    } else {  // zero-padded tail block (pad_k)
      const int n = int(job.k - col0);
      for (int i = 0; i < kBlockSize; ++i) x[i] = i < n ? load_bits<D>(job.in, base + i) : 0u;
    }
    uint32_t amax = 0;
    for (int i = 0; i < kBlockSize; ++i) amax = std::max(amax, x[i] & num::kF32AbsMask);
    const uint8_t s = num::scale_code(T, job.rules.scale_rule, amax, job.rules.saturate_scale);
    if (s == num::kScaleNaN) {
      for (int i = 0; i < kBlockSize; ++i) codes[i] = ei.nan_fill;
    } else {
      const int c = int(s) - 127;
      for (int i = 0; i < kBlockSize; ++i) codes[i] = num::encode_elem(T, x[i], c, R, sat);
    }
    pack::pack_codes(T, codes, kBlockSize, job.packed + row * row_bytes + j * kBlockBytes);
    job.scales[b] = s;
    if (++j == job.kb) {
      j = 0;
      ++row;
    }
  }
}

template <ElemType T, Rounding R>
MXQ_HD_INLINE void quantize_blocks_dtype(DType d, const QuantJob& job, int64_t b0, int64_t b1) {
  switch (d) {
    case DType::kF32: return quantize_blocks<T, R, DType::kF32>(job, b0, b1);
    case DType::kBF16: return quantize_blocks<T, R, DType::kBF16>(job, b0, b1);
    case DType::kF16: return quantize_blocks<T, R, DType::kF16>(job, b0, b1);
  }
}

template <ElemType T>
MXQ_HD_INLINE void quantize_blocks_rounding(DType d, const QuantJob& job, int64_t b0, int64_t b1) {
  switch (job.rules.rounding) {
    case Rounding::kRne: return quantize_blocks_dtype<T, Rounding::kRne>(d, job, b0, b1);
    case Rounding::kHalfAway: return quantize_blocks_dtype<T, Rounding::kHalfAway>(d, job, b0, b1);
    case Rounding::kTowardZeroTies:
      return quantize_blocks_dtype<T, Rounding::kTowardZeroTies>(d, job, b0, b1);
  }
}

// One entry point per element type keeps each cloned function (and its compile time) small.
#define MXQ_DEFINE_QUANT_ENTRY(NAME, T)                                                    \
  MXQ_TARGET_CLONES void NAME(DType d, const QuantJob& job, int64_t b0, int64_t b1) { \
    quantize_blocks_rounding<T>(d, job, b0, b1);                                         \
  }
MXQ_DEFINE_QUANT_ENTRY(quantize_e2m1, ElemType::kE2M1)
MXQ_DEFINE_QUANT_ENTRY(quantize_e2m3, ElemType::kE2M3)
MXQ_DEFINE_QUANT_ENTRY(quantize_e3m2, ElemType::kE3M2)
MXQ_DEFINE_QUANT_ENTRY(quantize_e4m3, ElemType::kE4M3)
MXQ_DEFINE_QUANT_ENTRY(quantize_e5m2, ElemType::kE5M2)
MXQ_DEFINE_QUANT_ENTRY(quantize_int8, ElemType::kInt8)
#undef MXQ_DEFINE_QUANT_ENTRY

using QuantEntry = void (*)(DType, const QuantJob&, int64_t, int64_t);
QuantEntry quant_entry(ElemType t) {
  switch (t) {
    case ElemType::kE2M1: return quantize_e2m1;
    case ElemType::kE2M3: return quantize_e2m3;
    case ElemType::kE3M2: return quantize_e3m2;
    case ElemType::kE4M3: return quantize_e4m3;
    case ElemType::kE5M2: return quantize_e5m2;
    case ElemType::kInt8: return quantize_int8;
  }
  return nullptr;
}

// ---- dequantize ---------------------------------------------------------------------------

struct DecodeTable {
  float v[256];
};
constexpr DecodeTable make_table(ElemType t) {
  DecodeTable d{};
  const int n = 1 << elem_info(t).bits;
  for (int c = 0; c < 256; ++c) d.v[c] = c < n ? num::decode_elem(t, uint8_t(c)) : 0.0f;
  return d;
}
constexpr DecodeTable kTables[] = {make_table(ElemType::kE2M1), make_table(ElemType::kE2M3),
                                   make_table(ElemType::kE3M2), make_table(ElemType::kE4M3),
                                   make_table(ElemType::kE5M2), make_table(ElemType::kInt8)};

// FP4: one packed byte -> two decoded values, so the decode is one load per byte instead of
// an unpack and two lookups (dequantize was 2-4x slower for FP4 than FP8 without it).
struct Fp4PairTable {
  float v[256][2];
};
constexpr Fp4PairTable make_fp4_pairs() {
  Fp4PairTable t{};
  for (int b = 0; b < 256; ++b) {
    t.v[b][0] = num::decode_elem(ElemType::kE2M1, uint8_t(b & 0xF));
    t.v[b][1] = num::decode_elem(ElemType::kE2M1, uint8_t(b >> 4));
  }
  return t;
}
constexpr Fp4PairTable kFp4Pairs = make_fp4_pairs();

struct DequantJob {
  const uint8_t* packed;
  const uint8_t* scales;
  ElemType elem;
  int64_t k;
  DType out_dtype;
  void* out;
};

MXQ_TARGET_CLONES void dequantize_blocks(const DequantJob& job, int64_t b0, int64_t b1) {
  const ElemInfo ei = elem_info(job.elem);
  const int block_bytes = kBlockSize * ei.bits / 8;
  const float* table = kTables[int(job.elem)].v;
  alignas(64) uint8_t codes[kBlockSize];
  alignas(64) float v[kBlockSize];
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* src = job.packed + b * block_bytes;
    if (job.scales[b] == num::kScaleNaN) {  // canonical NaN, as num::dequantize_elem
      for (int i = 0; i < kBlockSize; ++i) v[i] = num::f32_from_bits(num::kF32QuietNaN);
    } else if (ei.bits == 4) {
      const float s = num::e8m0_to_f32(job.scales[b]);
      for (int i = 0; i < kBlockSize / 2; ++i) {
        v[2 * i] = kFp4Pairs.v[src[i]][0] * s;
        v[2 * i + 1] = kFp4Pairs.v[src[i]][1] * s;
      }
    } else {
      pack::unpack_codes(job.elem, src, kBlockSize, codes);
      const float s = num::e8m0_to_f32(job.scales[b]);
      for (int i = 0; i < kBlockSize; ++i) v[i] = table[codes[i]] * s;
    }
    const int64_t o = b * kBlockSize;  // k is a multiple of 32: blocks tile the output
    switch (job.out_dtype) {
      case DType::kF32: std::memcpy(static_cast<float*>(job.out) + o, v, sizeof v); break;
      case DType::kBF16: {
        auto* out = static_cast<uint16_t*>(job.out) + o;
        for (int i = 0; i < kBlockSize; ++i) out[i] = num::f32_to_bf16(v[i]);
        break;
      }
      case DType::kF16: {
        auto* out = static_cast<uint16_t*>(job.out) + o;
        for (int i = 0; i < kBlockSize; ++i) out[i] = num::f32_to_f16(v[i]);
        break;
      }
    }
  }
}

Status check_shape(int64_t rows, int64_t k) {
  if (rows < 0) return invalid_argument("rows = " + std::to_string(rows) + " must be >= 0");
  if (k <= 0) return invalid_argument("K = " + std::to_string(k) + " must be positive");
  return Status::Ok();
}

}  // namespace

Status quantize(const void* in, DType in_dtype, int64_t rows, int64_t k, const QuantOptions& opts,
                uint8_t* packed, uint8_t* scales) {
  MXQ_RETURN_IF_ERROR(validate(opts));
  MXQ_RETURN_IF_ERROR(check_shape(rows, k));
  if (int(in_dtype) > int(DType::kF16)) return invalid_argument("unknown input dtype");
  const StatusOr<int64_t> kq = quantized_k(k, opts.pad_k);
  if (!kq.ok()) return kq.status();
  if (rows == 0) return Status::Ok();
  if (in == nullptr || packed == nullptr || scales == nullptr)
    return invalid_argument("quantize: null input or output pointer");
  const QuantJob job{in,
                     k,
                     kq.value() / kBlockSize,
                     {opts.scale_rule, opts.rounding, opts.saturation, opts.saturate_scale},
                     packed,
                     scales};
  const QuantEntry entry = quant_entry(opts.elem);
  detail::parallel_for(rows * job.kb, opts.threads, kMinBlocksPerThread,
                       [&](int64_t b0, int64_t b1) { entry(in_dtype, job, b0, b1); });
  return Status::Ok();
}

Status dequantize(const uint8_t* packed, const uint8_t* scales, ElemType elem, int64_t rows,
                  int64_t k, DType out_dtype, void* out, int threads) {
  MXQ_RETURN_IF_ERROR(check_shape(rows, k));
  if (int(elem) > int(ElemType::kInt8)) return invalid_argument("unknown element type");
  if (int(out_dtype) > int(DType::kF16)) return invalid_argument("unknown output dtype");
  if (k % kBlockSize != 0)
    return invalid_argument("dequantize: K = " + std::to_string(k) +
                            " is not a multiple of the MX block size 32");
  if (threads < 0) return invalid_argument("threads must be >= 0");
  if (rows == 0) return Status::Ok();
  if (packed == nullptr || scales == nullptr || out == nullptr)
    return invalid_argument("dequantize: null input or output pointer");
  const DequantJob job{packed, scales, elem, k, out_dtype, out};
  detail::parallel_for(rows * (k / kBlockSize), threads, kMinBlocksPerThread,
                       [&](int64_t b0, int64_t b1) { dequantize_blocks(job, b0, b1); });
  return Status::Ok();
}

StatusOr<MXMatrix> quantize(const std::vector<float>& in, int64_t rows, int64_t k,
                            const QuantOptions& opts) {
  MXQ_RETURN_IF_ERROR(check_shape(rows, k));
  if (int64_t(in.size()) != rows * k)
    return invalid_argument("quantize: input has " + std::to_string(in.size()) +
                            " values, expected rows * K = " + std::to_string(rows) + " * " +
                            std::to_string(k));
  const StatusOr<int64_t> kq = quantized_k(k, opts.pad_k);
  if (!kq.ok()) return kq.status();
  MXMatrix m;
  m.elem = opts.elem;
  m.rows = rows;
  m.k = kq.value();
  m.packed.resize(size_t(rows * packed_bytes(opts.elem, m.k)));
  m.scales.resize(size_t(rows * (m.k / kBlockSize)));
  MXQ_RETURN_IF_ERROR(quantize(in.data(), DType::kF32, rows, k, opts, m.packed.data(),
                               m.scales.data()));
  return m;
}

StatusOr<std::vector<float>> dequantize(const MXMatrix& m, int threads) {
  MXQ_RETURN_IF_ERROR(check_shape(m.rows, m.k));
  if (int64_t(m.packed.size()) != m.rows * packed_bytes(m.elem, m.k) ||
      int64_t(m.scales.size()) != m.rows * (m.k / kBlockSize))
    return invalid_argument("dequantize: MXMatrix buffers do not match rows = " +
                            std::to_string(m.rows) + ", K = " + std::to_string(m.k));
  std::vector<float> out(size_t(m.rows * m.k));
  MXQ_RETURN_IF_ERROR(dequantize(m.packed.data(), m.scales.data(), m.elem, m.rows, m.k,
                                 DType::kF32, out.data(), threads));
  return out;
}

Status pack_codes(ElemType t, const uint8_t* codes, int64_t n, uint8_t* out) {
  if (int(t) > int(ElemType::kInt8)) return invalid_argument("unknown element type");
  const int g = pack::pack_group(t);
  if (n < 0 || n % g != 0)
    return invalid_argument(std::string("pack: ") + std::to_string(n) + " " + mx_format_name(t) +
                            " elements is not a multiple of " + std::to_string(g) +
                            (g == 2 ? " (FP4 packs two elements per byte)"
                                    : g == 4 ? " (FP6 packs four elements into three bytes)" : ""));
  const int bits = elem_info(t).bits;
  if (bits < 8) {
    for (int64_t i = 0; i < n; ++i)
      if (codes[i] >> bits)
        return invalid_argument("pack: code " + std::to_string(codes[i]) + " at index " +
                                std::to_string(i) + " does not fit in " + std::to_string(bits) +
                                " bits");
  }
  pack::pack_codes(t, codes, n, out);
  return Status::Ok();
}

Status unpack_codes(ElemType t, const uint8_t* packed, int64_t n, uint8_t* codes) {
  if (int(t) > int(ElemType::kInt8)) return invalid_argument("unknown element type");
  const int g = pack::pack_group(t);
  if (n < 0 || n % g != 0)
    return invalid_argument(std::string("unpack: ") + std::to_string(n) + " " + mx_format_name(t) +
                            " elements is not a multiple of " + std::to_string(g));
  pack::unpack_codes(t, packed, n, codes);
  return Status::Ok();
}

}  // namespace mxq
