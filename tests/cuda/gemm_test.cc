// cuda-mma on the GPU: the repack kernel against its CPU definition, and the GEMM through the
// backend against cpu-reference with device pointers, poisoned outputs, extreme E8M0 scales,
// FP16 activations, every token-block size, and CUDA-graph capture. (The shared case list in
// tests/cases runs cuda-mma on every case it can implement as well, through host pointers.)
// Skipped with a printed reason when no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/reference/reference_backend.h"
#include "cuda/gemm/frag_layout.h"
#include "cuda/gemm/mx_gemm.h"
#include "cuda/gemm/repack.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"
#include "mxq/select.h"
#include "gpu_test_util.h"
#include "test_weights.h"
#include "tolerance.h"  // tests/cases: the named tolerances against cpu-reference

namespace mxq {
namespace {


using testing::Dev;
using testing::random_weights;
using testing::Weights;

TEST(CudaRepack, GpuEqualsCpuDefinition) {
  SKIP_WITHOUT_GPU();
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3})
    for (auto [batch, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 16, 32}, {3, 48, 96},
                               {2, 64, 2880}}) {
      Weights w = random_weights(e, batch, n, k, uint32_t(k + n), 0, 255);
      const cuda::FragLayout l{e, batch, n, k};
      std::vector<uint8_t> want_p(l.packed_bytes()), want_s(l.scale_bytes());
      cuda::repack_frag_cpu(w.view, want_p.data(), want_s.data());
      Dev<uint8_t> dp(w.packed), ds(w.scales), op(l.packed_bytes()), os(l.scale_bytes());
      Dev<cuda::RepackStats> stats(std::vector<cuda::RepackStats>(1));
      MXWeightView dv = w.view;
      dv.packed = dp.p;
      dv.scales = ds.p;
      ASSERT_TRUE(cuda::repack_frag(dv, op.p, os.p, stats.p, nullptr).ok());
      CUDA_OK(cudaDeviceSynchronize());
      EXPECT_EQ(op.get(), want_p) << elem_type_name(e) << " " << batch << "x" << n << "x" << k;
      EXPECT_EQ(os.get(), want_s);
      const cuda::RepackStats st = stats.get()[0];
      EXPECT_EQ(st.nan, 0);
      int lo = 255, hi = 0;
      for (uint8_t c : w.scales) {
        lo = std::min<int>(lo, c);
        hi = std::max<int>(hi, c);
      }
      if (k % 64 != 0) hi = std::max(hi, 127), lo = std::min(lo, 127);  // padded blocks
      EXPECT_EQ(st.scale_min, lo);
      EXPECT_EQ(st.scale_max, hi);
    }
}

TEST(CudaRepack, FlagsE4M3NaNCodes) {
  SKIP_WITHOUT_GPU();
  Weights w = random_weights(ElemType::kE4M3, 1, 16, 64, 7, 127, 127);
  w.packed[100] = 0xFF;
  const cuda::FragLayout l{ElemType::kE4M3, 1, 16, 64};
  Dev<uint8_t> dp(w.packed), ds(w.scales), op(l.packed_bytes()), os(l.scale_bytes());
  Dev<cuda::RepackStats> stats(std::vector<cuda::RepackStats>(1));
  MXWeightView dv = w.view;
  dv.packed = dp.p;
  dv.scales = ds.p;
  ASSERT_TRUE(cuda::repack_frag(dv, op.p, os.p, stats.p, nullptr).ok());
  EXPECT_EQ(stats.get()[0].nan, 1);
  // ...and the backend refuses such weights with a message that says why.
  const Backend* b = find_backend("cuda-mma");
  ASSERT_NE(b, nullptr);
  const Problem p = Problem::linear(ElemType::kE4M3, ActKey::kBF16, 1, 16, 64);
  auto prep = b->prepare_linear(p, {w.view, {}, 1.0f});
  ASSERT_FALSE(prep.ok());
  EXPECT_NE(prep.status().message().find("NaN"), std::string::npos) << prep.status().message();
}

