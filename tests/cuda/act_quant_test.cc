// Activation keys on the CUDA backends (issue 15): the MX activation fake-quant kernel bit for
// bit against the CPU definition, the FP8 operand (codes with the scale apart) likewise (src/cpu/common/act_quant.h), cuda-mma's linear layer under
// every MX key bit for bit against cuda-mma's BF16 path fed with the CPU-quantized activations,
// the MoE layer under every MX key against cpu-reference, and the declarations the oracle
// checks (which run without a GPU). GPU tests skip with a printed reason when no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/common/act_quant.h"
#include "cuda/common/instance_set.h"
#include "cuda/quant/act_operand.h"
#include "cuda/quant/fake_quant.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"
#include "mxq/select.h"
#include "gpu_test_util.h"
#include "test_weights.h"
#include "tolerance.h"  // tests/cases: the named tolerances against cpu-reference

namespace mxq {
namespace {

using testing::Dev;

constexpr ActKey kMxKeys[] = {ActKey::kMXFP4Dynamic, ActKey::kMXFP8Dynamic,
                              ActKey::kMXFP6E2M3Dynamic, ActKey::kMXFP6E3M2Dynamic};

uint16_t to16(float v, DType d) { return d == DType::kBF16 ? num::f32_to_bf16(v) : num::f32_to_f16(v); }

// Rows of 16-bit activations that reach every corner the fake-quant must get right: magnitudes
// over the whole binade range of the type (subnormals included), exact ties of the element
// grids, zeros of both signs, saturating blocks, and (when `specials`) NaN / Inf blocks.
std::vector<uint16_t> nasty_rows(DType d, int64_t rows, int64_t k, uint32_t seed, bool specials) {
  std::mt19937 g(seed);
  const int lo = d == DType::kBF16 ? -133 : -24, hi = d == DType::kBF16 ? 127 : 15;
  std::vector<uint16_t> x(size_t(rows * k));
  for (int64_t b = 0; b < rows * k / 32; ++b) {
    const int e = lo + int(g() % uint32_t(hi - lo + 1));
    const int kind = int(g() % 8);
    for (int i = 0; i < 32; ++i) {
      float v = std::ldexp(1.0f + float(g() % 128) / 128.0f, e - int(g() % 10));
      if (kind == 1) v = std::ldexp(float(g() % 16) * 0.25f + 0.125f, e - 3);  // grid ties
      if (kind == 2 && i % 3 == 0) v = 0.0f;
      if (g() & 1) v = -v;
      x[size_t(b * 32 + i)] = to16(v, d);
    }
    if (specials && kind == 3) x[size_t(b * 32 + int(g() % 32))] = d == DType::kBF16 ? 0x7FC0 : 0x7E00;
    if (specials && kind == 4) x[size_t(b * 32 + int(g() % 32))] = d == DType::kBF16 ? 0xFF80 : 0xFC00;
  }
  return x;
}

// The CPU definition, rounded to the 16-bit type (exact: tests/cpu ActQuant.MxKeysAreExact...).
std::vector<uint16_t> cpu_fake_quant(ActKey key, const std::vector<uint16_t>& x, DType d,
                                     int64_t rows, int64_t k, ScaleRule rule = ScaleRule::kFloor) {
  std::vector<float> f;
  EXPECT_TRUE(cpu::act_quantize(key, {x.data(), d, rows, k}, 1.0f, f, rule).ok());
  std::vector<uint16_t> out(f.size());
  for (size_t i = 0; i < f.size(); ++i) out[i] = to16(f[i], d);
  return out;
}

// ---- declarations (no GPU needed) --------------------------------------------------------------

// A weight format with kernels in this build for key a's 16-bit input: E2M1 unless the minimal
// instance set left that pair out (common/instance_set.h; CI builds the minimal set).
ElemType compiled_weight_for(ActKey a) {
  const bool bf16 = act_input_dtype(a) == DType::kBF16;
  return cuda::instance_types_compiled(bf16, true) ? ElemType::kE2M1 : ElemType::kE4M3;
}

// The weight formats whose BF16-activation kernels this build compiled (all in the full set;
// MXFP4 alone in the minimal one, which prints what it leaves out).
std::vector<ElemType> bf16_compiled_weights() {
  if (cuda::instance_types_compiled(true, false)) return {ElemType::kE2M1, ElemType::kE4M3};
  std::printf("[ PARTIAL  ] BF16 x MXFP8 not run: %s\n", cuda::kMinimalInstancesNote);
  return {ElemType::kE2M1};
}

TEST(CudaActKeys, CudaMmaDeclaresEveryKeyAndItsMoERefusesFp8) {
  const Backend* b = find_backend("cuda-mma");
  ASSERT_NE(b, nullptr);
  for (ActKey a : kAllActKeys) {
    EXPECT_TRUE(b->declares_act_key(a)) << act_key_name(a);
    const Problem p = Problem::linear(compiled_weight_for(a), a, 4, 64, 128);
    const Verdict v = b->check_problem(p);
    EXPECT_TRUE(v.ok) << act_key_name(a) << ": " << v.reason;
    const Problem m = Problem::moe_problem(compiled_weight_for(a), a, 4, 64, 96, 8, 2);
    const Verdict mv = b->check_problem(m);
    const bool fp8 = a == ActKey::kFP8StaticTensor || a == ActKey::kFP8DynamicToken ||
                     a == ActKey::kFP8DynamicTensor || a == ActKey::kFP8DynamicGroup128;
    EXPECT_EQ(mv.ok, !fp8) << act_key_name(a) << " moe: " << mv.reason;
    if (fp8) {
      EXPECT_NE(mv.reason.find("fused gate/up epilogue"), std::string::npos) << mv.reason;
      EXPECT_NE(mv.reason.find(act_key_name(a)), std::string::npos) << mv.reason;
    }
  }
}

// cuda-hopper declares every key but fp8-dynamic-tensor (the MX keys through act_operand, the
// FP8 keys on its FP8 tensor cores or its 16-bit kernel, the group key on its FP8 tensor cores or
// cuda-mma's kernels, hopper_backend.cc); its MoE layer refuses the FP8 keys with the reason,
// and on an H200 (described, so this runs on machines without one) the oracle picks it for a
// large-M linear layer under every key it declares, and cuda-mma, saying why cuda-hopper was
// not, under the other.
TEST(CudaActKeys, CudaHopperDeclaresEveryKeyAndItsMoERefusesFp8) {
  const Backend* h = find_backend("cuda-hopper");
  if (h == nullptr) {
    std::printf("[ SKIPPED  ] cuda-hopper is not in this build\n");
    GTEST_SKIP() << "cuda-hopper is not in this build";
  }
  Device h200 = this_device();
  h200.cuda_built = true;
  h200.cuda_archs_compiled = {80, 90};
  h200.cuda_status.clear();
  h200.gpus = {{0, "NVIDIA H200 (described)", 9, 0, size_t(141) << 30, 132}};
  for (ActKey a : kAllActKeys) {
    const Problem p = Problem::linear(compiled_weight_for(a), a, 512, 4096, 4096);
    if (a == ActKey::kFP8DynamicTensor) {
      const std::string not_declared = std::string("activation key ") + act_key_name(a) +
                                       " is not declared by cuda-hopper";
      EXPECT_FALSE(h->declares_act_key(a));
      const Verdict v = h->check_problem(p);
      EXPECT_FALSE(v.ok);
      EXPECT_NE(v.reason.find(not_declared), std::string::npos) << v.reason;
      const std::string e = explain(p, h200);
      EXPECT_NE(e.find("choice   cuda-mma (automatic)"), std::string::npos) << e;
      EXPECT_NE(e.find("rejected: " + not_declared), std::string::npos) << e;
      continue;
    }
    EXPECT_TRUE(h->declares_act_key(a)) << act_key_name(a);
    const Verdict v = h->check_problem(p);
    EXPECT_TRUE(v.ok) << act_key_name(a) << ": " << v.reason;
    const Problem m = Problem::moe_problem(compiled_weight_for(a), a, 4, 64, 96, 8, 2);
    const Verdict mv = h->check_problem(m);
    const bool fp8 = a == ActKey::kFP8StaticTensor || a == ActKey::kFP8DynamicToken ||
                     a == ActKey::kFP8DynamicGroup128;
    EXPECT_EQ(mv.ok, !fp8) << act_key_name(a) << " moe: " << mv.reason;
    const std::string e = explain(p, h200);
    EXPECT_NE(e.find("choice   cuda-hopper (automatic)"), std::string::npos) << e;
  }
}

// ---- the kernel (GPU) --------------------------------------------------------------------------

TEST(CudaActKeys, FakeQuantEqualsCpuDefinitionBitForBit) {
  SKIP_WITHOUT_GPU();
  struct TypeRule {
    DType d;
    ScaleRule rule;
  };
  // BF16 under every scale rule a checkpoint may name; F16 under floor (the others refused).
  for (auto [d, rule] : {TypeRule{DType::kBF16, ScaleRule::kFloor}, TypeRule{DType::kF16, ScaleRule::kFloor},
                         TypeRule{DType::kBF16, ScaleRule::kEven}, TypeRule{DType::kBF16, ScaleRule::kEvenFp4Mantissa},
                         TypeRule{DType::kBF16, ScaleRule::kRceil}})
    for (ActKey key : kMxKeys)
      for (auto [rows, k] : {std::pair<int64_t, int64_t>{1, 32}, {7, 96}, {33, 2880}, {256, 4096}}) {
        ElemType elem = ElemType::kE2M1;
        ASSERT_TRUE(act_key_mx_elem(key, &elem));
        const std::vector<uint16_t> x = nasty_rows(d, rows, k, uint32_t(rows * 31 + k), true);
        const std::vector<uint16_t> want = cpu_fake_quant(key, x, d, rows, k, rule);
        const std::string what = std::string(act_key_name(key)) + " " + dtype_name(d) + " " +
                                 scale_rule_name(rule) + " [" + std::to_string(rows) + ", " +
                                 std::to_string(k) + "]";
        // Aligned (vector path), into a separate buffer.
        Dev<uint16_t> dx(x), dy(x.size());
        ASSERT_TRUE(cuda::mx_fake_quant(elem, dx.p, d, rows, k, dy.p, nullptr, rule).ok()) << what;
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT_EQ(dy.get(), want) << what << " (aligned)";
        // In place.
        ASSERT_TRUE(cuda::mx_fake_quant(elem, dx.p, d, rows, k, dx.p, nullptr, rule).ok()) << what;
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT_EQ(dx.get(), want) << what << " (in place)";
        // Misaligned by one element (scalar path).
        std::vector<uint16_t> shifted(x.size() + 1, 0);
        std::memcpy(shifted.data() + 1, x.data(), x.size() * 2);
        Dev<uint16_t> sx(shifted), sy(shifted.size());
        ASSERT_TRUE(cuda::mx_fake_quant(elem, sx.p + 1, d, rows, k, sy.p + 1, nullptr, rule).ok()) << what;
        CUDA_OK(cudaDeviceSynchronize());
        std::vector<uint16_t> got = sy.get();
        got.erase(got.begin());
        EXPECT_EQ(got, want) << what << " (misaligned)";
      }
}

TEST(CudaActKeys, FakeQuantRejectsBadArguments) {
  // Argument errors are reported before anything is launched: no GPU needed.
  EXPECT_FALSE(cuda::mx_fake_quant(ElemType::kE5M2, nullptr, DType::kBF16, 1, 32, nullptr, nullptr).ok());
  EXPECT_FALSE(cuda::mx_fake_quant(ElemType::kE2M1, nullptr, DType::kF32, 1, 32, nullptr, nullptr).ok());
  const Status s = cuda::mx_fake_quant(ElemType::kE2M1, nullptr, DType::kBF16, 1, 48, nullptr, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("48"), std::string::npos) << s.message();
  // F16 with a rule other than floor is not exact in F16's top binade: refused.
  const Status h = cuda::mx_fake_quant(ElemType::kE2M1, nullptr, DType::kF16, 1, 32, nullptr, nullptr,
                                       ScaleRule::kEven);
  EXPECT_FALSE(h.ok());
  EXPECT_NE(h.message().find("F16"), std::string::npos) << h.message();
  cuda::StreamBuffer tmp(nullptr);
  const void* op = nullptr;
  const Status f = cuda::act_operand(ActKey::kFP8StaticTensor, ScaleRule::kFloor, nullptr, DType::kBF16, 1, 32, tmp, &op, nullptr);
  EXPECT_FALSE(f.ok());
  EXPECT_NE(f.message().find("fp8-static-tensor"), std::string::npos) << f.message();
}

// The FP8 keys' operand: decode(code) in 16 bits with the scale apart; times the scale it must
// give the CPU reference's decode(code) * s bit for bit (the same FP32 product).
TEST(CudaActKeys, Fp8OperandTimesScaleEqualsCpuDefinition) {
  SKIP_WITHOUT_GPU();
  // (K % 8 == 0 takes the kernel's 8-elements-per-step path, 100 the one-element path; 8192 and
  // 16392 run several steps per thread with a partial last one.)
  for (ActKey key : {ActKey::kFP8StaticTensor, ActKey::kFP8DynamicToken})
    for (auto [rows, k] : {std::pair<int64_t, int64_t>{1, 32}, {9, 2880}, {130, 512}, {1, 8192},
                           {3, 16392}, {5, 100}}) {
      std::vector<uint16_t> x = nasty_rows(DType::kBF16, rows, k, uint32_t(rows + k), false);
      // Scale the rows to magnitudes an FP8 static scale is calibrated for, with outliers.
      std::mt19937 g(static_cast<uint32_t>(k));
      std::normal_distribution<float> nd;
      for (auto& v : x) v = num::f32_to_bf16(nd(g) * std::ldexp(1.0f, int(g() % 12) - 6));
      if (rows > 1) {
        x[size_t(k + 3)] = 0x7FC0;  // a NaN in row 1
        x[size_t(rows - 1) * size_t(k)] = 0xFF80;  // -Inf in the last row
        std::fill(x.begin() + 2 * k, x.begin() + 3 * k, uint16_t(0));  // an all-zero row 2
      }
      const float input_scale = 0.0371f;
      std::vector<float> want;
      ASSERT_TRUE(cpu::act_quantize(key, {x.data(), DType::kBF16, rows, k}, input_scale, want).ok());
      Dev<uint16_t> dx(x), dq(x.size());
      Dev<float> ds(static_cast<size_t>(rows));
      const bool per_row = key == ActKey::kFP8DynamicToken;
      ASSERT_TRUE(cuda::fp8_act_quant(dx.p, DType::kBF16, rows, k, per_row, input_scale, dq.p,
                                      per_row ? ds.p : nullptr, nullptr).ok());
      CUDA_OK(cudaDeviceSynchronize());
      const std::vector<uint16_t> q = dq.get();
      const std::vector<float> rs = ds.get();
      for (int64_t r = 0; r < rows; ++r) {
        if (per_row) {
          float amax = 0;
          bool finite = true;
          for (int64_t c = 0; c < k; ++c) {
            const float v = num::bf16_to_f32(x[size_t(r * k + c)]);
            finite = finite && std::isfinite(v);
            amax = std::fmax(amax, std::fabs(v));
          }
          if (finite) {
            ASSERT_EQ(rs[size_t(r)], amax == 0 ? 1.0f : amax / 448.0f) << "row " << r;
          }
        }
        const float sc = per_row ? rs[size_t(r)] : input_scale;
        for (int64_t c = 0; c < k; ++c) {
          const size_t i = size_t(r * k + c);
          const float got = num::bf16_to_f32(q[i]) * sc;
          if (std::isnan(want[i])) {
            ASSERT_TRUE(std::isnan(got)) << act_key_name(key) << " row " << r << " col " << c;
          } else {
            ASSERT_EQ(num::f32_bits(got), num::f32_bits(want[i]))
                << act_key_name(key) << " row " << r << " col " << c << ": " << got << " vs " << want[i];
          }
        }
      }
    }
}

// fp8-dynamic-tensor's operand (fp8_operand: the device amax over the whole x, then the same
// quantize as the static key with that scale): every row scale entry is the tensor's one scale
// amax / 448 (bit for bit the host's), and decode(code) * s equals the CPU definition bit for
// bit; a NaN or Inf anywhere makes every value NaN; an all-zero tensor gives s = 1 and zeros.
// Shapes span one partial-amax CTA to many (the amax anywhere in the tensor, also in the last
// partial's tail), BF16 and F16, eager and captured in a CUDA graph (same bits).
TEST(CudaActKeys, Fp8TensorOperandTimesScaleEqualsCpuDefinition) {
  SKIP_WITHOUT_GPU();
  for (DType d : {DType::kBF16, DType::kF16})
    for (bool graph : {false, true})
      for (auto [rows, k] : {std::pair<int64_t, int64_t>{1, 32}, {9, 2880}, {130, 512}, {1500, 1024}})
        for (int variant = 0; variant < 3; ++variant) {  // 0: finite, 1: a NaN / Inf, 2: zeros
          std::mt19937 g(uint32_t(rows * 31 + k + variant));
          std::normal_distribution<float> nd;
          std::vector<uint16_t> x(size_t(rows * k));
          for (auto& v : x) v = to16(nd(g) * std::ldexp(1.0f, int(g() % 8) - 4), d);
          const size_t big = size_t(g() % uint32_t(x.size() - 1));  // the amax, anywhere but last
          x[big] = to16(-300.0f, d);
          x.back() = to16(250.0f, d);  // the tail of the last partial
          if (variant == 1) x[size_t(g() % uint32_t(x.size()))] = (g() & 1) ? (d == DType::kBF16 ? 0x7FC0 : 0x7E00)
                                                                            : (d == DType::kBF16 ? 0xFF80 : 0xFC00);
          if (variant == 2) std::fill(x.begin(), x.end(), uint16_t(0x8000));  // -0 everywhere
          std::vector<float> want;
          ASSERT_TRUE(cpu::act_quantize(ActKey::kFP8DynamicTensor, {x.data(), d, rows, k}, 1.0f, want).ok());
          float amax = 0.0f;
          bool finite = true;
          for (uint16_t v16 : x) {
            const float v = d == DType::kBF16 ? num::bf16_to_f32(v16) : num::f16_to_f32(v16);
            finite = finite && std::isfinite(v);
            amax = std::fmax(amax, std::fabs(v));
          }
          const float s_want = !finite || amax == 0.0f ? 1.0f : amax / 448.0f;
          Dev<uint16_t> dx(x), dq(x.size());
          Dev<float> drs(static_cast<size_t>(rows));
          bool ran = false;
          testing::run_on_stream(graph, [&](cudaStream_t s) {
            cuda::StreamBuffer tmp(s), scales(s);
            const void* op = nullptr;
            const float* row_scale = nullptr;
            const Status st = cuda::fp8_operand(ActKey::kFP8DynamicTensor, dx.p, d, rows, k, 1.0f,
                                                tmp, scales, &op, &row_scale, s);
            EXPECT_TRUE(st.ok()) << st.to_string();
            EXPECT_NE(row_scale, nullptr);
            if (!st.ok() || row_scale == nullptr) return;
            EXPECT_EQ(cudaMemcpyAsync(dq.p, op, x.size() * 2, cudaMemcpyDeviceToDevice, s), cudaSuccess);
            EXPECT_EQ(cudaMemcpyAsync(drs.p, row_scale, size_t(rows) * sizeof(float),
                                      cudaMemcpyDeviceToDevice, s), cudaSuccess);
            ran = true;
          });
          ASSERT_TRUE(ran);
          const std::vector<float> rs = drs.get();
          const std::vector<uint16_t> q = dq.get();
          const std::string what = std::string(dtype_name(d)) + (graph ? " graph" : " eager") +
                                   " [" + std::to_string(rows) + ", " + std::to_string(k) +
                                   "] variant " + std::to_string(variant);
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(num::f32_bits(rs[size_t(r)]), num::f32_bits(s_want)) << what << " row " << r;
          for (size_t i = 0; i < x.size(); ++i) {
            const float dec = d == DType::kBF16 ? num::bf16_to_f32(q[i]) : num::f16_to_f32(q[i]);
            const float got = dec * rs[i / size_t(k)];
            if (std::isnan(want[i])) {
              ASSERT_TRUE(std::isnan(got)) << what << " at " << i;
            } else {
              ASSERT_EQ(num::f32_bits(got), num::f32_bits(want[i])) << what << " at " << i << ": " << got << " vs " << want[i];
            }
          }
          if (variant == 0) {  // the amax element is the code 448 (times s: within an FP32 ulp)
            const float dec = d == DType::kBF16 ? num::bf16_to_f32(q[big]) : num::f16_to_f32(q[big]);
            EXPECT_EQ(dec, -448.0f) << what;
          }
        }
  // The per-tensor key has no row-by-row form: fp8_act_quant's API is the static / per-row one,
  // and act_operand refuses every FP8 key.
  cuda::StreamBuffer tmp(nullptr);
  const void* op = nullptr;
  const Status f = cuda::act_operand(ActKey::kFP8DynamicTensor, ScaleRule::kFloor, nullptr, DType::kBF16, 1, 32, tmp, &op, nullptr);
  EXPECT_FALSE(f.ok());
  EXPECT_NE(f.message().find("fp8-dynamic-tensor"), std::string::npos) << f.message();
}

// fp8-dynamic-group128's operand (fp8_group_operand): the scale of every (row, 128-group) bit
// for bit the host's amax / 448, and decode(code) * s equal to the CPU definition bit for bit;
// a NaN or Inf makes its group (only) NaN with s = 1; an all-zero group s = 1 and zeros.
// K from one short group to many with a short last one (2880 = 22 x 128 + 64, 100: not a
// multiple of 32, which the quantizer allows), BF16 and F16, eager and in a CUDA graph.
TEST(CudaActKeys, Fp8GroupOperandTimesScaleEqualsCpuDefinition) {
  SKIP_WITHOUT_GPU();
  for (DType d : {DType::kBF16, DType::kF16})
    for (bool graph : {false, true})
      for (auto [rows, k] : {std::pair<int64_t, int64_t>{1, 32}, {1, 8192}, {9, 2880}, {130, 512},
                             {3, 100}, {700, 384}}) {
        std::mt19937 g(uint32_t(rows * 17 + k));
        std::normal_distribution<float> nd;
        std::vector<uint16_t> x(size_t(rows * k));
        for (size_t i = 0; i < x.size(); ++i)  // each 32-block its own magnitude
          x[i] = to16(nd(g) * std::ldexp(1.0f, int((i / 32 * 7) % 12) - 6), d);
        const int64_t groups = (k + 127) / 128;
        if (rows > 1) {
          x[size_t(k + 5)] = d == DType::kBF16 ? 0x7FC0 : 0x7E00;  // NaN: row 1, group 0
          x[size_t((rows - 1) * k + k - 1)] = d == DType::kBF16 ? 0xFF80 : 0xFC00;  // -Inf, last group
          std::fill(x.begin() + 2 * k, x.begin() + 2 * k + std::min<int64_t>(k, 128), uint16_t(0x8000));
        }
        std::vector<float> want;
        ASSERT_TRUE(cpu::act_quantize(ActKey::kFP8DynamicGroup128, {x.data(), d, rows, k}, 1.0f, want).ok());
        Dev<uint16_t> dx(x), dq(x.size());
        Dev<float> dgs(static_cast<size_t>(rows * groups));
        bool ran = false;
        testing::run_on_stream(graph, [&](cudaStream_t s) {
          cuda::StreamBuffer tmp(s), scales(s);
          const void* op = nullptr;
          const float* gs = nullptr;
          const Status st = cuda::fp8_group_operand(dx.p, d, rows, k, tmp, scales, &op, &gs, s);
          EXPECT_TRUE(st.ok()) << st.to_string();
          if (!st.ok()) return;
          EXPECT_EQ(cudaMemcpyAsync(dq.p, op, x.size() * 2, cudaMemcpyDeviceToDevice, s), cudaSuccess);
          EXPECT_EQ(cudaMemcpyAsync(dgs.p, gs, size_t(rows * groups) * sizeof(float),
                                    cudaMemcpyDeviceToDevice, s), cudaSuccess);
          ran = true;
        });
        ASSERT_TRUE(ran);
        const std::vector<uint16_t> q = dq.get();
        const std::vector<float> gs = dgs.get();
        const std::string what = std::string(dtype_name(d)) + (graph ? " graph" : " eager") + " [" +
                                 std::to_string(rows) + ", " + std::to_string(k) + "]";
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t gi = 0; gi < groups; ++gi) {
            float amax = 0.0f;
            bool finite = true;
            for (int64_t c = gi * 128; c < std::min(k, gi * 128 + 128); ++c) {
              const uint16_t v16 = x[size_t(r * k + c)];
              const float v = d == DType::kBF16 ? num::bf16_to_f32(v16) : num::f16_to_f32(v16);
              finite = finite && std::isfinite(v);
              amax = std::fmax(amax, std::fabs(v));
            }
            const float s_want = !finite || amax == 0.0f ? 1.0f : amax / 448.0f;
            ASSERT_EQ(num::f32_bits(gs[size_t(r * groups + gi)]), num::f32_bits(s_want))
                << what << " row " << r << " group " << gi;
            for (int64_t c = gi * 128; c < std::min(k, gi * 128 + 128); ++c) {
              const size_t i = size_t(r * k + c);
              const float dec = d == DType::kBF16 ? num::bf16_to_f32(q[i]) : num::f16_to_f32(q[i]);
              const float got = dec * s_want;
              if (std::isnan(want[i])) {
                ASSERT_TRUE(std::isnan(got)) << what << " row " << r << " col " << c;
              } else {
                ASSERT_EQ(num::f32_bits(got), num::f32_bits(want[i]))
                    << what << " row " << r << " col " << c << ": " << got << " vs " << want[i];
              }
            }
          }
        if (rows > 1 && k > 128) {  // the NaN stays in its group
          ASSERT_FALSE(std::isnan(want[size_t(k + 128)])) << what;
        }
        // The FP8 tensor cores' form (fp8_group_act_quant_codes): the codes of the same values
        // (0x7F where they are NaN) in rows of ld bytes, bytes past K untouched, the same scales.
        if (!graph) {
          const int64_t ld = (k + 15) / 16 * 16 + 16;
          Dev<uint8_t> dc(std::vector<uint8_t>(size_t(rows * ld), 0xA5));
          Dev<float> dcs(static_cast<size_t>(rows * groups));
          ASSERT_TRUE(cuda::fp8_group_act_quant_codes(dx.p, d, rows, k, dc.p, ld, dcs.p, nullptr).ok());
          CUDA_OK(cudaDeviceSynchronize());
          const std::vector<uint8_t> codes = dc.get();
          const std::vector<float> cs = dcs.get();
          for (size_t i = 0; i < cs.size(); ++i)
            ASSERT_EQ(num::f32_bits(cs[i]), num::f32_bits(gs[i])) << what << " codes' scale " << i;
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < ld; ++c) {
              const uint8_t code = codes[size_t(r * ld + c)];
              if (c >= k) {
                ASSERT_EQ(code, 0xA5) << what << " row " << r << " byte " << c << " past K";
                continue;
              }
              const uint16_t v16 = q[size_t(r * k + c)];
              const float dec = d == DType::kBF16 ? num::bf16_to_f32(v16) : num::f16_to_f32(v16);
              if (std::isnan(dec)) {
                ASSERT_EQ(code, 0x7F) << what << " row " << r << " col " << c;
              } else {
                ASSERT_EQ(num::f32_bits(num::decode_elem(ElemType::kE4M3, code)), num::f32_bits(dec))
                    << what << " row " << r << " col " << c;
              }
            }
        }
      }
  // fp8_operand (the per-row API) refuses the group key, naming the function that runs it.
  cuda::StreamBuffer tmp(nullptr), sc(nullptr);
  const void* op = nullptr;
  const float* rs = nullptr;
  const Status f = cuda::fp8_operand(ActKey::kFP8DynamicGroup128, nullptr, DType::kBF16, 1, 128,
                                     1.0f, tmp, sc, &op, &rs, nullptr);
  EXPECT_FALSE(f.ok());
  EXPECT_NE(f.message().find("fp8_group_operand"), std::string::npos) << f.message();
}

