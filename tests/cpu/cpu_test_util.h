// Helpers of the cpu backend tests (cpu_backend_test.cc, cpu_moe_test.cc): random MX weights
// with exact float64 dequantization, dense buffers of any dtype, and the tolerance pieces.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cpu/common/act_quant.h"
#include "mxq/backend.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "mxq/quantize.h"

namespace mxq::cputest {

inline constexpr double kU = 1.0 / (1 << 24);  // FP32 unit roundoff
// Roundings one term of a K-long dot product goes through in the cpu kernels (mx_gemv.h), plus
// slack: E2M1 adds two products per lane per block (K/16 FMAs per lane), the other formats one
// block partial per lane per block (K/32).
inline double dot_tol(ElemType t, int64_t k) {
  return double((t == ElemType::kE2M1 ? k / 16 : k / 32) + 10) * kU;
}
inline double norm_tol(DType out) {
  return out == DType::kF32 ? 1e-5 : (out == DType::kBF16 ? 1.0 / 256 : 1.0 / 2048);
}
inline double out_ulp(double v, DType out) {
  const double a = std::fabs(v);
  if (out == DType::kF32 || a == 0) return out == DType::kF16 ? std::ldexp(1.0, -24) : 0.0;
  const int e = std::ilogb(a);
  return out == DType::kBF16 ? std::ldexp(1.0, e - 7) : std::max(std::ldexp(1.0, e - 10),
                                                                std::ldexp(1.0, -24));
}

// ---- data -------------------------------------------------------------------------------------

struct Weight {
  ElemType elem = ElemType::kE2M1;
  int64_t batch = 1, n = 0, k = 0;  // k padded to 32
  MXMatrix q;
  MXWeightView view() const { return {elem, batch, n, k, q.packed.data(), q.scales.data()}; }
  // Exact dequantized value (float64; NaN for a 0xFF scale).
  double at(int64_t row, int64_t c) const {
    uint8_t codes[32];
    const int64_t blk = c / 32;
    pack::unpack_codes(elem, q.packed.data() + row * packed_bytes(elem, k) +
                                 blk * packed_bytes(elem, 32), 32, codes);
    const uint8_t s = q.scales[size_t(row * (k / 32) + blk)];
    if (s == num::kScaleNaN) return NAN;
    return double(num::decode_elem(elem, codes[c % 32])) * std::ldexp(1.0, int(s) - 127);
  }
};

inline Weight make_weight(ElemType t, int64_t batch, int64_t n, int64_t k, uint32_t seed,
                   float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(size_t(batch * n * k));
  for (int64_t r = 0; r < batch * n; ++r) {
    const float row_sd = sd * std::exp2(float(rng() % 5) - 2.0f);
    for (int64_t c = 0; c < k; ++c) v[size_t(r * k + c)] = nd(rng) * row_sd;
  }
  QuantOptions o;
  o.elem = t;
  o.pad_k = true;
  Weight w;
  w.elem = t;
  w.batch = batch;
  w.n = n;
  w.q = quantize(v, batch * n, k, o).value();
  w.k = w.q.k;
  return w;
}

// A dense buffer in dtype dt holding the values v rounded to it.
struct Dense {
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> bytes;
  Dense() = default;
  Dense(DType dt, int64_t r, int64_t c, const std::vector<float>& v)
      : dtype(dt), rows(r), cols(c), bytes(size_t(r * c * dtype_bytes(dt))) {
    for (size_t i = 0; i < v.size(); ++i) cpu::store_f32(bytes.data(), dt, int64_t(i), v[i]);
  }
  Dense(DType dt, int64_t r, int64_t c)
      : dtype(dt), rows(r), cols(c), bytes(size_t(r * c * dtype_bytes(dt)), 0xAB) {}  // poison
  DenseView view() const { return {bytes.data(), dtype, rows, cols}; }
  DenseMutView mut() { return {bytes.data(), dtype, rows, cols}; }
  float at(int64_t i) const { return cpu::load_f32(bytes.data(), dtype, i); }
};

inline std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (float& f : v) f = nd(rng);
  return v;
}

// Bitwise equality, except that any two NaNs match: NaN payloads depend on which operand of an
// FMA the compiler made "first" (x86 propagates the first NaN operand), which differs between
// the scalar and the SIMD code when two NaNs meet (a NaN scale times a NaN element).
inline bool same_bits(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (num::f32_bits(a[i]) != num::f32_bits(b[i])) return false;
  }
  return true;
}

}  // namespace mxq::cputest
