// Helpers of the cpu-reference tests, written independently of the code under test: random MX
// weights (quantized and dequantized by the core tensor path), a brute-force E4M3 rounding, and
// the activation quantization re-derived from its definition.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "mxq/backend.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"

namespace mxq::reftest {

inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(num::f32_to_bf16(f));
  return out;
}
inline std::vector<uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(num::f32_to_f16(f));
  return out;
}

// Nearest E4M3 value by brute force over every finite code (ties to the even code, i.e. the
// even mantissa), saturating at +-448: independent of num::encode_elem.
inline float e4m3_nearest(float q) {
  float best = 0.0f;
  double best_d = INFINITY;
  int best_code = 0;
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7F) == 0x7F) continue;  // NaN
    const float v = num::decode_elem(ElemType::kE4M3, uint8_t(code));
    const double d = std::fabs(double(v) - double(q));
    if (d < best_d || (d == best_d && (code & 1) == 0 && (best_code & 1) == 1)) {
      best = v;
      best_d = d;
      best_code = code;
    }
  }
  return best;
}

// The activation quantization of one FP32 row, from the definitions (finite inputs). For
// fp8-dynamic-tensor, x is the whole tensor (the amax spans all of it).
inline std::vector<float> expected_act(ActKey key, std::vector<float> x, float input_scale) {
  if (key == ActKey::kFP8DynamicGroup128) {  // the token key's formula on each 128-column run
    for (size_t g = 0; g < x.size(); g += 128) {
      const size_t end = std::min(x.size(), g + 128);
      float amax = 0;
      for (size_t i = g; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float s = amax == 0 ? 1.0f : amax / 448.0f;
      for (size_t i = g; i < end; ++i) x[i] = e4m3_nearest(x[i] / s) * s;
    }
  } else if (key == ActKey::kFP8StaticTensor || key == ActKey::kFP8DynamicToken ||
      key == ActKey::kFP8DynamicTensor) {
    float s = input_scale;
    if (key != ActKey::kFP8StaticTensor) {
      float amax = 0;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      s = amax == 0 ? 1.0f : amax / 448.0f;
    }
    for (float& v : x) v = e4m3_nearest(v / s) * s;
  } else if (act_key_mx_elem(key)) {
    QuantOptions o;
    act_key_mx_elem(key, &o.elem);
    const StatusOr<MXMatrix> q = quantize(x, 1, int64_t(x.size()), o);
    EXPECT_TRUE(q.ok());
    x = dequantize(q.value()).value();
  }
  return x;
}

// A whole tensor [rows, k] (row-major): the per-row keys row by row, fp8-dynamic-tensor with
// one amax over every value.
inline std::vector<float> expected_act_tensor(ActKey key, const std::vector<float>& x,
                                              int64_t rows, float input_scale) {
  if (key == ActKey::kFP8DynamicTensor || rows == 0) return expected_act(key, x, input_scale);
  const int64_t k = int64_t(x.size()) / rows;
  std::vector<float> out;
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> q = expected_act(
        key, std::vector<float>(x.begin() + r * k, x.begin() + (r + 1) * k), input_scale);
    out.insert(out.end(), q.begin(), q.end());
  }
  return out;
}

// Random MX weights [batch, n, k]: normal values with a per-row magnitude, quantized by the core
// tensor path (K padded to 32 when needed), and their FP32 dequantization [batch * n, kq].
struct TestMX {
  ElemType elem = ElemType::kE2M1;
  int64_t batch = 1, n = 0, k = 0;  // k: the quantized (padded) K
  MXMatrix q;
  std::vector<float> deq;
  MXWeightView view() const { return {elem, batch, n, k, q.packed.data(), q.scales.data()}; }
  float at(int64_t b, int64_t r, int64_t c) const { return deq[size_t((b * n + r) * k + c)]; }
};