// The FP8 tensor-core operand (fp8_act_quant_codes): the E4M3 codes themselves, in rows of
// ld bytes, whose decode is fp8_act_quant's 16-bit value bit for bit (so the codes are the
// reference's, by the test above) with the same row scales; columns past k untouched; NaN rows
// the NaN code.
TEST(CudaActKeys, Fp8CodesAreTheOperandsCodes) {
  SKIP_WITHOUT_GPU();
  for (DType d : {DType::kBF16, DType::kF16})
    for (bool per_row : {false, true})
      for (auto [rows, k] : {std::pair<int64_t, int64_t>{1, 32}, {9, 2880}, {130, 500},
                             {2, 8200}}) {
        std::vector<uint16_t> x = nasty_rows(d, rows, k, uint32_t(rows * 7 + k), false);
        if (rows > 1) x[size_t(k + 3)] = d == DType::kBF16 ? 0x7FC0 : 0x7E00;  // NaN in row 1
        const int64_t ld = (k + 15) / 16 * 16 + 16;
        Dev<uint16_t> dx(x), dq(x.size());
        Dev<uint8_t> dc(std::vector<uint8_t>(size_t(rows * ld), 0xA5));
        Dev<float> ds{static_cast<size_t>(rows)}, ds2{static_cast<size_t>(rows)};
        const float input_scale = 0.0371f;
        ASSERT_TRUE(cuda::fp8_act_quant(dx.p, d, rows, k, per_row, input_scale, dq.p,
                                        per_row ? ds.p : nullptr, nullptr).ok());
        ASSERT_TRUE(cuda::fp8_act_quant_codes(dx.p, d, rows, k, per_row, input_scale, dc.p, ld,
                                              per_row ? ds2.p : nullptr, nullptr).ok());
        CUDA_OK(cudaDeviceSynchronize());
        const std::vector<uint16_t> q = dq.get();
        const std::vector<uint8_t> c = dc.get();
        if (per_row) {
          const std::vector<float> a = ds.get(), b = ds2.get();
          for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(num::f32_bits(a[size_t(r)]), num::f32_bits(b[size_t(r)]));
        }
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < ld; ++j) {
            const uint8_t code = c[size_t(r * ld + j)];
            if (j >= k) {
              ASSERT_EQ(code, 0xA5) << "row " << r << " col " << j << " past k was written";
              continue;
            }
            const uint16_t v16 = q[size_t(r * k + j)];
            const float want = d == DType::kBF16 ? num::bf16_to_f32(v16) : num::f16_to_f32(v16);
            const float got = num::decode_elem(ElemType::kE4M3, code);
            if (std::isnan(want)) {
              ASSERT_EQ(code & 0x7F, 0x7F) << "row " << r << " col " << j;
            } else {
              ASSERT_EQ(num::f32_bits(got), num::f32_bits(want)) << "row " << r << " col " << j;
            }
          }
      }
  Dev<uint16_t> dx(std::vector<uint16_t>(64, 0));
  Dev<uint8_t> dc(std::vector<uint8_t>(64, 0));
  const Status bad = cuda::fp8_act_quant_codes(dx.p, DType::kBF16, 2, 32, false, 1.0f, dc.p, 16,
                                               nullptr, nullptr);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("ld 16"), std::string::npos) << bad.message();
}

