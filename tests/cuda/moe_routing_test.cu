// GPU MoE routing and dispatch (src/cuda/moe) against the CPU: routing against the CPU routing
// itself (src/cpu/common/routing.h, the definition) for each mode in gpt-oss / DeepSeek-V3 /
// Qwen3 shapes and awkward ones, on random and tie-heavy logits in F32 / BF16 / F16; dispatch
// against a plain CPU implementation below, exact; argument errors; CUDA graph capture.
//
// Tolerances. Selected ids (and their order): exact. Weights: within 1 float32 ulp of the
// CPU's. Both sides compute in float64 from the same exactly widened logits with the same
// expressions, but the device's float64 exp may differ from the host libm's in the last bit
// and softmax-topk's denominator is summed as a warp tree rather than left to right; a last-bit
// float64 difference changes the final float32 rounding only when the value sits right at a
// rounding boundary, and then by one ulp.
//
// No device code here: compiled as C++20 (it needs mxq/problem.h). GPU tests skip with a
// printed reason when no CUDA device is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/common/routing.h"
#include "cuda/moe/dispatch.h"
#include "cuda/moe/routing.h"
#include "gpu_test_util.h"
#include "mxq/numerics.h"

namespace mxq {
namespace {

struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t bytes, int poison = 0xCD) {
    if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess) p = nullptr;
    if (p) cudaMemset(p, poison, bytes ? bytes : 16);
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
std::vector<T> to_host(const void* d, size_t count) {
  std::vector<T> v(count);
  if (count && cudaMemcpy(v.data(), d, count * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
    v.clear();
  return v;
}

// Host logits in `dtype`, from float values (rounded to the dtype).
std::vector<uint8_t> encode(const std::vector<float>& v, DType d) {
  std::vector<uint8_t> out(v.size() * size_t(dtype_bytes(d)));
  for (size_t i = 0; i < v.size(); ++i) {
    if (d == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = d == DType::kBF16 ? num::f32_to_bf16(v[i]) : num::f32_to_f16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = INT32_MIN - ia;
  if (ib < 0) ib = INT32_MIN - ib;
  return std::llabs(int64_t(ia) - int64_t(ib));
}

MoEParams softmax_topk(int64_t e, int64_t k, bool renorm) {
  MoEParams p;
  p.experts = e;
  p.topk = k;
  p.routing = Routing::kSoftmaxTopK;
  p.renormalize = renorm;
  return p;
}
MoEParams topk_softmax(int64_t e, int64_t k) {
  MoEParams p = softmax_topk(e, k, true);
  p.routing = Routing::kTopKSoftmax;
  return p;
}
MoEParams grouped(int64_t e, int64_t k, int64_t groups, int64_t topk_group, bool bias,
                  float scaling, bool renorm = true) {
  MoEParams p = softmax_topk(e, k, renorm);
  p.routing = Routing::kSigmoidGroupedTopK;
  p.n_group = groups;
  p.topk_group = topk_group;
  p.correction_bias = bias;
  p.routed_scaling = scaling;
  return p;
}

struct RouteCase {
  std::string name;
  MoEParams p;
};

std::vector<RouteCase> route_cases() {
  return {
      {"gpt-oss 128/4 topk-softmax", topk_softmax(128, 4)},
      {"gpt-oss-20b 32/4 topk-softmax", topk_softmax(32, 4)},
      {"qwen3 128/8 softmax-topk renorm", softmax_topk(128, 8, true)},
      {"mixtral 8/2 softmax-topk renorm", softmax_topk(8, 2, true)},
      {"deepseek-v2-lite 64/6 softmax-topk no renorm", softmax_topk(64, 6, false)},
      {"deepseek-v3 256/8 groups 8 top-4 bias x2.5", grouped(256, 8, 8, 4, true, 2.5f)},
      {"grouped 256/8 no bias, no renorm", grouped(256, 8, 8, 4, false, 1.0f, false)},
      {"grouped 64/6 one group", grouped(64, 6, 1, 1, true, 1.0f)},
      {"grouped 60/4 30 groups of 2 top-3", grouped(60, 4, 30, 3, true, 16.0f)},
      {"grouped 32/2 32 groups of 1 top-5", grouped(32, 2, 32, 5, true, 1.0f)},
      {"odd 40/3 softmax-topk", softmax_topk(40, 3, true)},
      {"odd 1/1 topk-softmax", topk_softmax(1, 1)},
      {"wide 512/32 softmax-topk", softmax_topk(512, 32, true)},
      {"wide 320/20 topk-softmax", topk_softmax(320, 20)},
  };
}

// Routes `m` tokens on the GPU and on the CPU, compares; `ties` draws logits from a coarse grid.
void check_route(const RouteCase& c, int64_t m, DType dtype, bool ties, uint32_t seed) {
  SCOPED_TRACE(c.name + " M=" + std::to_string(m) + " " + dtype_name(dtype) +
               (ties ? " ties" : " random"));
  const MoEParams& p = c.p;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::uniform_int_distribution<int> grid(0, 5);
  const bool sig = p.routing == Routing::kSigmoidGroupedTopK;
  std::vector<float> lv(size_t(m * p.experts));
  for (float& x : lv)
    // Ties: non-negative grid values for the sigmoid mode, where s(x) + s(-x) == 1 would make
    // group sums tie only up to the exp's last bit (host and device exp may round apart).
    x = ties ? (sig ? 0.5f * float(grid(rng)) : 0.5f * float(grid(rng) - 2)) : nd(rng);
  std::vector<float> bias;
  if (p.correction_bias) {
    bias.resize(size_t(p.experts));
    std::uniform_int_distribution<int> bg(0, 3);
    std::normal_distribution<float> bn(0.0f, 0.05f);
    for (float& b : bias) b = ties ? 0.125f * float(bg(rng)) : bn(rng);
  }
  const std::vector<uint8_t> logits = encode(lv, dtype);

  cpu::TopK ref;
  MXQ_OK(cpu::route(p, DenseView{logits.data(), dtype, m, p.experts},
                    DenseView{bias.empty() ? nullptr : bias.data(), DType::kF32, 1, p.experts},
                    ref));

  DevBuf d_logits(logits.size()), d_bias(bias.size() * 4);
  DevBuf d_ids(size_t(m * p.topk) * 4), d_w(size_t(m * p.topk) * 4);
  CUDA_OK(cudaMemcpy(d_logits.p, logits.data(), logits.size(), cudaMemcpyHostToDevice));
  if (!bias.empty()) {
    CUDA_OK(cudaMemcpy(d_bias.p, bias.data(), bias.size() * 4, cudaMemcpyHostToDevice));
  }
  MXQ_OK(cuda::moe_route(p, d_logits.p, dtype, m, bias.empty() ? nullptr : d_bias.as<float>(),
                         d_ids.as<int32_t>(), d_w.as<float>(), nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto ids = to_host<int32_t>(d_ids.p, size_t(m * p.topk));
  const auto w = to_host<float>(d_w.p, size_t(m * p.topk));
  ASSERT_EQ(ids.size(), ref.ids.size());
  int bad = 0;
  for (size_t i = 0; i < ids.size() && bad < 5; ++i) {
    if (ids[i] != ref.ids[i] || ulp_distance(w[i], ref.weights[i]) > 1) {
      ++bad;
      ADD_FAILURE() << "token " << i / size_t(p.topk) << " slot " << i % size_t(p.topk)
                    << ": gpu id " << ids[i] << " w " << w[i] << ", cpu id " << ref.ids[i]
                    << " w " << ref.weights[i];
    }
  }
}

TEST(CudaMoeRoute, EveryModeShapeDtypeAndTokenCount) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 1;
  for (const RouteCase& c : route_cases())
    for (int64_t m : {1, 3, 33, 257})
      for (DType d : {DType::kF32, DType::kBF16, DType::kF16}) {
        check_route(c, m, d, false, seed++);
        if (::testing::Test::HasFailure()) return;
      }
}

TEST(CudaMoeRoute, TiesGoToTheLowerIndexAsOnTheCpu) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 1000;
  for (const RouteCase& c : route_cases())
    for (int64_t m : {1, 33, 257})
      for (DType d : {DType::kF32, DType::kBF16}) {
        check_route(c, m, d, true, seed++);
        if (::testing::Test::HasFailure()) return;
      }
}

TEST(CudaMoeRoute, ManyTokens) {
  SKIP_WITHOUT_GPU();
  check_route(route_cases()[5], 4099, DType::kBF16, false, 77);
  check_route(route_cases()[0], 4099, DType::kBF16, false, 78);
}

TEST(CudaMoeRoute, ArgumentErrors) {  // checked before any launch: runs without a GPU
  int32_t ids[8];
  float w[8], logits[8] = {};
  const auto code = [](const Status& s) { return s.code(); };
  EXPECT_EQ(code(cuda::moe_route(softmax_topk(1024, 4, true), logits, DType::kF32, 1, nullptr,
                                 ids, w, nullptr)),
            StatusCode::kInvalidArgument);  // too many experts for the kernel
  EXPECT_EQ(code(cuda::moe_route(softmax_topk(8, 9, true), logits, DType::kF32, 1, nullptr, ids,
                                 w, nullptr)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(cuda::moe_route(grouped(256, 8, 6, 4, false, 1.0f), logits, DType::kF32, 1,
                                 nullptr, ids, w, nullptr)),
            StatusCode::kInvalidArgument);  // 6 groups do not divide 256
  EXPECT_EQ(code(cuda::moe_route(grouped(256, 8, 8, 4, true, 1.0f), logits, DType::kF32, 1,
                                 nullptr, ids, w, nullptr)),
            StatusCode::kInvalidArgument);  // the bias is missing
  EXPECT_EQ(code(cuda::moe_route(softmax_topk(8, 2, true), logits, DType::kF32, 1, logits, ids,
                                 w, nullptr)),
            StatusCode::kInvalidArgument);  // a bias the mode does not use
  EXPECT_EQ(code(cuda::moe_route(softmax_topk(8, 2, true), nullptr, DType::kF32, 1, nullptr, ids,
                                 w, nullptr)),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(cuda::moe_route(softmax_topk(8, 2, true), logits, DType(7), 1, nullptr, ids, w,
                                 nullptr)),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(cuda::moe_route(softmax_topk(8, 2, true), nullptr, DType::kF32, 0, nullptr, nullptr,
                              nullptr, nullptr)
                  .ok());  // no tokens: nothing to do
}

// ---- dispatch ----

struct DispatchRef {
  std::vector<int32_t> offsets, sorted, block_expert, counts;
};

// The definition in dispatch.h, literally.
DispatchRef cpu_dispatch(const cuda::MoEDispatchShape& s, const std::vector<int32_t>& ids,
                         const std::vector<int32_t>* map) {
  DispatchRef r;
  const int64_t cap = cuda::moe_dispatch_capacity(s), L = s.local_experts, B = s.block;
  std::vector<std::vector<int32_t>> lists(static_cast<size_t>(L));
  for (int64_t p = 0; p < s.tokens * s.topk; ++p) {
    const int32_t g = ids[size_t(p)];
    if (g < 0 || g >= s.experts) continue;
    const int32_t e = map ? (*map)[size_t(g)] : g;
    if (e < 0 || e >= L) continue;
    lists[size_t(e)].push_back(int32_t(p));
  }
  r.sorted.assign(size_t(cap), -1);
  r.block_expert.assign(size_t(cap / std::max<int64_t>(B, 1)), -1);
  r.offsets.push_back(0);
  for (int64_t e = 0; e < L; ++e) {
    const auto& l = lists[size_t(e)];
    const int32_t off = r.offsets.back();
    std::copy(l.begin(), l.end(), r.sorted.begin() + off);
    const int32_t padded = int32_t((int64_t(l.size()) + B - 1) / B * B);
    for (int32_t b = off / int32_t(B); b < (off + padded) / int32_t(B); ++b)
      r.block_expert[size_t(b)] = int32_t(e);
    r.counts.push_back(int32_t(l.size()));
    r.offsets.push_back(off + padded);
  }
  return r;
}

struct DevDispatch {
  DevBuf offsets, sorted, block_expert, counts, ws;
  explicit DevDispatch(const cuda::MoEDispatchShape& s)
      : offsets(size_t(s.local_experts + 1) * 4),
        sorted(size_t(cuda::moe_dispatch_capacity(s)) * 4),
        block_expert(size_t(cuda::moe_dispatch_capacity(s) / s.block) * 4),
        counts(size_t(s.local_experts) * 4),
        ws(cuda::moe_dispatch_workspace_bytes(s), 0x5A) {}
  Status run(const cuda::MoEDispatchShape& s, const int32_t* ids, const int32_t* map,
             cudaStream_t st) {
    return cuda::moe_dispatch(s, ids, map, offsets.as<int32_t>(), sorted.as<int32_t>(),
                              block_expert.as<int32_t>(), counts.as<int32_t>(), ws.p, st);
  }
  void expect_eq(const cuda::MoEDispatchShape& s, const DispatchRef& r) {
    const int64_t cap = cuda::moe_dispatch_capacity(s);
    EXPECT_EQ(to_host<int32_t>(offsets.p, size_t(s.local_experts + 1)), r.offsets);
    EXPECT_EQ(to_host<int32_t>(counts.p, size_t(s.local_experts)), r.counts);
    EXPECT_EQ(to_host<int32_t>(sorted.p, size_t(cap)), r.sorted);
    EXPECT_EQ(to_host<int32_t>(block_expert.p, size_t(cap / s.block)), r.block_expert);
  }
};

void check_dispatch(const std::string& name, const cuda::MoEDispatchShape& s,
                    const std::vector<int32_t>& ids, const std::vector<int32_t>* map) {
  SCOPED_TRACE(name + " M=" + std::to_string(s.tokens) + " k=" + std::to_string(s.topk) +
               " E=" + std::to_string(s.experts) + " local=" + std::to_string(s.local_experts) +
               " B=" + std::to_string(s.block));
  DevBuf d_ids(ids.size() * 4), d_map(map ? map->size() * 4 : 0);
  if (!ids.empty()) {
    CUDA_OK(cudaMemcpy(d_ids.p, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  }
  if (map) {
    CUDA_OK(cudaMemcpy(d_map.p, map->data(), map->size() * 4, cudaMemcpyHostToDevice));
  }
  DevDispatch d(s);
  MXQ_OK(d.run(s, d_ids.as<int32_t>(), map ? d_map.as<int32_t>() : nullptr, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  d.expect_eq(s, cpu_dispatch(s, ids, map));
}

// Distinct experts per token drawn from [lo, hi).
std::vector<int32_t> random_ids(int64_t m, int64_t k, int lo, int hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids;
  std::vector<int32_t> pool;
  for (int e = lo; e < hi; ++e) pool.push_back(e);
  for (int64_t t = 0; t < m; ++t) {
    std::shuffle(pool.begin(), pool.end(), rng);
    ids.insert(ids.end(), pool.begin(), pool.begin() + k);
  }
  return ids;
}

TEST(CudaMoeDispatch, RandomRoutingsEveryBlockSize) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 5;
  for (int64_t b : {1, 16, 64})
    for (int64_t m : {1, 3, 33, 257, 5000})
      for (auto [e, k] : {std::pair<int64_t, int64_t>{128, 4}, {256, 8}, {128, 8}, {8, 2}}) {
        const cuda::MoEDispatchShape s{m, k, e, e, b};
        check_dispatch("random", s, random_ids(m, k, 0, int(e), seed++), nullptr);
        if (::testing::Test::HasFailure()) return;
      }
}

TEST(CudaMoeDispatch, ZeroTokenExpertsAndOneExpertForAll) {
  SKIP_WITHOUT_GPU();
  // Only experts 100..107 of 256 used: the rest have empty (zero-length) ranges.
  check_dispatch("zero-token experts", {333, 4, 256, 256, 16}, random_ids(333, 4, 100, 108, 9),
                 nullptr);
  // Every pair on expert 3 (k = 1 and k = 4 with the same id in every slot).
  for (int64_t k : {1, 4}) {
    const cuda::MoEDispatchShape s{1000, k, 64, 64, 64};
    check_dispatch("all on one expert", s, std::vector<int32_t>(size_t(1000 * k), 3), nullptr);
  }
  // No tokens at all.
  check_dispatch("no tokens", {0, 8, 256, 256, 16}, {}, nullptr);
  // Out-of-range ids are dropped.
  check_dispatch("out-of-range ids", {4, 2, 8, 8, 4}, {0, -1, 8, 7, 3, 3, 100, 0}, nullptr);
}

TEST(CudaMoeDispatch, ExpertMapDropsNonLocalExperts) {
  SKIP_WITHOUT_GPU();
  // 256 global experts, this rank holds 32..63 (local 0..31), reversed order; the rest -1.
  std::vector<int32_t> map(256, -1);
  for (int g = 32; g < 64; ++g) map[size_t(g)] = 63 - g;
  for (int64_t m : {1, 33, 2049})
    for (int64_t b : {16, 64})
      check_dispatch("expert map", {m, 8, 256, 32, b}, random_ids(m, 8, 0, 256, uint32_t(m + b)),
                     &map);
  // Map to a local index out of range (>= local_experts) also drops.
  std::vector<int32_t> odd = {0, 5, 1, -1, 2, 9};
  check_dispatch("odd map", {50, 2, 6, 3, 4}, random_ids(50, 2, 0, 6, 3), &odd);
}

TEST(CudaMoeDispatch, CapacityAndArgumentErrors) {  // host only: runs without a GPU
  EXPECT_EQ(cuda::moe_dispatch_capacity({1, 8, 256, 256, 16}), 8 * 16);
  EXPECT_EQ(cuda::moe_dispatch_capacity({1000, 8, 256, 256, 64}), 8000 + 256 * 63);  // 377 * 64
  EXPECT_EQ(cuda::moe_dispatch_capacity({0, 8, 256, 256, 64}), 0);
  EXPECT_EQ(cuda::moe_dispatch_workspace_bytes({1000, 8, 256, 256, 64}), size_t(16 * 256 * 4));
  int32_t x[4];
  const auto err = [&](cuda::MoEDispatchShape s, const int32_t* map) {
    return cuda::moe_dispatch(s, x, map, x, x, x, nullptr, x, nullptr).code();
  };
  EXPECT_EQ(err({4, 2, 8, 4, 16}, nullptr), StatusCode::kInvalidArgument);  // local != E, no map
  EXPECT_EQ(err({4, 2, 8, 8, 0}, nullptr), StatusCode::kInvalidArgument);   // block 0
  EXPECT_EQ(err({4, 0, 8, 8, 16}, nullptr), StatusCode::kInvalidArgument);  // topk 0
  EXPECT_EQ(err({4, 2, 8, 4096, 16}, x), StatusCode::kInvalidArgument);     // too many local
  EXPECT_EQ(cuda::moe_dispatch({4, 2, 8, 8, 16}, nullptr, nullptr, x, x, x, nullptr, x, nullptr)
                .code(),
            StatusCode::kInvalidArgument);
}

// ---- routing + dispatch in one CUDA graph ----

// moe_gather_rows: rows in dispatch order, exact copies; padding rows zeroed or left as they
// were (a sentinel), 16-byte and unaligned (2-byte) paths.
TEST(CudaMoeDispatch, GatherRowsInDispatchOrder) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(7);
  for (int64_t ldx : {int64_t(96), int64_t(97)})  // 97: unaligned rows, the 2-byte copy
    for (bool zero : {true, false}) {
      const int64_t m = 5, h = 96, topk = 2, cap = 24;
      std::vector<uint16_t> x(size_t(m * ldx));
      for (auto& v : x) v = uint16_t(g());
      std::vector<int32_t> sorted(size_t(cap), -1);
      for (int64_t r = 0; r < cap; ++r)
        if (r % 3 != 2) sorted[size_t(r)] = int32_t(g() % uint32_t(m * topk));
      testing::Dev<uint16_t> dx(x);
      testing::Dev<int32_t> ds(sorted);
      testing::Dev<uint16_t> dout(std::vector<uint16_t>(size_t(cap * h), 0xABCD));
      ASSERT_TRUE(cuda::moe_gather_rows(dx.p, ldx, h, 2, ds.p, cap, topk, zero, dout.p, nullptr).ok());
      const std::vector<uint16_t> out = dout.get();
      for (int64_t r = 0; r < cap; ++r)
        for (int64_t c = 0; c < h; ++c) {
          const int p = sorted[size_t(r)];
          const uint16_t want = p >= 0 ? x[size_t((p / topk) * ldx + c)] : zero ? 0 : 0xABCD;
          ASSERT_EQ(out[size_t(r * h + c)], want) << "row " << r << " col " << c << " ldx " << ldx;
        }
    }
  EXPECT_FALSE(cuda::moe_gather_rows(nullptr, 8, 8, 4, nullptr, 8, 1, true, nullptr, nullptr).ok());
}

TEST(CudaMoe, RoutingAndDispatchCapturedInACudaGraph) {
  SKIP_WITHOUT_GPU();
  const MoEParams p = grouped(256, 8, 8, 4, true, 2.5f);
  const int64_t m = 300;
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<float> lv(size_t(m * p.experts)), bias(size_t(p.experts));
  for (float& x : lv) x = nd(rng);
  for (float& b : bias) b = 0.02f * nd(rng);
  const auto logits = encode(lv, DType::kBF16);
  DevBuf d_logits(logits.size()), d_bias(bias.size() * 4), d_ids(size_t(m * p.topk) * 4),
      d_w(size_t(m * p.topk) * 4), g_ids(size_t(m * p.topk) * 4), g_w(size_t(m * p.topk) * 4);
  CUDA_OK(cudaMemcpy(d_logits.p, logits.data(), logits.size(), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d_bias.p, bias.data(), bias.size() * 4, cudaMemcpyHostToDevice));
  const cuda::MoEDispatchShape s{m, p.topk, p.experts, p.experts, 16};
  DevDispatch direct(s), graphed(s);

  MXQ_OK(cuda::moe_route(p, d_logits.p, DType::kBF16, m, d_bias.as<float>(), d_ids.as<int32_t>(),
                         d_w.as<float>(), nullptr));
  MXQ_OK(direct.run(s, d_ids.as<int32_t>(), nullptr, nullptr));
  CUDA_OK(cudaDeviceSynchronize());

  cudaStream_t st;
  CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  const Status r1 = cuda::moe_route(p, d_logits.p, DType::kBF16, m, d_bias.as<float>(),
                                    g_ids.as<int32_t>(), g_w.as<float>(), st);
  const Status r2 = graphed.run(s, g_ids.as<int32_t>(), nullptr, st);
  CUDA_OK(cudaStreamEndCapture(st, &graph));
  MXQ_OK(r1);
  MXQ_OK(r2);
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int rep = 0; rep < 3; ++rep) CUDA_OK(cudaGraphLaunch(exec, st));
  CUDA_OK(cudaStreamSynchronize(st));

  EXPECT_EQ(to_host<int32_t>(g_ids.p, size_t(m * p.topk)),
            to_host<int32_t>(d_ids.p, size_t(m * p.topk)));
  EXPECT_EQ(to_host<float>(g_w.p, size_t(m * p.topk)), to_host<float>(d_w.p, size_t(m * p.topk)));
  const auto ids = to_host<int32_t>(d_ids.p, size_t(m * p.topk));
  graphed.expect_eq(s, cpu_dispatch(s, ids, nullptr));
  cpu::TopK ref;
  MXQ_OK(cpu::route(p, DenseView{logits.data(), DType::kBF16, m, p.experts},
                    DenseView{bias.data(), DType::kF32, 1, p.experts}, ref));
  EXPECT_EQ(ids, ref.ids);

  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(st);
}

}  // namespace
}  // namespace mxq