inline TestMX make_mx(ElemType t, int64_t batch, int64_t n, int64_t k, uint32_t seed,
                      float magnitude = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(size_t(batch * n * k));
  for (int64_t r = 0; r < batch * n; ++r) {
    const float row_mag = magnitude * std::exp2(float(uint32_t(rng()) % 5) - 2.0f);
    for (int64_t c = 0; c < k; ++c) v[size_t(r * k + c)] = nd(rng) * row_mag;
  }
  QuantOptions o;
  o.elem = t;
  o.pad_k = true;
  TestMX m;
  m.elem = t;
  m.batch = batch;
  m.n = n;
  m.q = quantize(v, batch * n, k, o).value();
  m.k = m.q.k;
  m.deq = dequantize(m.q).value();
  return m;
}

// A new weight [batch, new_n, k] whose row r of batch b is row src(b, r) of batch b of `a`.
inline TestMX select_rows(const TestMX& a, int64_t new_n,
                          const std::function<int64_t(int64_t, int64_t)>& src) {
  TestMX m = a;
  m.n = new_n;
  const int64_t pb = packed_bytes(a.elem, a.k), sb = a.k / 32;
  m.q.rows = a.batch * new_n;
  m.q.packed.assign(size_t(m.q.rows * pb), 0);
  m.q.scales.assign(size_t(m.q.rows * sb), 0);
  m.deq.assign(size_t(m.q.rows * a.k), 0.0f);
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t r = 0; r < new_n; ++r) {
      const int64_t from = b * a.n + src(b, r), to = b * new_n + r;
      std::copy_n(a.q.packed.begin() + from * pb, pb, m.q.packed.begin() + to * pb);
      std::copy_n(a.q.scales.begin() + from * sb, sb, m.q.scales.begin() + to * sb);
      std::copy_n(a.deq.begin() + from * a.k, a.k, m.deq.begin() + to * a.k);
    }
  }
  return m;
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (float& f : v) f = nd(rng);
  return v;
}

// Widens a BF16 / F16 / F32 buffer to FP32.
inline float widen(const void* data, DType dt, size_t i) {
  if (dt == DType::kF32) return static_cast<const float*>(data)[i];
  const uint16_t h = static_cast<const uint16_t*>(data)[i];
  return dt == DType::kBF16 ? num::bf16_to_f32(h) : num::f16_to_f32(h);
}

// A dense buffer of `dt` holding v rounded to it; values() gives back what it holds.
struct Dense {
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0;
  std::vector<float> f32;
  std::vector<uint16_t> h16;
  Dense() = default;
  Dense(DType dt, int64_t r, int64_t c, const std::vector<float>& v) : dtype(dt), rows(r), cols(c) {
    if (dt == DType::kF32) f32 = v;
    else h16 = dt == DType::kBF16 ? to_bf16(v) : to_f16(v);
  }
  Dense(DType dt, int64_t r, int64_t c) : Dense(dt, r, c, std::vector<float>(size_t(r * c), 0.0f)) {}
  const void* data() const { return dtype == DType::kF32 ? (const void*)f32.data() : h16.data(); }
  void* data() { return dtype == DType::kF32 ? (void*)f32.data() : h16.data(); }
  DenseView view() const { return {data(), dtype, rows, cols}; }
  DenseMutView mut() { return {data(), dtype, rows, cols}; }
  float at(size_t i) const { return widen(data(), dtype, i); }
  std::vector<float> values() const {
    std::vector<float> v(size_t(rows * cols));
    for (size_t i = 0; i < v.size(); ++i) v[i] = at(i);
    return v;
  }
};

// double -> `dt` the way the contract says: nearest float, then nearest even BF16/F16.
inline float convert_out(double v, DType dt) {
  const float f = float(v);
  if (dt == DType::kBF16) return num::bf16_to_f32(num::f32_to_bf16(f));
  if (dt == DType::kF16) return num::f16_to_f32(num::f32_to_f16(f));
  return f;
}

}  // namespace mxq::reftest
