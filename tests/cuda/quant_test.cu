// GPU quantize / dequantize / fused SiLU-and-mul kernels (src/cuda/quant) against the CPU core,
// bit for bit: every element type x scale rule x rounding x saturation x input dtype, on data
// with zeros, subnormals, huge values, Inf/NaN and exact rounding ties; the device encoders
// against num::encode_elem exhaustively over the binades that matter; argument errors; CUDA
// graph capture. GPU tests skip with a printed reason when no CUDA device is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/quant/encode.cuh"
#include "cuda/quant/quantize.h"
#include "cuda/quant/silu.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"
#include "gpu_test_util.h"

namespace mxq {
namespace {

// A device buffer with a poisoned fill; freed on scope exit.
struct DevBuf {
  void* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t bytes, int poison = 0xCD) : n(bytes) {
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) p = nullptr;
    if (p) cudaMemset(p, poison, bytes);
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

template <typename T>
std::vector<T> to_host(const DevBuf& b, size_t count) {
  std::vector<T> v(count);
  if (cudaMemcpy(v.data(), b.p, count * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
    v.clear();
  return v;
}

std::string opts_name(const QuantOptions& o, DType d) {
  return describe(o) + " in=" + dtype_name(d);
}

// ---- test data -------------------------------------------------------------------------------

// FP32 values in blocks of 32 with every kind of block the contract names: mixed dynamic range,
// all zero (mixed signs), FP32 subnormals (alone and inside normal blocks), huge values
// (FLT_MAX, BF16 max), Inf / NaN lanes, exact element ties for `tie_type`, amax just below a
// power of two, and near-max-normal amax values.
std::vector<float> make_values(int64_t n, uint32_t seed, ElemType tie_type, bool f16_range) {
  std::mt19937 rng(seed);
  std::vector<float> v(size_t(n), 0.0f);
  const ElemInfo ti = elem_info(tie_type);
  const int cmin = f16_range ? -8 : -125, cmax = f16_range ? 6 : 100;
  for (int64_t b = 0; b < n / 32; ++b) {
    float* x = &v[size_t(b) * 32];
    const int kind = int(rng() % 12);
    auto rsign = [&](float f) { return (rng() & 1) ? -f : f; };
    switch (kind) {
      case 0:
      case 1: {  // mixed dynamic range, random bits
        const int span = int(rng() % 40);
        const int base = f16_range ? int(rng() % 20) + 110 : int(rng() % 200) + 20;
        for (int i = 0; i < 32; ++i) {
          const int e = base - int(rng() % (span + 1));
          x[i] = num::f32_from_bits((uint32_t(e < 0 ? 0 : e) << 23) | (rng() & 0x807FFFFFu));
        }
        break;
      }
      case 2:  // all zero, mixed signs
        for (int i = 0; i < 32; ++i) x[i] = (rng() & 1) ? -0.0f : 0.0f;
        break;
      case 3:  // FP32 subnormals (all), or inside a normal block
        for (int i = 0; i < 32; ++i) x[i] = num::f32_from_bits((rng() & 0x807FFFFFu));
        if (rng() & 1) x[rng() % 32] = rsign(f16_range ? 1.0f : 1.5e-38f);
        break;
      case 4:  // huge
        for (int i = 0; i < 32; ++i)
          x[i] = rsign(num::f32_from_bits((uint32_t(200 + rng() % 54) << 23) | (rng() & 0x7FFFFFu)));
        x[rng() % 32] = rsign(f16_range ? 65504.0f : 3.4028234663852886e38f);
        if (rng() & 1) x[rng() % 32] = rsign(num::bf16_to_f32(0x7F7F));  // BF16 max
        break;
      case 5: {  // Inf / NaN lanes in an ordinary block
        for (int i = 0; i < 32; ++i) x[i] = rsign(float(rng() % 1000) / 37.0f);
        const uint32_t sp[] = {0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u, 0x7F800001u};
        x[rng() % 32] = num::f32_from_bits(sp[rng() % 5]);
        break;
      }
      case 6:
      case 7:
      case 8: {  // exact ties of tie_type at a block scale c: amax = max_normal * 2^c
        const int c = cmin + int(rng() % uint32_t(cmax - cmin));
        const float sc = num::pow2f(c);
        x[0] = rsign(ti.max_normal * sc);
        for (int i = 1; i < 32; ++i) {
          float lo, hi;
          if (ti.is_int) {
            const int q = int(rng() % 127);
            lo = float(q) / 64.0f;
            hi = float(q + 1) / 64.0f;
          } else {
            const int code = int(rng() % uint32_t(ti.max_mag));  // mag codes 0 .. max_mag-1
            lo = num::decode_elem(tie_type, uint8_t(code));
            hi = num::decode_elem(tie_type, uint8_t(code + 1));
          }
          const float mid = (lo + hi) * 0.5f;  // exact: one more significant bit
          x[i] = rsign((rng() % 4 == 0 ? lo : mid) * sc);
        }
        break;
      }
      case 9: {  // amax just below a power of two, or at/near the element's max normal
        const int c = cmin + int(rng() % uint32_t(cmax - cmin));
        const float sc = num::pow2f(c);
        for (int i = 0; i < 32; ++i) x[i] = rsign(float(rng() % 64) / 16.0f * sc);
        const float picks[] = {num::f32_from_bits(0x417FFFFFu) / 16.0f, 1.0f, 0.99999994f,
                               ti.max_normal, ti.max_normal * 1.0625f, ti.max_normal * 1.03f};
        x[rng() % 32] = rsign(picks[rng() % 6] * sc);
        break;
      }
      default: {  // smooth activations
        std::normal_distribution<float> nd(0.0f, f16_range ? 4.0f : 30.0f);
        for (int i = 0; i < 32; ++i) x[i] = nd(rng);
        break;
      }
    }
  }
  return v;
}

// The values as raw bytes of dtype d (RNE narrowing for BF16 / F16), so CPU and GPU read the
// same input.
std::vector<uint8_t> as_dtype(const std::vector<float>& v, DType d) {
  std::vector<uint8_t> out(v.size() * size_t(dtype_bytes(d)));
  for (size_t i = 0; i < v.size(); ++i) {
    if (d == DType::kF32) {
      std::memcpy(&out[i * 4], &v[i], 4);
    } else {
      const uint16_t h = d == DType::kBF16 ? num::f32_to_bf16(v[i]) : num::f32_to_f16(v[i]);
      std::memcpy(&out[i * 2], &h, 2);
    }
  }
  return out;
}

// Runs cuda::quantize and mxq::quantize on the same bytes and compares packed and scales.
void check_quantize(const std::vector<uint8_t>& in_bytes, DType d, int64_t rows, int64_t k,
                    const QuantOptions& o, size_t in_offset = 0, size_t out_offset = 0) {
  const int64_t kq = quantized_k(k, o.pad_k).value();
  const size_t pb = size_t(rows * packed_bytes(o.elem, kq)), sb = size_t(rows * kq / 32);
  std::vector<uint8_t> want_p(pb), want_s(sb);
  ASSERT_TRUE(quantize(in_bytes.data(), d, rows, k, o, want_p.data(), want_s.data()).ok());
  DevBuf din(in_bytes.size() + in_offset), dp(pb + out_offset), ds(sb);
  CUDA_OK(cudaMemcpy(din.as<uint8_t>() + in_offset, in_bytes.data(), in_bytes.size(),
                     cudaMemcpyHostToDevice));
  MXQ_OK(cuda::quantize(din.as<uint8_t>() + in_offset, d, rows, k, o, dp.as<uint8_t>() + out_offset,
                        ds.as<uint8_t>(), nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> got_p_all = to_host<uint8_t>(dp, pb + out_offset);
  const std::vector<uint8_t> got_s = to_host<uint8_t>(ds, sb);
  const int64_t blocks_per_row = kq / 32;
  const int bb = 32 * elem_info(o.elem).bits / 8;
  for (size_t b = 0; b < sb; ++b) {
    bool ok = got_s[b] == want_s[b];
    for (int i = 0; i < bb && ok; ++i)
      ok = got_p_all[out_offset + b * bb + i] == want_p[b * bb + i];
    if (!ok) {
      std::string msg = opts_name(o, d) + " rows=" + std::to_string(rows) + " k=" +
                        std::to_string(k) + " block " + std::to_string(b) + " (row " +
                        std::to_string(int64_t(b) / blocks_per_row) + "): scale gpu " +
                        std::to_string(got_s[b]) + " cpu " + std::to_string(want_s[b]) +
                        "\n  gpu bytes:";
      char buf[8];
      for (int i = 0; i < bb; ++i) {
        std::snprintf(buf, sizeof buf, " %02x", got_p_all[out_offset + b * bb + i]);
        msg += buf;
      }
      msg += "\n  cpu bytes:";
      for (int i = 0; i < bb; ++i) {
        std::snprintf(buf, sizeof buf, " %02x", want_p[b * bb + i]);
        msg += buf;
      }
      msg += "\n  input:";
      const int64_t row = int64_t(b) / blocks_per_row, col0 = (int64_t(b) % blocks_per_row) * 32;
      for (int64_t i = col0; i < col0 + 32 && i < k; ++i) {
        msg += " " + std::to_string(num::load_dense(in_bytes.data(), d, row * k + i));
      }
      FAIL() << msg;
    }
  }
}

// ---- the device encoders against numerics.h, exhaustively per binade ------------------------

struct Mismatch {
  unsigned count;
  uint32_t x;
  int c;
  uint32_t got, want;
};

template <ElemType T, Rounding R>
__global__ void encoder_sweep_kernel(uint32_t e_lo, uint64_t n, int c, Saturation sat,
                                     Mismatch* mm) {
  constexpr ElemInfo ei = elem_info(T);
  const uint32_t over = sat == Saturation::kNanInf ? ei.overflow_mag : ei.max_mag;
  const float mul = cuda::qk::inv_scale(uint32_t(c + 127));
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += uint64_t(gridDim.x) * blockDim.x) {
    const uint32_t h = uint32_t(i) * 0x9E3779B1u;
    const uint32_t x = (uint32_t(e_lo + (i >> 23)) << 23) | uint32_t(i & 0x7FFFFFu) |
                       (h & 0x80000000u);
    const uint32_t got = cuda::qk::encode<T, R>(__uint_as_float(x), mul, over);
    const uint32_t want = num::encode_elem(T, x, c, R, sat);
    if (got != want) {
      if (atomicAdd(&mm->count, 1u) == 0) {
        mm->x = x;
        mm->c = c;
        mm->got = got;
        mm->want = want;
      }
    }
  }
}

template <ElemType T, Rounding R>
void sweep_encoder(Saturation sat) {
  constexpr ElemInfo ei = elem_info(T);
  Mismatch* dmm = nullptr;
  ASSERT_EQ(cudaMalloc(&dmm, sizeof(Mismatch)), cudaSuccess);
  for (int c : {-127, -126, -120, -40, -3, 0, 5, 64, 119, 125}) {
    // x / 2^c from below half the smallest subnormal up to the largest binade a block scale can
    // produce (every rule gives |x| / 2^c < 2^(emax + 1)); FP32 subnormal x included.
    const int lo = std::max(0, 127 + c + ei.emin - ei.mbits - 3);
    const int hi = std::min(254, 127 + c + ei.emax);
    if (hi < lo) continue;
    const uint64_t n = uint64_t(hi - lo + 1) << 23;
    Mismatch mm{0, 0, 0, 0, 0};
    ASSERT_EQ(cudaMemcpy(dmm, &mm, sizeof mm, cudaMemcpyHostToDevice), cudaSuccess);
    encoder_sweep_kernel<T, R><<<4096, 256>>>(uint32_t(lo), n, c, sat, dmm);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(&mm, dmm, sizeof mm, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(mm.count, 0u) << elem_type_name(T) << " " << rounding_name(R) << " "
                            << saturation_name(sat) << " c=" << c << ": x=0x" << std::hex << mm.x
                            << " gpu 0x" << mm.got << " numerics 0x" << mm.want;
  }
  cudaFree(dmm);
}

template <ElemType T>
void sweep_all_roundings() {
  for (int s = 0; s < (elem_info(T).has_nan_inf ? 2 : 1); ++s) {
    sweep_encoder<T, Rounding::kRne>(Saturation(s));
    sweep_encoder<T, Rounding::kHalfAway>(Saturation(s));
    sweep_encoder<T, Rounding::kTowardZeroTies>(Saturation(s));
  }
}

TEST(CudaQuant, EncodersMatchNumericsOnEveryPatternOfTheRelevantBinades) {
  SKIP_WITHOUT_GPU();
  sweep_all_roundings<ElemType::kE2M1>();
  sweep_all_roundings<ElemType::kE2M3>();
  sweep_all_roundings<ElemType::kE3M2>();
  sweep_all_roundings<ElemType::kE4M3>();
  sweep_all_roundings<ElemType::kE5M2>();
  sweep_all_roundings<ElemType::kInt8>();
}

// ---- whole-tensor quantize ---------------------------------------------------------------------

TEST(CudaQuant, QuantizeMatchesCpuForEveryOption) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 37, k = 256;  // 592 half-block units: 3 CTAs, the last one partial
  int configs = 0;
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16})
    for (ElemType t : kAllElemTypes) {
      const std::vector<float> vals =
          make_values(rows * k, 1000u + uint32_t(t) * 7u + uint32_t(d), t, d == DType::kF16);
      const std::vector<uint8_t> bytes = as_dtype(vals, d);
      for (ScaleRule r : kAllScaleRules)
        for (Rounding rd : kAllRoundings)
          for (int sat = 0; sat < (elem_info(t).has_nan_inf ? 2 : 1); ++sat)
            for (bool ss : {false, true}) {
              QuantOptions o;
              o.elem = t;
              o.scale_rule = r;
              o.rounding = rd;
              o.saturation = Saturation(sat);
              o.saturate_scale = ss;
              check_quantize(bytes, d, rows, k, o);
              if (HasFatalFailure()) return;
              ++configs;
            }
    }
  std::printf("  %d option x dtype configurations bit-identical\n", configs);
}

TEST(CudaQuant, QuantizeRawSixteenBitPatterns) {
  SKIP_WITHOUT_GPU();
  // Every BF16 / F16 bit pattern (NaNs, Infs, subnormals included) in one [2048, 32] tensor.
  std::vector<uint8_t> bytes(65536 * 2);
  std::mt19937 rng(5);
  std::vector<uint16_t> pat(65536);
  for (int i = 0; i < 65536; ++i) pat[i] = uint16_t(i);
  std::shuffle(pat.begin(), pat.end(), rng);
  std::memcpy(bytes.data(), pat.data(), bytes.size());
  for (DType d : {DType::kBF16, DType::kF16})
    for (ElemType t : kAllElemTypes)
      for (ScaleRule r : kAllScaleRules) {
        QuantOptions o;
        o.elem = t;
        o.scale_rule = r;
        check_quantize(bytes, d, 2048, 32, o);
        if (HasFatalFailure()) return;
      }
}

TEST(CudaQuant, ShapesKEqual32LargeKAndManyRows) {
  SKIP_WITHOUT_GPU();
  struct Shape {
    int64_t rows, k;
  };
  for (Shape s : {Shape{1, 32}, Shape{3, 32}, Shape{1000, 32}, Shape{7, 16384}, Shape{4099, 1024},
                  Shape{1, 65536}})
    for (DType d : {DType::kBF16, DType::kF32})
      for (ElemType t : {ElemType::kE2M1, ElemType::kE4M3, ElemType::kE5M2}) {
        const std::vector<uint8_t> bytes =
            as_dtype(make_values(s.rows * s.k, uint32_t(s.rows * 31 + s.k), t, false), d);
        QuantOptions o;
        o.elem = t;
        o.scale_rule = ScaleRule::kRceil;
        check_quantize(bytes, d, s.rows, s.k, o);
        if (HasFatalFailure()) return;
      }
}

TEST(CudaQuant, PaddedKAndUnalignedPointersTakeTheFallbackWithTheSameBits) {
  SKIP_WITHOUT_GPU();
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16})
    for (ElemType t : kAllElemTypes) {
      QuantOptions o;
      o.elem = t;
      o.scale_rule = ScaleRule::kEven;
      o.rounding = Rounding::kHalfAway;
      o.pad_k = true;
      // K = 45 and 77: zero-padded tail blocks.
      for (int64_t k : {45, 77}) {
        const std::vector<uint8_t> bytes =
            as_dtype(make_values(((13 * k + 31) / 32) * 32, uint32_t(k), t, d == DType::kF16), d);
        std::vector<uint8_t> exact(bytes.begin(), bytes.begin() + 13 * k * dtype_bytes(d));
        check_quantize(exact, d, 13, k, o);
        if (HasFatalFailure()) return;
      }
      // K = 64 with an input that is not 16-byte aligned, and a packed output that is not.
      o.pad_k = false;
      const std::vector<uint8_t> bytes = as_dtype(make_values(9 * 64, 77u, t, d == DType::kF16), d);
      check_quantize(bytes, d, 9, 64, o, size_t(dtype_bytes(d)), 0);
      if (HasFatalFailure()) return;
      check_quantize(bytes, d, 9, 64, o, 0, 1);
      if (HasFatalFailure()) return;
    }
}

// ---- dequantize --------------------------------------------------------------------------------

void check_dequantize(ElemType t, DType d, int64_t rows, int64_t k, size_t out_offset) {
  std::mt19937 rng(uint32_t(t) * 131u + uint32_t(d) + uint32_t(out_offset));
  const size_t pb = size_t(rows * packed_bytes(t, k)), sb = size_t(rows * k / 32);
  std::vector<uint8_t> packed(pb), scales(sb);
  for (auto& b : packed) b = uint8_t(rng());
  const uint8_t special[] = {0, 1, 2, 100, 127, 128, 200, 253, 254, 255};
  for (size_t i = 0; i < sb; ++i) scales[i] = (i % 3 == 0) ? special[rng() % 10] : uint8_t(rng());
  const size_t ob = size_t(rows * k) * size_t(dtype_bytes(d));
  std::vector<uint8_t> want(ob);
  ASSERT_TRUE(dequantize(packed.data(), scales.data(), t, rows, k, d, want.data(), 1).ok());
  DevBuf dp(pb), ds(sb), dout(ob + out_offset);
  CUDA_OK(cudaMemcpy(dp.p, packed.data(), pb, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(ds.p, scales.data(), sb, cudaMemcpyHostToDevice));
  MXQ_OK(cuda::dequantize(dp.as<uint8_t>(), ds.as<uint8_t>(), t, rows, k, d,
                          dout.as<uint8_t>() + out_offset, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> got = to_host<uint8_t>(dout, ob + out_offset);
  const int es = dtype_bytes(d);
  for (size_t i = 0; i < size_t(rows * k); ++i) {
    if (std::memcmp(&got[out_offset + i * es], &want[i * es], size_t(es)) != 0) {
      uint32_t g = 0, w = 0;
      std::memcpy(&g, &got[out_offset + i * es], size_t(es));
      std::memcpy(&w, &want[i * es], size_t(es));
      const size_t blk = i / 32;
      FAIL() << elem_type_name(t) << " -> " << dtype_name(d) << " offset " << out_offset
             << " element " << i << " (scale " << int(scales[blk]) << "): gpu 0x" << std::hex << g
             << " cpu 0x" << w;
    }
  }
}

TEST(CudaQuant, DequantizeMatchesCpuBitwise) {
  SKIP_WITHOUT_GPU();
  for (ElemType t : kAllElemTypes)
    for (DType d : {DType::kF32, DType::kBF16, DType::kF16}) {
      check_dequantize(t, d, 67, 512, 0);
      if (HasFatalFailure()) return;
      // Output aligned to its element but not to 16 bytes: the fallback kernel.
      check_dequantize(t, d, 5, 96, size_t(dtype_bytes(d)));
      if (HasFatalFailure()) return;
    }
}

TEST(CudaQuant, QuantizeDequantizeRoundTripOnTheGpu) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 64, k = 2048;
  const std::vector<uint8_t> bytes = as_dtype(make_values(rows * k, 3u, ElemType::kE4M3, false),
                                              DType::kF32);
  for (ElemType t : kAllElemTypes) {
    QuantOptions o;
    o.elem = t;
    const size_t pb = size_t(rows * packed_bytes(t, k)), sb = size_t(rows * k / 32);
    DevBuf din(bytes.size()), dp(pb), ds(sb), dout(size_t(rows * k) * 4), dout2(size_t(rows * k) * 4);
    CUDA_OK(cudaMemcpy(din.p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
    MXQ_OK(cuda::quantize(din.p, DType::kF32, rows, k, o, dp.as<uint8_t>(), ds.as<uint8_t>(),
                          nullptr));
    MXQ_OK(cuda::dequantize(dp.as<uint8_t>(), ds.as<uint8_t>(), t, rows, k, DType::kF32, dout.p,
                            nullptr));
    // Re-quantizing the dequantized values reproduces the same bytes under floor.
    DevBuf dp2(pb), ds2(sb);
    MXQ_OK(cuda::quantize(dout.p, DType::kF32, rows, k, o, dp2.as<uint8_t>(), ds2.as<uint8_t>(),
                          nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const auto s1 = to_host<uint8_t>(ds, sb), s2 = to_host<uint8_t>(ds2, sb);
    const auto p1 = to_host<uint8_t>(dp, pb), p2 = to_host<uint8_t>(dp2, pb);
    const int bb = 32 * elem_info(t).bits / 8;
    for (size_t b = 0; b < sb; ++b) {
      if (s1[b] == num::kScaleNaN) continue;
      ASSERT_EQ(s1[b], s2[b]) << elem_type_name(t) << " block " << b;
      // Elements quantized to -0 dequantize to -0 and come back as -0: bytes equal too.
      for (int i = 0; i < bb; ++i)
        ASSERT_EQ(p1[b * bb + i], p2[b * bb + i]) << elem_type_name(t) << " block " << b;
    }
  }
}

// ---- fused SiLU-and-mul + quantize --------------------------------------------------------------

// gate_up [rows, 2I] values: activations of every sign and size, plus zeros, tiny, huge, Inf, NaN.
std::vector<float> make_gate_up(int64_t rows, int64_t inter, uint32_t seed, bool f16_range) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> v(size_t(rows * 2 * inter));
  for (auto& x : v) {
    const uint32_t kind = rng() % 64;
    if (kind < 50) x = nd(rng) * (kind < 10 ? 8.0f : 1.0f);
    else if (kind < 53) x = (rng() & 1) ? -0.0f : 0.0f;
    else if (kind < 56) x = num::f32_from_bits(uint32_t(rng() % 40 + (f16_range ? 100 : 1)) << 23 | (rng() & 0x807FFFFFu));
    else if (kind < 59) x = nd(rng) * (f16_range ? 1000.0f : 1e30f);
    else if (kind < 61) x = float(int(rng() % 200) - 100);  // -100 .. 99: exp over / underflow
    else if (kind == 61) x = num::f32_from_bits(rng() % 7 == 0 ? 0x7FC00000u : 0x7F800000u);
    else if (kind == 62) x = num::f32_from_bits(0xFF800000u);
    else x = nd(rng) * 1e-3f;
  }
  return v;
}

void check_silu(DType d, cuda::GateUpLayout layout, int64_t rows, int64_t inter,
                const QuantOptions& o, uint32_t seed) {
  const std::vector<uint8_t> gu = as_dtype(make_gate_up(rows, inter, seed, d == DType::kF16), d);
  // CPU composition: h = round_to_dtype(silu_mul_f32(g, u)), stored as dtype, then quantize.
  std::vector<float> h(size_t(rows * inter));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < inter; ++j) {
      const bool il = layout == cuda::GateUpLayout::kInterleaved;
      const int64_t gi = r * 2 * inter + (il ? 2 * j : j);
      const int64_t ui = r * 2 * inter + (il ? 2 * j + 1 : inter + j);
      h[size_t(r * inter + j)] =
          cuda::act::silu_mul_f32(num::load_dense(gu.data(), d, gi), num::load_dense(gu.data(), d, ui));
    }
  const std::vector<uint8_t> hb = as_dtype(h, d);  // RNE to dtype: numerics.h's conversions
  const size_t pb = size_t(rows * packed_bytes(o.elem, inter)), sb = size_t(rows * inter / 32);
  std::vector<uint8_t> want_p(pb), want_s(sb);
  ASSERT_TRUE(quantize(hb.data(), d, rows, inter, o, want_p.data(), want_s.data()).ok());
  DevBuf dgu(gu.size()), dp(pb), ds(sb);
  CUDA_OK(cudaMemcpy(dgu.p, gu.data(), gu.size(), cudaMemcpyHostToDevice));
  MXQ_OK(cuda::silu_and_mul_quantize(dgu.p, d, rows, inter, o, dp.as<uint8_t>(), ds.as<uint8_t>(),
                                     nullptr, layout));
  CUDA_OK(cudaDeviceSynchronize());
  const auto got_p = to_host<uint8_t>(dp, pb);
  const auto got_s = to_host<uint8_t>(ds, sb);
  const int bb = 32 * elem_info(o.elem).bits / 8;
  for (size_t b = 0; b < sb; ++b) {
    bool ok = got_s[b] == want_s[b];
    for (int i = 0; i < bb && ok; ++i) ok = got_p[b * bb + i] == want_p[b * bb + i];
    ASSERT_TRUE(ok) << opts_name(o, d) << " layout " << int(layout) << " rows=" << rows
                    << " I=" << inter << " block " << b << ": scale gpu " << int(got_s[b])
                    << " cpu " << int(want_s[b]);
  }
}

// The fused kernels are compiled only with MXQ_CUDA_SILU_QUANT=ON (no backend calls them).
#define SKIP_WITHOUT_FUSED_SILU()                                                           \
  do {                                                                                      \
    if (!cuda::silu_and_mul_quantize_built()) {                                             \
      std::printf("[ SKIPPED  ] fused SiLU+quantize not built (-DMXQ_CUDA_SILU_QUANT=ON)\n"); \
      GTEST_SKIP() << "fused SiLU+quantize not built";                                      \
    }                                                                                       \
  } while (0)

TEST(CudaQuant, SiluAndMulQuantizeMatchesCpuComposition) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_FUSED_SILU();
  int configs = 0;
  for (DType d : {DType::kBF16, DType::kF16, DType::kF32})
    for (cuda::GateUpLayout layout : {cuda::GateUpLayout::kChunked, cuda::GateUpLayout::kInterleaved})
      for (ElemType t : kAllElemTypes)
        for (ScaleRule r : kAllScaleRules)
          for (Rounding rd : kAllRoundings) {
            QuantOptions o;
            o.elem = t;
            o.scale_rule = r;
            o.rounding = rd;
            o.saturation = elem_info(t).has_nan_inf && rd == Rounding::kHalfAway
                               ? Saturation::kNanInf
                               : Saturation::kSaturate;
            check_silu(d, layout, 19, 96, o, uint32_t(configs));
            if (HasFatalFailure()) return;
            ++configs;
          }
  // A larger shape: several CTAs, row boundaries inside CTAs.
  for (ElemType t : {ElemType::kE2M1, ElemType::kE4M3}) {
    QuantOptions o;
    o.elem = t;
    check_silu(DType::kBF16, cuda::GateUpLayout::kChunked, 333, 1536, o, 99u);
    if (HasFatalFailure()) return;
    check_silu(DType::kBF16, cuda::GateUpLayout::kInterleaved, 333, 1536, o, 98u);
    if (HasFatalFailure()) return;
  }
  std::printf("  %d fused configurations bit-identical\n", configs);
}

// ---- host-only checks (run everywhere) -------------------------------------------------------

TEST(CudaQuantHost, SiluMulIsAccurate) {
  // silu_mul_f32 against float64 silu(g) * u: exp_f32 within a few ulp, the whole within 4 ulp
  // of the FP32 result where it is normal.
  std::mt19937 rng(1);
  double worst_exp = 0.0;
  for (int i = 0; i < 2000000; ++i) {
    const float x = std::uniform_real_distribution<float>(-103.0f, 88.0f)(rng);
    const double want = std::exp(double(x));
    const float got = cuda::act::exp_f32(x);
    if (want < 1.2e-38) continue;
    const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
    worst_exp = std::max(worst_exp, std::fabs(double(got) - want) / ulp);
  }
  EXPECT_LT(worst_exp, 2.0) << "exp_f32 error in ulp";
  double worst = 0.0;
  for (int i = 0; i < 1000000; ++i) {
    const float g = std::normal_distribution<float>(0.0f, 6.0f)(rng);
    const float u = std::normal_distribution<float>(0.0f, 2.0f)(rng);
    const double want = double(g) / (1.0 + std::exp(-double(g))) * double(u);
    const float got = cuda::act::silu_mul_f32(g, u);
    if (std::fabs(want) < 1e-30) continue;
    const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
    worst = std::max(worst, std::fabs(double(got) - want) / ulp);
  }
  EXPECT_LT(worst, 4.0) << "silu_mul_f32 error in ulp";
  EXPECT_EQ(cuda::act::exp_f32(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isinf(cuda::act::exp_f32(100.0f)));
  EXPECT_TRUE(std::isnan(cuda::act::silu_mul_f32(std::nanf(""), 1.0f)));
  EXPECT_TRUE(std::isnan(cuda::act::silu_mul_f32(1.0f, std::nanf(""))));
  EXPECT_TRUE(std::isnan(cuda::act::silu_mul_f32(-std::numeric_limits<float>::infinity(), 1.0f)));
  EXPECT_EQ(cuda::act::silu_mul_f32(std::numeric_limits<float>::infinity(), 2.0f),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(num::f32_bits(cuda::act::silu_mul_f32(-200.0f, 3.0f)), 0x80000000u);  // -0 * 3
  std::printf("  exp_f32 worst %.3f ulp, silu_mul_f32 worst %.3f ulp\n", worst_exp, worst);
}

TEST(CudaQuantHost, ArgumentErrorsNameTheValue) {
  // Checked before anything touches the device: runs without a GPU.
  uint8_t* fake = reinterpret_cast<uint8_t*>(uintptr_t(256));
  auto expect_error = [](const Status& st, const char* needle) {
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  };
  QuantOptions o;
  o.elem = ElemType::kE4M3;
  expect_error(cuda::quantize(fake, DType::kBF16, 4, 33, o, fake, fake, nullptr), "K = 33");
  expect_error(cuda::quantize(nullptr, DType::kBF16, 4, 64, o, fake, fake, nullptr),
               "input is a null pointer");
  expect_error(cuda::quantize(fake, DType::kBF16, 4, 64, o, fake, nullptr, nullptr),
               "scales output is a null pointer");
  expect_error(cuda::quantize(fake + 1, DType::kBF16, 4, 64, o, fake, fake, nullptr),
               "not aligned to its bf16 elements");
  o.elem = ElemType(9);
  expect_error(cuda::quantize(fake, DType::kBF16, 4, 64, o, fake, fake, nullptr),
               "element type 9");
  o.elem = ElemType::kE2M1;
  o.saturation = Saturation::kNanInf;
  expect_error(cuda::quantize(fake, DType::kBF16, 4, 64, o, fake, fake, nullptr), "nan_inf");
  o.saturation = Saturation::kSaturate;
  expect_error(cuda::quantize(fake, DType(7), 4, 64, o, fake, fake, nullptr), "dtype 7");
  expect_error(cuda::quantize(fake, DType::kBF16, -1, 64, o, fake, fake, nullptr), "rows = -1");
  EXPECT_TRUE(cuda::quantize(nullptr, DType::kBF16, 0, 64, o, nullptr, nullptr, nullptr).ok());
  expect_error(cuda::dequantize(fake, fake, ElemType::kE4M3, 2, 48, DType::kF32, fake, nullptr),
               "K = 48");
  expect_error(cuda::dequantize(fake, nullptr, ElemType::kE4M3, 2, 64, DType::kF32, fake, nullptr),
               "scales input is a null pointer");
  expect_error(cuda::dequantize(fake, fake, ElemType(6), 2, 64, DType::kF32, fake, nullptr),
               "element type 6");
  expect_error(cuda::silu_and_mul_quantize(fake, DType::kBF16, 2, 48, o, fake, fake, nullptr),
               "I = 48");
  expect_error(cuda::silu_and_mul_quantize(fake + 2, DType::kBF16, 2, 64, o, fake, fake, nullptr),
               "16-byte aligned");
  expect_error(cuda::silu_and_mul_quantize(fake, DType::kBF16, 2, 64, o, fake, fake, nullptr,
                                           cuda::GateUpLayout(5)),
               "layout 5");
  if (!cuda::silu_and_mul_quantize_built()) {  // valid arguments: the missing kernels are named
    const Status st = cuda::silu_and_mul_quantize(fake, DType::kBF16, 2, 64, o, fake, fake, nullptr);
    EXPECT_EQ(st.code(), StatusCode::kUnimplemented) << st.to_string();
    EXPECT_NE(st.message().find("MXQ_CUDA_SILU_QUANT=ON"), std::string::npos) << st.message();
  }
}

// ---- streams and graphs -------------------------------------------------------------------------

TEST(CudaQuant, CapturesIntoACudaGraph) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_FUSED_SILU();
  const int64_t rows = 128, inter = 512;
  QuantOptions o;
  o.elem = ElemType::kE4M3;
  const std::vector<uint8_t> gu = as_dtype(make_gate_up(rows, inter, 4u, false), DType::kBF16);
  const size_t pb = size_t(rows * inter), sb = size_t(rows * inter / 32);
  DevBuf dgu(gu.size()), dp(pb), ds(sb), dp_ref(pb), ds_ref(sb), dq(2 * pb), dqs(2 * sb);
  CUDA_OK(cudaMemcpy(dgu.p, gu.data(), gu.size(), cudaMemcpyHostToDevice));
  cudaStream_t st;
  CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  MXQ_OK(cuda::silu_and_mul_quantize(dgu.p, DType::kBF16, rows, inter, o, dp_ref.as<uint8_t>(),
                                     ds_ref.as<uint8_t>(), st));
  CUDA_OK(cudaStreamSynchronize(st));
  cudaGraph_t graph;
  CUDA_OK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  const Status s1 = cuda::silu_and_mul_quantize(dgu.p, DType::kBF16, rows, inter, o,
                                                dp.as<uint8_t>(), ds.as<uint8_t>(), st);
  const Status s2 = cuda::quantize(dgu.p, DType::kBF16, rows, 2 * inter, o, dq.as<uint8_t>(),
                                   dqs.as<uint8_t>(), st);
  CUDA_OK(cudaStreamEndCapture(st, &graph));
  MXQ_OK(s1);
  MXQ_OK(s2);
  cudaGraphExec_t exec;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) CUDA_OK(cudaGraphLaunch(exec, st));
  CUDA_OK(cudaStreamSynchronize(st));
  EXPECT_EQ(to_host<uint8_t>(dp, pb), to_host<uint8_t>(dp_ref, pb));
  EXPECT_EQ(to_host<uint8_t>(ds, sb), to_host<uint8_t>(ds_ref, sb));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(st);
}

}  // namespace
}  // namespace mxq