// Runs cuda-mma with device pointers on a poisoned output and compares with cpu-reference, at
// the named tolerance of tests/cases/tolerance.h (the shared cases' table).
void check_gemm(ElemType e, ActKey act, DType out, int64_t m, int64_t n, int64_t k, bool bias,
                int smin, int smax) {
  const Problem p = [&] {
    Problem q = Problem::linear(e, act, m, n, k, bias);
    q.out = out;
    return q;
  }();
  const std::string what = p.to_string() + " scales [" + std::to_string(smin) + ", " +
                           std::to_string(smax) + "]";
  Weights w = random_weights(e, 1, n, k, uint32_t(m * 7 + n * 3 + k), smin, smax);
  std::mt19937 g(uint32_t(m + n + k));
  std::normal_distribution<float> nd;
  const DType xd = act_input_dtype(act);
  std::vector<uint16_t> x(size_t(m * k));
  std::vector<uint16_t> bvec(static_cast<size_t>(n));
  for (auto& v : x) v = xd == DType::kBF16 ? num::f32_to_bf16(nd(g)) : num::f32_to_f16(nd(g));
  for (auto& v : bvec) v = num::f32_to_bf16(0.1f * nd(g));
  const LinearWeights lw{w.view, {bias ? bvec.data() : nullptr, DType::kBF16, 1, n}, 1.0f};

  const size_t ybytes = size_t(m * n * dtype_bytes(out));
  std::vector<uint8_t> want(ybytes);
  ASSERT_TRUE(cpu::reference_linear(p, lw, {x.data(), xd, m, k}, {want.data(), out, m, n}).ok());

  const Backend* b = find_backend("cuda-mma");
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->can_implement(p)) << b->can_implement(p).reason;
  auto prep = b->prepare_linear(p, lw);
  ASSERT_TRUE(prep.ok()) << prep.status().to_string();
  Dev<uint16_t> dx(x);
  Dev<uint8_t> dy(ybytes);
  CUDA_OK(cudaMemset(dy.p, 0xFF, ybytes));  // NaN in every output dtype
  ASSERT_TRUE(b->run_linear(p, *prep.value(), {dx.p, xd, m, k}, {dy.p, out, m, n}).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> got = dy.get();
  double se = 0, ss = 0;
  for (int64_t i = 0; i < m * n; ++i) {
    const double a = num::load_dense(got.data(), out, i), r = num::load_dense(want.data(), out, i);
    ASSERT_TRUE(std::isfinite(a)) << what << ": output " << i << " not written or not finite";
    se += (a - r) * (a - r);
    ss += r * r;
  }
  EXPECT_LE(std::sqrt(se / std::max(ss, 1e-300)), cases::tolerance(p)) << what;
}

TEST(CudaMmaGemm, EveryTokenBlockSizeFormatAndDtype) {
  SKIP_WITHOUT_GPU();
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3})
    for (ActKey a : {ActKey::kBF16, ActKey::kFP16})
      for (int64_t m : {1, 5, 8, 9, 16, 31, 64, 65, 130}) {
        const DType xd = act_input_dtype(a);
        check_gemm(e, a, xd, m, 96, 2880, m % 2 == 1, 112, 124);
        check_gemm(e, a, DType::kF32, m, 48, 160, true, 112, 130);
      }
}

TEST(CudaMmaGemm, LargeMSplitsRows) {
  SKIP_WITHOUT_GPU();
  // ceil(N / 256) * ceil(M / 64) >= the SM count: warps own 2 row tiles each; N = 2064
  // leaves the last block one warp with one valid row tile (the others return early).
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3})
    for (ActKey a : {ActKey::kBF16, ActKey::kFP16}) {
      cuda::GemmArgs probe;
      probe.m = 2100;
      probe.n = 2064;
      probe.elem = e;
      ASSERT_TRUE(cuda::choose_gemm_config(probe).split_rows) << "the case must take the path";
      check_gemm(e, a, act_input_dtype(a), 2100, 2064, 128, true, 112, 124);
      check_gemm(e, a, DType::kF32, 2100, 2064, 128, false, 112, 130);
    }
}