// cuda-mma linear under the FP8 keys against cpu-reference: with F32 output to FP32 precision
// (the scale kept apart from the codes costs at most half an FP32 ulp per element; the group
// key's scales applied per 32-block inside the GEMM), and with BF16 output at the shared cases'
// tolerance; and clearly different from the bf16 key. K = 1056 / 2880: a short last group.
TEST(CudaActKeys, Fp8LinearMatchesReferenceToFp32Precision) {
  SKIP_WITHOUT_GPU();
  const Backend* b = find_backend("cuda-mma");
  const Backend* ref = find_backend("cpu-reference");
  ASSERT_TRUE(b != nullptr && ref != nullptr);
  if (Verdict v = b->supports(this_device()); !v) {
    std::printf("[ SKIPPED  ] cuda-mma: %s\n", v.reason.c_str());
    GTEST_SKIP() << v.reason;
  }
  for (ElemType w : bf16_compiled_weights())
    for (ActKey key : {ActKey::kFP8StaticTensor, ActKey::kFP8DynamicToken, ActKey::kFP8DynamicTensor,
                       ActKey::kFP8DynamicGroup128})
      for (DType out : {DType::kF32, DType::kBF16})
        for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 128}, {33, 256, 2880},
                               {70, 128, 1056}}) {
          const testing::Weights wt = testing::random_weights(w, 1, n, k, uint32_t(n * 3 + k), 115, 130);
          std::vector<float> bias(static_cast<size_t>(n));
          for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.25f * float(int(i % 9) - 4);
          const LinearWeights lw{wt.view, {bias.data(), DType::kF32, 1, n}, 0.0213f};
          Problem p = Problem::linear(w, key, m, n, k, true);
          p.out = out;
          std::vector<uint16_t> x(size_t(m * k));
          std::mt19937 g(uint32_t(m + n));
          std::normal_distribution<float> nd;
          for (size_t i = 0; i < x.size(); ++i)  // (group key: 128-groups at several magnitudes)
            x[i] = num::f32_to_bf16(nd(g) * (key != ActKey::kFP8DynamicGroup128
                                                 ? 2.0f
                                                 : std::ldexp(2.0f, int((i % size_t(k)) / 128 % 5) * 2 - 4)));
          const size_t yb = size_t(m * n) * size_t(dtype_bytes(out));
          std::vector<uint8_t> want(yb), got(yb), got16(yb);
          auto rp = ref->prepare_linear(p, lw);
          ASSERT_TRUE(rp.ok()) << rp.status().to_string();
          ASSERT_TRUE(ref->run_linear(p, *rp.value(), {x.data(), DType::kBF16, m, k}, {want.data(), out, m, n}).ok());
          auto gp = b->prepare_linear(p, lw);
          ASSERT_TRUE(gp.ok()) << gp.status().to_string();
          Dev<uint16_t> dx(x);
          Dev<uint8_t> dy(yb);
          ASSERT_TRUE(b->run_linear(p, *gp.value(), {dx.p, DType::kBF16, m, k}, {dy.p, out, m, n}, nullptr).ok());
          CUDA_OK(cudaDeviceSynchronize());
          got = dy.get();
          Problem p16 = p;
          p16.act = ActKey::kBF16;
          auto gp16 = b->prepare_linear(p16, lw);
          ASSERT_TRUE(gp16.ok());
          ASSERT_TRUE(b->run_linear(p16, *gp16.value(), {x.data(), DType::kBF16, m, k}, {got16.data(), out, m, n}, nullptr).ok());
          double se = 0, se16 = 0, ss = 0;
          for (int64_t i = 0; i < m * n; ++i) {
            const double a = num::load_dense(got.data(), out, i), r = num::load_dense(want.data(), out, i),
                         c = num::load_dense(got16.data(), out, i);
            ASSERT_TRUE(std::isfinite(a)) << i;
            se += (a - r) * (a - r);
            se16 += (c - r) * (c - r);
            ss += r * r;
          }
          const double rel = std::sqrt(se / ss), rel16 = std::sqrt(se16 / ss);
          const std::string what = std::string(mx_format_name(w)) + " x " + act_key_name(key) + " -> " +
                                   dtype_name(out) + " M=" + std::to_string(m) + " K=" + std::to_string(k);
          EXPECT_LE(rel, cases::tolerance(p)) << what;
          EXPECT_GT(rel16, 4 * rel) << what << ": bf16 activations are as close as the key";
        }
}

