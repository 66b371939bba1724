// The cuda-hopper FP8 GEMM (issue 17) on the GPU: E4M3 activation codes x MXFP4 weights folded into
// E4M3 operands, FP8 wgmma with the k128 stage promoted into FP32 (gemm_kernel.cuh, kFp8), and
// the backend's FP8 keys built on it. sm_90 only; skip elsewhere with the reason.
//
// The kernel is checked per output element against the double sum over the same codes and
// weights: |y - ref| <= kMmaRel x s_m x sum_k |x_k w_k| + the output's rounding, kMmaRel from the
// measured FP8 MMA (docs/cuda.md: a k32 step of the tensor core drops what falls below its
// short adder, up to 2^-11 of the step's sum |products|; the stages add in FP32).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "contract/fp8_fold.h"
#include "cpu/reference/reference_backend.h"
#include "cuda/common/instance_set.h"
#include "cuda/hopper/fp8_predecode.h"
#include "cuda/hopper/fp8_repack.h"
#include "cuda/hopper/gemm.h"
#include "cuda/quant/fake_quant.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "mxq/select.h"
#include "gpu_test_util.h"
#include "test_weights.h"
#include "tolerance.h"  // tests/cases: the named tolerances against cpu-reference

namespace mxq {
namespace {

using testing::Dev;
using testing::random_weights;
using testing::Weights;
namespace hopper = cuda::hopper;
namespace fp8 = cuda::hopper::fp8;

#define SKIP_WITHOUT_HOPPER()                                                        \
  do {                                                                               \
    SKIP_WITHOUT_GPU();                                                              \
    cudaDeviceProp prop_{};                                                          \
    CUDA_OK(cudaGetDeviceProperties(&prop_, 0));                                     \
    if (prop_.major != 9) {                                                          \
      std::printf("[ SKIPPED  ] cuda-hopper FP8 test: GPU is sm_%d%d, needs sm_90\n", \
                  prop_.major, prop_.minor);                                         \
      GTEST_SKIP() << "cuda-hopper runs on sm_90 only";                              \
    }                                                                                \
  } while (0)

// Per element, relative to s_m x sum_k |x_k w_k|: 4x the worst single k32 step measured
// (2^-11), so a wrong scale, row base, token or K range fails by orders of magnitude.
constexpr double kMmaRel = 0x1p-9;

// One layer prepared for the kernel: the FP8 layout and row multipliers on the device, the
// dequantized weights in double on the host.
struct Fp8Layer {
  int64_t n = 0, k = 0;
  Weights w;
  std::vector<double> wd;  // [n, k]
  std::vector<float> bias;
  std::optional<Dev<uint8_t>> chunks;
  std::optional<Dev<float>> row_mul, dbias;
};

void prepare_layer(Fp8Layer& l, int64_t n, int64_t k, uint32_t seed, int smin, int smax) {
  l.n = n;
  l.k = k;
  l.w = random_weights(ElemType::kE2M1, 1, n, k, seed, smin, smax);
  std::vector<int32_t> bases(static_cast<size_t>(n));
  auto st = contract::fp8_fold_stats(l.w.view, bases.data());
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  ASSERT_EQ(st.value().folded, n) << "the test's weights must fold";
  const fp8::Fp8Layout lay{1, n, k};
  Dev<uint8_t> dp(l.w.packed), ds(l.w.scales);
  Dev<int32_t> drb(bases), padded(size_t(lay.n_pad()));
  Dev<unsigned long long> bad(std::vector<unsigned long long>{fp8::kNoBadBlock});
  l.chunks.emplace(lay.bytes());
  MXWeightView dv = l.w.view;
  dv.packed = dp.p;
  dv.scales = ds.p;
  MXQ_OK(fp8::repack_fp8(dv, drb.p, l.chunks->p, padded.p, bad.p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  MXQ_OK(fp8::fold_error(l.w.view, bad.get()[0]));
  std::vector<float> mul(size_t(lay.n_pad()), 1.0f);
  for (int64_t r = 0; r < n; ++r) mul[size_t(r)] = std::ldexp(1.0f, bases[size_t(r)] - 127);
  l.row_mul.emplace(mul);
  l.wd.resize(size_t(n * k));
  std::vector<uint8_t> codes(static_cast<size_t>(k));
  for (int64_t r = 0; r < n; ++r) {
    pack::unpack_codes(ElemType::kE2M1, l.w.packed.data() + r * packed_bytes(ElemType::kE2M1, k), k,
                 codes.data());
    for (int64_t j = 0; j < k; ++j)
      l.wd[size_t(r * k + j)] = double(num::decode_elem(ElemType::kE2M1, codes[size_t(j)])) *
                                double(num::e8m0_to_f32(l.w.scales[size_t(r * (k / 32) + j / 32)]));
  }
  std::mt19937 g(seed + 1);
  std::normal_distribution<float> nd;
  l.bias.resize(size_t(n));
  for (auto& b : l.bias) b = 0.1f * nd(g);
  l.dbias.emplace(l.bias);
}

// Activations quantized on the GPU to E4M3 codes (fp8_act_quant_codes: the reference's codes,
// checked bit for bit in act_quant_test.cc), rows of ldc bytes.
// group (fp8-dynamic-group128): one scale per row and 128-column group, hscales [m, groups].
struct Fp8Act {
  int64_t m = 0, k = 0, ldc = 0;
  bool dynamic = true;
  bool group = false;
  int64_t groups = 0;
  float static_scale = 1.0f;
  std::optional<Dev<uint8_t>> codes;
  std::optional<Dev<float>> scales;
  std::vector<uint8_t> hcodes;
  std::vector<float> hscales;
  // The scale of element (r, j).
  double scale(int64_t r, int64_t j) const {
    return group ? double(hscales[size_t(r * groups + j / 128)]) : double(hscales[size_t(r)]);
  }
};

void quantize_act(Fp8Act& a, int64_t m, int64_t k, bool dynamic, uint32_t seed) {
  a.m = m;
  a.k = k;
  a.ldc = (k + 15) / 16 * 16 + (k % 128 == 0 ? 16 : 0);  // a padded stride too, where K allows
  a.dynamic = dynamic;
  a.static_scale = 0.03125f * 1.5f;
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  std::vector<uint16_t> x(size_t(m * k));
  for (int64_t r = 0; r < m; ++r) {
    const float row_mag = std::ldexp(1.0f, int(r % 7) - 3);  // rows of different magnitude
    for (int64_t j = 0; j < k; ++j) x[size_t(r * k + j)] = num::f32_to_bf16(row_mag * nd(g));
  }
  Dev<uint16_t> dx(x);
  a.codes.emplace(size_t(m * a.ldc));
  a.scales.emplace(size_t(m));
  CUDA_OK(cudaMemset(a.codes->p, 0x7F, size_t(m * a.ldc)));  // NaN codes past K: must not be read
  MXQ_OK(cuda::fp8_act_quant_codes(dx.p, DType::kBF16, m, k, dynamic, a.static_scale, a.codes->p,
                                   a.ldc, dynamic ? a.scales->p : nullptr, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  a.hcodes = a.codes->get();
  a.hscales = dynamic ? a.scales->get() : std::vector<float>(size_t(m), a.static_scale);
}

// fp8-dynamic-group128 activations: each (row, 128-column group) of its own magnitude (2^-4 ..
// 2^4), so a scale applied to the wrong group or token is off by a power of two or more.
void quantize_act_groups(Fp8Act& a, int64_t m, int64_t k, uint32_t seed) {
  a.m = m;
  a.k = k;
  a.ldc = (k + 15) / 16 * 16 + (k % 128 == 0 ? 16 : 0);
  a.dynamic = false;
  a.group = true;
  a.groups = cuda::fp8_act_groups(k);
  a.static_scale = 1.0f;
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  std::vector<uint16_t> x(size_t(m * k));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < k; ++j) {
      const float mag = std::ldexp(1.0f, int((r + 3 * (j / 128)) % 9) - 4);
      x[size_t(r * k + j)] = num::f32_to_bf16(mag * nd(g));
    }
  Dev<uint16_t> dx(x);
  a.codes.emplace(size_t(m * a.ldc));
  a.scales.emplace(size_t(m * a.groups));
  CUDA_OK(cudaMemset(a.codes->p, 0x7F, size_t(m * a.ldc)));  // NaN codes past K: must not be read
  MXQ_OK(cuda::fp8_group_act_quant_codes(dx.p, DType::kBF16, m, k, a.codes->p, a.ldc,
                                         a.scales->p, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  a.hcodes = a.codes->get();
  a.hscales = a.scales->get();
}

// The GEMM's arguments for layer l and activations a into y (the row / tensor scale of a, its
// rows of a.ldc bytes, y rows of N).
hopper::HopperFp8GemmArgs fp8_args(const Fp8Layer& l, const Fp8Act& a, DType out, bool bias,
                                   void* y) {
  hopper::HopperFp8GemmArgs f;
  f.out = out;
  f.w = l.chunks->p;
  f.row_mul = l.row_mul->p;
  f.bias = bias ? l.dbias->p : nullptr;
  f.x = a.codes->p;
  f.act_row_scale = a.dynamic ? a.scales->p : nullptr;
  f.act_scale = a.static_scale;
  f.act_group_scale = a.group ? a.scales->p : nullptr;
  f.y = y;
  f.m = a.m;
  f.n = l.n;
  f.k = l.k;
  f.ldx = a.ldc;
  f.ldy = l.n;
  return f;
}

// Runs the kernel (the config forced by MXQ_HOPPER_CONFIG when `forced` is set) and checks every
// output; returns the largest |y - ref| / (s x sum|x w|) seen (F32 outputs) for the report.
// `y_out` (optional) receives the output bytes.
double run_and_check(const Fp8Layer& l, const Fp8Act& a, DType out, bool bias, const char* forced,
                     hopper::HopperGemmConfig* ran_out = nullptr,
                     std::vector<uint8_t>* y_out = nullptr) {
  if (forced != nullptr) {
    EXPECT_EQ(setenv("MXQ_HOPPER_CONFIG", forced, 1), 0);
  }
  const int64_t m = a.m, n = l.n, k = l.k;
  const size_t ybytes = size_t(m * n * dtype_bytes(out));
  Dev<uint8_t> dy(ybytes);
  EXPECT_EQ(cudaMemset(dy.p, 0xFF, ybytes), cudaSuccess);
  hopper::HopperFp8GemmArgs f = fp8_args(l, a, out, bias, dy.p);
  // The pre-decoded path's workspace, where the chosen launch has one (0 bytes otherwise).
  auto ws = hopper::hopper_fp8_workspace_bytes(f);
  EXPECT_TRUE(ws.ok()) << ws.status().to_string();
  std::optional<Dev<uint8_t>> tiles;
  if (ws.ok() && ws.value() > 0) {
    tiles.emplace(ws.value());
    f.workspace = tiles->p;
    f.workspace_bytes = ws.value();
  }
  hopper::HopperGemmConfig ran;
  const Status s = hopper::hopper_fp8_gemm(f, nullptr, &ran);
  if (forced != nullptr) unsetenv("MXQ_HOPPER_CONFIG");
  if (y_out != nullptr) *y_out = {};
  EXPECT_TRUE(s.ok()) << s.to_string();
  if (!s.ok()) return 1.0;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (ran_out != nullptr) *ran_out = ran;
  const std::vector<uint8_t> y = dy.get();
  if (y_out != nullptr) *y_out = y;
  const std::string what = std::string(dtype_name(out)) + " M=" + std::to_string(m) + " N=" +
                           std::to_string(n) + " K=" + std::to_string(k) +
                           (a.group ? " per-group" : a.dynamic ? " per-token" : " per-tensor") +
                           (bias ? " bias" : "") +
                           " [" + ran.to_string() + "]";
  const double round_rel = out == DType::kBF16 ? 0x1p-8 : out == DType::kF16 ? 0x1p-11 : 0x1p-23;
  std::vector<double> xv(static_cast<size_t>(k));
  double worst = 0;
  int bad = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < k; ++j)
      xv[size_t(j)] = double(num::decode_elem(ElemType::kE4M3, a.hcodes[size_t(r * a.ldc + j)]));
    for (int64_t j = 0; j < k; ++j) xv[size_t(j)] *= a.scale(r, j);  // s x code
    for (int64_t c = 0; c < n; ++c) {
      double sum = 0, mag = 0;  // sum_k s x_k w_k, sum_k |s x_k w_k|
      const double* wr = l.wd.data() + c * k;
      for (int64_t j = 0; j < k; ++j) {
        const double p = xv[size_t(j)] * wr[j];
        sum += p;
        mag += std::fabs(p);
      }
      const double ref = sum + (bias ? double(l.bias[size_t(c)]) : 0.0);
      const double got = num::load_dense(y.data(), out, r * n + c);
      const double err = std::fabs(got - ref);
      const double bound = kMmaRel * mag + round_rel * std::fabs(ref) + 1e-30;
      if (out == DType::kF32 && mag > 0) worst = std::max(worst, err / mag);
      if (!(err <= bound) && bad++ < 5)
        ADD_FAILURE() << what << ": y[" << r << ", " << c << "] = " << got << ", want " << ref
                      << " (bound " << bound << ")";
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " outputs outside the bound";
  return worst;
}

// Every FP8 tile x consumer count, forced, with and without split K; partial token tiles, rows
// past N in the last 192- / 256-row items (N = 2064), K = 2880 (not a multiple of the k128
// step: the layout and the TMA box zero-fill), per-token and per-tensor scales, bias.
TEST(HopperFp8Gemm, EveryTileAgainstTheDoubleSum) {
  SKIP_WITHOUT_HOPPER();
  Fp8Layer l;
  prepare_layer(l, 2064, 2880, 7, 112, 124);
  std::set<std::string> ran;
  double worst = 0;
  for (const char* forced : {"16:2:1", "32:2:1", "64:2:1", "128:2:1", "16:3:1", "32:3:1",
                             "64:3:1", "16:4:1", "16:2:4", "32:3:2", "128:2:2", "16:4:3"}) {
    for (int64_t m : {1, 37, 130}) {
      Fp8Act a;
      quantize_act(a, m, l.k, m != 37, uint32_t(m));
      hopper::HopperGemmConfig c;
      worst = std::max(worst, run_and_check(l, a, DType::kF32, m != 1, forced, &c));
      EXPECT_TRUE(c.fp8 && c.forced) << c.to_string();
      ran.insert(std::to_string(c.tokens) + ":" + std::to_string(c.consumers) + ":" +
                 std::to_string(c.splits));
    }
  }
  std::printf("FP8 MMA: largest |y - ref| / (s sum|x w|) = 2^%.1f over every tile (K = 2880)\n",
              std::log2(std::max(worst, 1e-300)));
  EXPECT_EQ(ran.size(), 12u) << "every forced config must have run as forced";
}

// fp8-dynamic-group128 on the FP8 tensor cores: the token's scale of each 128-column group applied
// at every k128 stage's promotion (kt_begin + u), on the register-A tiles with and without split
// K (a rank's first stage is not group 0), the transform warpgroups and the pre-decoded tiles;
// groups of magnitudes 2^-4 .. 2^4 (quantize_act_groups), K = 2880 (a short last group of 64).
TEST(HopperFp8Gemm, GroupScalesAgainstTheDoubleSum) {
  SKIP_WITHOUT_HOPPER();
  Fp8Layer l;
  prepare_layer(l, 2064, 2880, 11, 112, 124);
  double worst = 0;
  struct Path {
    const char* forced;
    const char* env;  // (name=value) or null
  };
  for (const Path& path : {Path{"16:2:1", nullptr}, Path{"64:3:1", nullptr},
                           Path{"128:2:1", nullptr}, Path{"16:2:4", nullptr},
                           Path{"32:3:2", nullptr}, Path{"128:2:2", nullptr},
                           Path{nullptr, "MXQ_HOPPER_FP8_TRANSFORM=1"},
                           Path{nullptr, "MXQ_HOPPER_FP8_PREDECODE=1"}}) {
    std::string name, value;
    if (path.env != nullptr) {
      const std::string e = path.env;
      name = e.substr(0, e.find('='));
      value = e.substr(e.find('=') + 1);
      ASSERT_EQ(setenv(name.c_str(), value.c_str(), 1), 0);
    }
    for (int64_t m : {1, 37, 130}) {
      Fp8Act a;
      quantize_act_groups(a, m, l.k, uint32_t(m + 41));
      for (DType out : {DType::kF32, DType::kBF16}) {
        hopper::HopperGemmConfig c;
        const double w = run_and_check(l, a, out, m != 37, path.forced, &c);
        if (out == DType::kF32) worst = std::max(worst, w);
        EXPECT_TRUE(c.fp8_group_scales && c.fp8_promote_stages == 1) << c.to_string();
      }
    }
    if (path.env != nullptr) unsetenv(name.c_str());
  }
  std::printf("FP8 MMA, group scales: largest |y - ref| / sum|s x w| = 2^%.1f\n",
              std::log2(std::max(worst, 1e-300)));
}

// The 128-token tile with 1 and 2 transform warpgroups (weights decoded into shared memory,
// shared-memory wgmma; MXQ_HOPPER_FP8_TRANSFORM forces them): partial token tiles, rows past N,
// K = 2880, both scale kinds, bias, F32 and BF16 (TMA-store epilogue) outputs, against the
// double sum; and the register-A tile forced by 0.
TEST(HopperFp8Gemm, TransformWarpgroupsAgainstTheDoubleSum) {
  SKIP_WITHOUT_HOPPER();
  Fp8Layer l;
  prepare_layer(l, 2064, 2880, 7, 112, 124);
  double worst = 0;
  for (int tw : {0, 1, 2}) {
    const std::string v = std::to_string(tw);
    ASSERT_EQ(setenv("MXQ_HOPPER_FP8_TRANSFORM", v.c_str(), 1), 0);
    for (int64_t m : {1, 37, 130, 300}) {
      Fp8Act a;
      quantize_act(a, m, l.k, m != 37, uint32_t(m + 17));
      for (DType out : {DType::kF32, DType::kBF16}) {
        hopper::HopperGemmConfig c;
        const double w = run_and_check(l, a, out, m != 1, nullptr, &c);
        if (out == DType::kF32) worst = std::max(worst, w);
        EXPECT_EQ(c.fp8_transform, tw) << c.to_string();
        if (tw > 0) {
          EXPECT_EQ(c.tokens, 128) << c.to_string();
        }
        EXPECT_TRUE(c.forced) << c.to_string();
      }
    }
  }
  unsetenv("MXQ_HOPPER_FP8_TRANSFORM");
  std::printf("FP8 MMA, transform warpgroups: largest |y - ref| / (s sum|x w|) = 2^%.1f\n",
              std::log2(std::max(worst, 1e-300)));
}

// The GPU pre-pass (fp8_predecode.h) equals its CPU definition byte for byte, for the whole
// layer and for a range of row blocks (rows past N, K = 2880).
TEST(HopperFp8Gemm, PredecodeGpuEqualsCpuDefinition) {
  SKIP_WITHOUT_HOPPER();
  Fp8Layer l;
  prepare_layer(l, 400, 2880, 21, 110, 124);
  const fp8::Fp8Layout lay{1, l.n, l.k};
  const std::vector<uint8_t> chunks = l.chunks->get();
  for (auto [begin, blocks] : {std::pair<int64_t, int64_t>{0, lay.n64()}, {2, 4}}) {
    std::vector<uint8_t> want;
    MXQ_OK(fp8::predecode_fp8_cpu(lay, chunks.data(), begin, blocks, want));
    Dev<uint8_t> tiles(want.size());
    CUDA_OK(cudaMemset(tiles.p, 0x5A, want.size()));
    MXQ_OK(fp8::predecode_fp8(lay, l.chunks->p, begin, blocks, tiles.p, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(tiles.get(), want) << "blocks [" << begin << ", " << begin + blocks << ")";
  }
  Dev<uint8_t> tiles(fp8::tiles_bytes(1, lay.k128()));
  const Status bad = fp8::predecode_fp8(lay, l.chunks->p, lay.n64() - 1, 2, tiles.p, nullptr);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("row blocks"), std::string::npos) << bad.to_string();
}

// The pre-decoded path (MXQ_HOPPER_FP8_PREDECODE=1: a pre-pass per chunk of rows, then
// shared-memory wgmma on the tiles) against the double sum: partial token tiles, rows past N,
// K = 2880, both scale kinds, bias, F32 and BF16 outputs; one chunk, several chunks
// (MXQ_HOPPER_FP8_WORKSPACE_MB=1) and raster groups smaller than a chunk
// (MXQ_HOPPER_FP8_RASTER_BLOCKS=3). F32 outputs equal the register-A 128-token kernel's bit for
// bit: the same E4M3 operands, the same MMAs and promotion order.
TEST(HopperFp8Gemm, PredecodedTilesAgainstTheDoubleSum) {
  SKIP_WITHOUT_HOPPER();
  Fp8Layer l;
  prepare_layer(l, 2064, 2880, 7, 112, 124);
  double worst = 0;
  struct Setting {
    const char* workspace_mb;
    const char* raster;
    int chunks_at_least;
  };
  for (const Setting& st : {Setting{nullptr, nullptr, 1}, Setting{"1", nullptr, 2},
                            Setting{nullptr, "3", 1}}) {
    for (int64_t m : {1, 37, 130, 300}) {
      Fp8Act a;
      quantize_act(a, m, l.k, m != 37, uint32_t(m + 29));
      std::vector<uint8_t> register_a;
      ASSERT_EQ(setenv("MXQ_HOPPER_FP8_PREDECODE", "0", 1), 0);
      run_and_check(l, a, DType::kF32, m != 1, "128:2:1", nullptr, &register_a);
      ASSERT_EQ(setenv("MXQ_HOPPER_FP8_PREDECODE", "1", 1), 0);
      if (st.workspace_mb != nullptr) setenv("MXQ_HOPPER_FP8_WORKSPACE_MB", st.workspace_mb, 1);
      if (st.raster != nullptr) setenv("MXQ_HOPPER_FP8_RASTER_BLOCKS", st.raster, 1);
      for (DType out : {DType::kF32, DType::kBF16}) {
        hopper::HopperGemmConfig c;
        std::vector<uint8_t> y;
        const double w = run_and_check(l, a, out, m != 1, nullptr, &c, &y);
        EXPECT_TRUE(c.fp8_tiles && c.forced && c.tokens == 128) << c.to_string();
        EXPECT_GE(c.fp8_chunks, st.chunks_at_least) << c.to_string();
        if (st.raster != nullptr) {
          EXPECT_EQ(c.raster_group, 3) << c.to_string();
        }
        if (out == DType::kF32) {
          worst = std::max(worst, w);
          EXPECT_TRUE(y == register_a) << "M = " << m << ": the pre-decoded tiles' output differs "
                                       << "from the register-A kernel's [" << c.to_string() << "]";
        }
      }
      unsetenv("MXQ_HOPPER_FP8_WORKSPACE_MB");
      unsetenv("MXQ_HOPPER_FP8_RASTER_BLOCKS");
    }
  }
  unsetenv("MXQ_HOPPER_FP8_PREDECODE");
  std::printf("FP8 MMA, pre-decoded tiles: largest |y - ref| / (s sum|x w|) = 2^%.1f\n",
              std::log2(std::max(worst, 1e-300)));
  // Without the workspace the launch is refused, naming the size it needs.
  ASSERT_EQ(setenv("MXQ_HOPPER_FP8_PREDECODE", "1", 1), 0);
  Fp8Act a;
  quantize_act(a, 130, l.k, true, 3);
  Dev<uint8_t> dy(size_t(130 * l.n * 4));
  const hopper::HopperFp8GemmArgs f = fp8_args(l, a, DType::kF32, false, dy.p);
  const Status s = hopper::hopper_fp8_gemm(f, nullptr);
  unsetenv("MXQ_HOPPER_FP8_PREDECODE");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("needs a workspace of"), std::string::npos) << s.to_string();
}

// The model's own choice across M (decode to prefill), 16-bit outputs (the TMA-store epilogue),
// a K that is a multiple of 128 with a padded activation stride.
TEST(HopperFp8Gemm, ModelChoiceAndOutputTypes) {
  SKIP_WITHOUT_HOPPER();
  Fp8Layer l;
  prepare_layer(l, 1024, 4096, 11, 114, 126);
  std::vector<DType> outs = {DType::kBF16, DType::kF32};
  if (cuda::kAllInstanceTypes) {
    outs.push_back(DType::kF16);
  } else {
    std::printf("[ NOTE     ] F16 outputs not run: %s\n", cuda::kMinimalInstancesNote);
  }
  std::set<int> tiles;
  for (int64_t m : {1, 16, 64, 200, 1000}) {
    Fp8Act a;
    quantize_act(a, m, l.k, true, uint32_t(m + 5));
    for (DType out : outs) {
      hopper::HopperGemmConfig c;
      run_and_check(l, a, out, true, nullptr, &c);
      tiles.insert(c.tokens);
    }
  }
  EXPECT_GE(tiles.size(), 3u) << "the sweep must reach several tiles";
}

// Equal bits run after run (no atomics in the result path) and under CUDA graph replay.
TEST(HopperFp8Gemm, BitwiseDeterministicAndGraphCapturable) {
  SKIP_WITHOUT_HOPPER();
  Fp8Layer l;
  prepare_layer(l, 512, 4096, 3, 116, 124);
  for (int64_t m : {1, 200}) {  // split K, no split
    Fp8Act a;
    quantize_act(a, m, l.k, true, 9);
    const size_t ybytes = size_t(m * l.n * 4);
    Dev<uint8_t> dy(ybytes);
    const hopper::HopperFp8GemmArgs f = fp8_args(l, a, DType::kF32, true, dy.p);
    MXQ_OK(hopper::hopper_fp8_gemm(f, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> first = dy.get();
    for (int rep = 0; rep < 3; ++rep) {
      CUDA_OK(cudaMemset(dy.p, 0xFF, ybytes));
      MXQ_OK(hopper::hopper_fp8_gemm(f, nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      ASSERT_EQ(dy.get(), first) << "run " << rep << ", M = " << m;
    }
    CUDA_OK(cudaMemset(dy.p, 0xFF, ybytes));
    cudaStream_t s;
    CUDA_OK(cudaStreamCreate(&s));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    const Status st = hopper::hopper_fp8_gemm(f, s);
    CUDA_OK(cudaStreamEndCapture(s, &graph));
    ASSERT_TRUE(st.ok()) << st.to_string();
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 3; ++i) CUDA_OK(cudaGraphLaunch(exec, s));
    CUDA_OK(cudaStreamSynchronize(s));
    EXPECT_EQ(dy.get(), first) << "graph replay differs from eager, M = " << m;
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(s);
  }
}

// Bad arguments are refused naming the problem.
TEST(HopperFp8Gemm, RefusesBadArguments) {
  SKIP_WITHOUT_HOPPER();
  hopper::HopperFp8GemmArgs f;
  f.m = 4;
  f.n = 64;
  f.k = 128;
  f.ldx = 136;  // not a multiple of 16
  f.ldy = 64;
  Dev<uint8_t> buf(1 << 16);
  f.w = f.x = buf.p;
  f.row_mul = reinterpret_cast<const float*>(buf.p);
  f.y = buf.p;
  Status s = hopper::hopper_fp8_gemm(f, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("16-byte aligned"), std::string::npos) << s.to_string();
  f.ldx = 128;
  f.row_mul = nullptr;
  s = hopper::hopper_fp8_gemm(f, nullptr);
  EXPECT_NE(s.message().find("row multiplier"), std::string::npos) << s.to_string();
  f.row_mul = reinterpret_cast<const float*>(buf.p);
  f.k = 100;
  s = hopper::hopper_fp8_gemm(f, nullptr);
  EXPECT_NE(s.message().find("K a multiple"), std::string::npos) << s.to_string();
}

// ---- the backend's FP8 keys ----------------------------------------------------------------

struct LayerCase {
  Problem p;
  Weights w;
  std::vector<uint16_t> x, bias;
  float input_scale = 0.0625f;
  LinearWeights lw() const {
    return {w.view, {p.bias ? bias.data() : nullptr, DType::kBF16, 1, p.n}, input_scale};
  }
};

LayerCase layer_case(ElemType e, ActKey act, DType out, int64_t m, int64_t n, int64_t k,
                     int smin, int smax) {
  LayerCase c{Problem::linear(e, act, m, n, k, true),
              random_weights(e, 1, n, k, uint32_t(m * 5 + n + k), smin, smax), {}, {}};
  c.p.out = out;
  std::mt19937 g(uint32_t(m + 3 * n + k));
  std::normal_distribution<float> nd;
  c.x.resize(size_t(m * k));
  c.bias.resize(size_t(n));
  for (auto& v : c.x) v = num::f32_to_bf16(nd(g));
  for (auto& v : c.bias) v = num::f32_to_bf16(0.1f * nd(g));
  return c;
}

double rel_rms(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, DType out,
               int64_t count) {
  double se = 0, ss = 0;
  for (int64_t i = 0; i < count; ++i) {
    const double a = num::load_dense(got.data(), out, i), r = num::load_dense(want.data(), out, i);
    if (!std::isfinite(a)) return INFINITY;
    se += (a - r) * (a - r);
    ss += r * r;
  }
  return std::sqrt(se / std::max(ss, 1e-300));
}

// cuda-hopper under fp8-dynamic-token / fp8-static-tensor against cpu-reference, within the
// FP8-MMA tolerance where the rows fold (MXFP4) and within the keys' exact tolerance where they
// do not (a row with a scale span of 20 binades; MXFP8 weights): the 16-bit path.
TEST(HopperFp8Backend, KeysMatchTheReferenceOnEitherPath) {
  SKIP_WITHOUT_HOPPER();
  const Backend* b = find_backend("cuda-hopper");
  ASSERT_NE(b, nullptr);
  for (ActKey key :
       {ActKey::kFP8DynamicToken, ActKey::kFP8StaticTensor, ActKey::kFP8DynamicGroup128})
    for (auto [e, smin, smax, folds] :
         {std::tuple<ElemType, int, int, bool>{ElemType::kE2M1, 114, 124, true},
          {ElemType::kE2M1, 104, 124, false}, {ElemType::kE4M3, 118, 124, false}})
      for (int64_t m : {1, 100}) {
        if (!cuda::kAllInstanceTypes && e == ElemType::kE4M3) continue;  // (no BF16 x E4M3)
        for (DType out : {DType::kBF16, DType::kF32}) {
          LayerCase c = layer_case(e, key, out, m, 1040, 2880, smin, smax);
          if (!folds && e == ElemType::kE2M1) {  // make sure one row cannot fold
            c.w.scales[0] = uint8_t(smin);
            c.w.scales[1] = uint8_t(smax);
            c.w.packed[0] = 0x11;  // 0.5 in block 0 ...
            c.w.packed[16] = 0x66;  // ... and 4 in block 1
          }
          const std::string what = c.p.to_string() + (folds ? " (rows fold)" : " (16-bit path)");
          const size_t yb = size_t(m * c.p.n * dtype_bytes(out));
          std::vector<uint8_t> want(yb);
          MXQ_OK(cpu::reference_linear(c.p, c.lw(), {c.x.data(), DType::kBF16, m, c.p.k},
                                       {want.data(), out, m, c.p.n}));
          ASSERT_TRUE(b->declares_act_key(key));
          ASSERT_TRUE(b->can_implement(c.p)) << b->can_implement(c.p).reason;
          auto prep = b->prepare_linear(c.p, c.lw());
          ASSERT_TRUE(prep.ok()) << what << ": " << prep.status().to_string();
          Dev<uint16_t> dx(c.x);
          Dev<uint8_t> dy(yb);
          CUDA_OK(cudaMemset(dy.p, 0xFF, yb));
          MXQ_OK(b->run_linear(c.p, *prep.value(), {dx.p, DType::kBF16, m, c.p.k},
                               {dy.p, out, m, c.p.n}, nullptr));
          CUDA_OK(cudaDeviceSynchronize());
          const double rel = rel_rms(dy.get(), want, out, m * c.p.n);
          const double tol = folds ? cases::tolerance_fp8_mma(c.p.op, out) : cases::tolerance(c.p);
          EXPECT_LE(rel, tol) << what;
          std::printf("%s: rel %.3g (tolerance %.3g)\n", what.c_str(), rel, tol);
        }
      }
}

}  // namespace
}  // namespace mxq