// Hopper: many tokens with the scale folded into the weights take the wgmma variant. Partial
// token blocks, row tiles past N inside a block (N = 80: 5 of 8 warps hold rows), a half k64
// tile at the end of K (K = 96), both formats, both activation types, bias, F32 output.
TEST(CudaMmaGemm, WgmmaVariantOnHopper) {
  SKIP_WITHOUT_GPU();
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  if (prop.major != 9) GTEST_SKIP() << "the wgmma variant runs on sm_90 only";
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3})
    for (ActKey a : {ActKey::kBF16, ActKey::kFP16}) {
      cuda::GemmArgs probe;
      probe.m = 128;
      probe.n = 80;
      probe.elem = e;
      probe.scale_in_weights = true;
      ASSERT_TRUE(cuda::choose_gemm_config(probe).wgmma) << "the case must take the path";
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{128, 80, 96}, {129, 2064, 2880},
                             {300, 96, 160}, {1000, 512, 1024}}) {
        check_gemm(e, a, act_input_dtype(a), m, n, k, m % 2 == 0, 112, 124);
        check_gemm(e, a, DType::kF32, m, n, k, true, 112, 124);
      }
    }
}

TEST(CudaMmaGemm, ExtremeScalesAreExactWithFp16Activations) {
  SKIP_WITHOUT_GPU();
  // 2^-127 .. 2^-120 and 2^20 .. 2^27: no 16-bit type holds these scales; cuda-mma applies
  // them in FP32, so the FP32 output matches the float64 reference to FP32 accumulation error.
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3}) {
    check_gemm(e, ActKey::kFP16, DType::kF32, 3, 32, 256, false, 0, 7);
    check_gemm(e, ActKey::kFP16, DType::kF32, 3, 32, 256, false, 147, 154);
    check_gemm(e, ActKey::kBF16, DType::kF32, 3, 32, 256, false, 0, 7);
  }
}

TEST(CudaMmaGemm, RealShapes) {
  SKIP_WITHOUT_GPU();
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3})
    for (auto [n, k] : {std::pair<int64_t, int64_t>{5760, 2880}, {2880, 2880}, {4096, 4096}, {8192, 1024}})
      for (int64_t m : {1, 128}) check_gemm(e, ActKey::kBF16, DType::kBF16, m, n, k, true, 115, 125);
}

TEST(CudaMmaGemm, CapturedInACudaGraphGivesTheSameBits) {
  SKIP_WITHOUT_GPU();
  const int64_t m = 4, n = 256, k = 1024;
  Weights w = random_weights(ElemType::kE2M1, 1, n, k, 11, 120, 128);
  const cuda::FragLayout l{ElemType::kE2M1, 1, n, k};
  std::vector<uint8_t> fp(l.packed_bytes()), fs(l.scale_bytes());
  cuda::repack_frag_cpu(w.view, fp.data(), fs.data());
  std::vector<uint16_t> x(size_t(m * k));
  std::mt19937 g(3);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = num::f32_to_bf16(nd(g));
  Dev<uint8_t> dw(fp), ds(fs), y1(size_t(m * n * 2)), y2(size_t(m * n * 2));
  Dev<uint16_t> dx(x);
  cuda::GemmArgs a;
  a.w = dw.p;
  a.w_scales = ds.p;
  a.x = dx.p;
  a.m = m;
  a.n = n;
  a.k = k;
  a.ldx = k;
  a.ldy = n;
  a.scale_in_weights = true;  // codes 120..128 are inside the range for E2M1 x BF16
  a.y = y1.p;
  ASSERT_TRUE(cuda::mx_gemm(a, nullptr).ok());
  CUDA_OK(cudaDeviceSynchronize());

  cudaStream_t s;
  CUDA_OK(cudaStreamCreate(&s));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  a.y = y2.p;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  ASSERT_TRUE(cuda::mx_gemm(a, s).ok());
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT_EQ(y1.get(), y2.get());  // deterministic: fixed-order reduction, no atomics
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

TEST(CudaMmaGemm, RejectsMisalignedActivations) {
  SKIP_WITHOUT_GPU();
  cuda::GemmArgs a;
  Dev<uint8_t> buf(4096);
  a.w = a.w_scales = buf.p;
  a.x = buf.p + 2;
  a.y = buf.p;
  a.m = 1;
  a.n = 16;
  a.k = 32;
  a.ldx = 32;
  a.ldy = 16;
  const Status s = cuda::mx_gemm(a, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("8-byte aligned"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace mxq