// ---- cuda-mma linear (GPU): bit for bit -----------------------------------------------------------

// cuda-mma's GEMM is deterministic, so the layer under an MX key must give exactly the bits of
// the same layer under bf16 fed with the CPU-quantized activations: the whole difference between
// the two is the activation quantization, and that must be the CPU's.
TEST(CudaActKeys, LinearUnderMxKeyEqualsBf16OnCpuQuantizedInput) {
  SKIP_WITHOUT_GPU();
  const Backend* b = find_backend("cuda-mma");
  ASSERT_NE(b, nullptr);
  if (Verdict v = b->supports(this_device()); !v) {
    std::printf("[ SKIPPED  ] cuda-mma: %s\n", v.reason.c_str());
    GTEST_SKIP() << v.reason;
  }
  for (ScaleRule rule : {ScaleRule::kFloor, ScaleRule::kEven})
  for (ElemType w : bf16_compiled_weights())
    for (ActKey key : kMxKeys)
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 128}, {17, 96, 2880},
                             {300, 256, 1024}}) {
        const testing::Weights wt = testing::random_weights(w, 1, n, k, uint32_t(n + k), 110, 130);
        std::vector<uint16_t> bias(static_cast<size_t>(n));
        for (size_t i = 0; i < bias.size(); ++i) bias[i] = num::f32_to_bf16(0.01f * float(i % 7));
        const LinearWeights lw{wt.view, {bias.data(), DType::kBF16, 1, n}, 1.0f};
        std::vector<uint16_t> x = nasty_rows(DType::kBF16, m, k, uint32_t(m + 5), false);
        // Keep products in a range where the output is finite: magnitudes near 1.
        std::mt19937 g(uint32_t(m * n));
        std::normal_distribution<float> nd(0.0f, 1.0f);
        for (auto& v : x) v = num::f32_to_bf16(nd(g) * std::ldexp(1.0f, int(g() % 7) - 3));
        const std::vector<uint16_t> xq = cpu_fake_quant(key, x, DType::kBF16, m, k, rule);
        Problem pk = Problem::linear(w, key, m, n, k, true), p16 = Problem::linear(w, ActKey::kBF16, m, n, k, true);
        pk.act_rule = rule;
        auto wk = b->prepare_linear(pk, lw);
        auto w16 = b->prepare_linear(p16, lw);
        ASSERT_TRUE(wk.ok()) << wk.status().to_string();
        ASSERT_TRUE(w16.ok()) << w16.status().to_string();
        Dev<uint16_t> dx(x), dxq(xq), dy(size_t(m * n)), dy16(size_t(m * n));
        ASSERT_TRUE(b->run_linear(pk, *wk.value(), {dx.p, DType::kBF16, m, k}, {dy.p, DType::kBF16, m, n}, nullptr).ok());
        ASSERT_TRUE(b->run_linear(p16, *w16.value(), {dxq.p, DType::kBF16, m, k}, {dy16.p, DType::kBF16, m, n}, nullptr).ok());
        CUDA_OK(cudaDeviceSynchronize());
        const std::string what = pk.to_string();
        EXPECT_EQ(dy.get(), dy16.get()) << what << " (device pointers)";
        // The staged host-pointer path gives the same bits.
        std::vector<uint16_t> host_y(size_t(m * n));
        ASSERT_TRUE(b->run_linear(pk, *wk.value(), {x.data(), DType::kBF16, m, k},
                                  {host_y.data(), DType::kBF16, m, n}, nullptr).ok());
        EXPECT_EQ(host_y, dy16.get()) << what << " (host pointers)";
        // And the key changes the result (the test would catch a dropped quantization).
        Dev<uint16_t> dyraw(size_t(m * n));
        ASSERT_TRUE(b->run_linear(p16, *w16.value(), {dx.p, DType::kBF16, m, k}, {dyraw.p, DType::kBF16, m, n}, nullptr).ok());
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT_NE(dyraw.get(), dy16.get()) << what;
      }
}

// The MX key's quantized copy of x comes from the stream-ordered allocator: the layer can be
// captured into a CUDA graph and replays to the eager bits.
TEST(CudaActKeys, MxKeyLinearCapturedInACudaGraphGivesTheEagerBits) {
  SKIP_WITHOUT_GPU();
  const Backend* b = find_backend("cuda-mma");
  ASSERT_NE(b, nullptr);
  if (Verdict v = b->supports(this_device()); !v) {
    std::printf("[ SKIPPED  ] cuda-mma: %s\n", v.reason.c_str());
    GTEST_SKIP() << v.reason;
  }
  const int64_t m = 8, n = 256, k = 1024;
  const testing::Weights wt = testing::random_weights(ElemType::kE2M1, 1, n, k, 21, 115, 130);
  const LinearWeights lw{wt.view, {}, 1.0f};
  const Problem p = Problem::linear(ElemType::kE2M1, ActKey::kMXFP4Dynamic, m, n, k);
  auto pw = b->prepare_linear(p, lw);
  ASSERT_TRUE(pw.ok()) << pw.status().to_string();
  std::vector<uint16_t> x(size_t(m * k));
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = num::f32_to_bf16(nd(g));
  Dev<uint16_t> dx(x), y1(size_t(m * n)), y2(size_t(m * n));
  ASSERT_TRUE(b->run_linear(p, *pw.value(), {dx.p, DType::kBF16, m, k}, {y1.p, DType::kBF16, m, n}, nullptr).ok());
  CUDA_OK(cudaDeviceSynchronize());
  cudaStream_t s;
  CUDA_OK(cudaStreamCreate(&s));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  const Status st = b->run_linear(p, *pw.value(), {dx.p, DType::kBF16, m, k}, {y2.p, DType::kBF16, m, n}, s);
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  ASSERT_TRUE(st.ok()) << st.to_string();
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT_EQ(y1.get(), y2.get());
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

// ---- cuda-mma MoE (GPU): against cpu-reference ----------------------------------------------------

TEST(CudaActKeys, MoEUnderMxKeysMatchesReference) {
  SKIP_WITHOUT_GPU();
  const Backend* b = find_backend("cuda-mma");
  const Backend* ref = find_backend("cpu-reference");
  ASSERT_TRUE(b != nullptr && ref != nullptr);
  if (Verdict v = b->supports(this_device()); !v) {
    std::printf("[ SKIPPED  ] cuda-mma: %s\n", v.reason.c_str());
    GTEST_SKIP() << v.reason;
  }
  const int64_t m = 40, h = 256, inter = 128, e = 8, topk = 2;
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (bool gptoss : {false, true})
    for (ActKey key : kMxKeys) {
      Problem p = Problem::moe_problem(ElemType::kE2M1, key, m, h, inter, e, topk);
      if (gptoss) {
        p.bias = true;
        p.moe.layout = io::GateUpLayout::kInterleaved;
        p.moe.activation = MoEActivation::kSwigluOAI;
        p.moe.routing = Routing::kTopKSoftmax;
      }
      std::vector<float> w13f(size_t(e * 2 * inter * h)), w2f(size_t(e * h * inter));
      for (auto& v : w13f) v = nd(g) * 0.05f;
      for (auto& v : w2f) v = nd(g) * 0.05f;
      QuantOptions o;
      MXMatrix q13 = quantize(w13f, e * 2 * inter, h, o).value(), q2 = quantize(w2f, e * h, inter, o).value();
      std::vector<uint16_t> b13(size_t(e * 2 * inter)), b2(size_t(e * h));
      for (auto& v : b13) v = num::f32_to_bf16(nd(g) * 0.1f);
      for (auto& v : b2) v = num::f32_to_bf16(nd(g) * 0.1f);
      MoEWeights mw;
      mw.w13 = {ElemType::kE2M1, e, 2 * inter, h, q13.packed.data(), q13.scales.data()};
      mw.w2 = {ElemType::kE2M1, e, h, inter, q2.packed.data(), q2.scales.data()};
      if (p.bias) {
        mw.bias13 = {b13.data(), DType::kBF16, e, 2 * inter};
        mw.bias2 = {b2.data(), DType::kBF16, e, h};
      }
      std::vector<uint16_t> x(size_t(m * h));
      for (auto& v : x) v = num::f32_to_bf16(nd(g));
      std::vector<float> logits(size_t(m * e));
      for (auto& l : logits) l = nd(g) * 2.0f;
      const MoERouting rt{{logits.data(), DType::kF32, m, e}, {}, nullptr};
      std::vector<uint16_t> want(size_t(m * h)), got(size_t(m * h)), got16(size_t(m * h));
      auto rp = ref->prepare_moe(p, mw);
      ASSERT_TRUE(rp.ok()) << rp.status().to_string();
      ASSERT_TRUE(ref->run_moe(p, *rp.value(), {x.data(), DType::kBF16, m, h}, rt, {want.data(), DType::kBF16, m, h}).ok());
      auto gp = b->prepare_moe(p, mw);
      ASSERT_TRUE(gp.ok()) << gp.status().to_string();
      ASSERT_TRUE(b->run_moe(p, *gp.value(), {x.data(), DType::kBF16, m, h}, rt, {got.data(), DType::kBF16, m, h}).ok());
      Problem p16 = p;
      p16.act = ActKey::kBF16;
      auto gp16 = b->prepare_moe(p16, mw);
      ASSERT_TRUE(gp16.ok());
      ASSERT_TRUE(b->run_moe(p16, *gp16.value(), {x.data(), DType::kBF16, m, h}, rt, {got16.data(), DType::kBF16, m, h}).ok());
      double se = 0, ss = 0, se16 = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        const double a = num::bf16_to_f32(got[i]), r = num::bf16_to_f32(want[i]),
                     c = num::bf16_to_f32(got16[i]);
        ASSERT_TRUE(std::isfinite(a)) << i;
        se += (a - r) * (a - r);
        se16 += (c - r) * (c - r);
        ss += r * r;
      }
      const double rel = std::sqrt(se / ss), rel16 = std::sqrt(se16 / ss);
      // The tolerance of tests/cases for MX keys in MoE (intermediate rounding may move a block
      // to another quantization step); the bf16 run must be clearly further away, or the key
      // would not be doing anything.
      const double tol = cases::tolerance(p);
      EXPECT_LE(rel, tol) << act_key_name(key) << (gptoss ? " gpt-oss" : " qwen");
      EXPECT_GT(rel16, 2 * rel) << act_key_name(key) << ": bf16 activations are as close as the key";
      std::printf("moe %s %s: rel %.3g (bf16 activations: %.3g)\n", gptoss ? "gpt-oss" : "qwen",
                  act_key_name(key), rel, rel16);
    }
}

}  // namespace
}  // namespace mxq
