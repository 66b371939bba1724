// MX-aware sharding (include/mxq/shard.h, issue 21 deliverable 1), on the CPU: the shards of
// every layout and format reassemble to the original bytes; the ranks' results joined as the
// collective would (column: concatenation, bitwise; row / expert / tensor parallel: a sum of
// partial outputs) give the full layer's cpu-reference output; bad splits are errors naming
// the rule.
#include "mxq/shard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/reference/reference_backend.h"
#include "mxq/numerics.h"
#include "test_weights.h"  // tests/cuda: random_weights

namespace mxq {
namespace {

using testing::random_weights;
using testing::Weights;

constexpr ElemType kFormats[] = {ElemType::kE2M1, ElemType::kE2M3, ElemType::kE4M3, ElemType::kInt8};

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = num::f32_to_bf16(nd(g));
  return v;
}
std::vector<float> random_f32(size_t n, uint32_t seed, float scale = 0.1f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = scale * nd(g);
  return v;
}
double rel(const std::vector<float>& a, const std::vector<float>& b) {
  double se = 0, ss = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    se += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    ss += double(b[i]) * b[i];
  }
  return std::sqrt(se / std::max(ss, 1e-300));
}

// ---- linear ----------------------------------------------------------------------------------

struct LinearCase {
  Problem p;
  Weights w;
  std::vector<float> bias;
  std::vector<uint16_t> x;
  LinearWeights lw() const { return {w.view, {bias.data(), DType::kF32, 1, p.n}, 1.0f}; }
};
LinearCase linear_case(ElemType e, int64_t m, int64_t n, int64_t k, ActKey act = ActKey::kBF16) {
  LinearCase c{Problem::linear(e, act, m, n, k, true), random_weights(e, 1, n, k, uint32_t(n + k), 120, 130),
               random_f32(size_t(n), 3), random_bf16(size_t(m * k), 4)};
  c.p.out = DType::kF32;
  return c;
}
std::vector<float> run_linear(const Problem& p, const LinearWeights& w, const std::vector<uint16_t>& x,
                              int64_t x_cols, int64_t x_col0) {
  // x columns [x_col0, x_col0 + p.k) of an [m, x_cols] activation
  std::vector<uint16_t> xs(size_t(p.m * p.k));
  for (int64_t r = 0; r < p.m; ++r)
    std::memcpy(&xs[size_t(r * p.k)], &x[size_t(r * x_cols + x_col0)], size_t(p.k) * 2);
  std::vector<float> y(size_t(p.m * p.n));
  const Status s = cpu::reference_linear(p, w, {xs.data(), DType::kBF16, p.m, p.k},
                                         {y.data(), DType::kF32, p.m, p.n});
  EXPECT_TRUE(s.ok()) << s.to_string();
  return y;
}

TEST(ShardLinear, ColumnShardsAreZeroCopyRowRangesThatReassemble) {
  for (ElemType e : kFormats)
    for (int ranks : {1, 2, 4}) {
      const LinearCase c = linear_case(e, 3, 64, 96);
      std::vector<uint8_t> packed, scales;
      std::vector<float> bias;
      for (int r = 0; r < ranks; ++r) {
        auto s = shard_linear(c.p, c.lw(), LinearParallel::kColumn, {r, ranks});
        ASSERT_TRUE(s.ok()) << s.status().to_string();
        const LinearShard& sh = s.value();
        EXPECT_TRUE(sh.zero_copy);
        EXPECT_EQ(sh.problem.n, 64 / ranks);
        EXPECT_EQ(sh.problem.k, 96);
        EXPECT_EQ(sh.n0, r * 64 / ranks);
        EXPECT_TRUE(sh.problem.bias);
        const MXWeightView& v = sh.weights.w;
        EXPECT_EQ(v.n, 64 / ranks);
        packed.insert(packed.end(), v.packed, v.packed + v.n * packed_bytes(e, 96));
        scales.insert(scales.end(), v.scales, v.scales + v.n * 3);
        const float* b = static_cast<const float*>(sh.weights.bias.data);
        bias.insert(bias.end(), b, b + sh.weights.bias.cols);
        EXPECT_NE(sh.describe(64, 96).find("column parallel, N [" + std::to_string(sh.n0)),
                  std::string::npos) << sh.describe(64, 96);
      }
      EXPECT_EQ(packed, c.w.packed) << mx_format_name(e) << " ranks " << ranks;
      EXPECT_EQ(scales, c.w.scales);
      EXPECT_EQ(bias, c.bias);
    }
}

TEST(ShardLinear, RowShardsSplitKOnBlocksAndReassemble) {
  for (ElemType e : kFormats)
    for (int ranks : {1, 2, 4}) {
      const int64_t n = 48, k = 128, per = k / ranks;
      const LinearCase c = linear_case(e, 3, n, k);
      std::vector<uint8_t> packed(c.w.packed.size()), scales(c.w.scales.size());
      for (int r = 0; r < ranks; ++r) {
        auto s = shard_linear(c.p, c.lw(), LinearParallel::kRow, {r, ranks});
        ASSERT_TRUE(s.ok()) << s.status().to_string();
        const LinearShard& sh = s.value();
        EXPECT_EQ(sh.zero_copy, ranks == 1);
        EXPECT_EQ(sh.problem.k, per);
        EXPECT_EQ(sh.k0, r * per);
        EXPECT_EQ(sh.problem.bias, r == 0) << "the bias on rank 0 only";
        EXPECT_EQ(sh.weights.bias.data != nullptr, r == 0);
        const MXWeightView& v = sh.weights.w;
        ASSERT_EQ(v.k, per);
        const int64_t rb = packed_bytes(e, k), pb = packed_bytes(e, per);
        for (int64_t row = 0; row < n; ++row) {
          std::memcpy(&packed[size_t(row * rb + r * pb)], v.packed + row * pb, size_t(pb));
          std::memcpy(&scales[size_t(row * (k / 32) + r * (per / 32))], v.scales + row * (per / 32),
                      size_t(per / 32));
        }
      }
      EXPECT_EQ(packed, c.w.packed) << mx_format_name(e) << " ranks " << ranks;
      EXPECT_EQ(scales, c.w.scales);
    }
}

TEST(ShardLinear, JoinedResultsAreTheLayer) {
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3})
    for (int ranks : {2, 4}) {
      const LinearCase c = linear_case(e, 5, 64, 256);
      const std::vector<float> full = run_linear(c.p, c.lw(), c.x, 256, 0);
      // column parallel: the concatenation of the ranks' columns, bit for bit
      std::vector<float> cat(full.size());
      for (int r = 0; r < ranks; ++r) {
        auto s = shard_linear(c.p, c.lw(), LinearParallel::kColumn, {r, ranks});
        ASSERT_TRUE(s.ok());
        const std::vector<float> y = run_linear(s.value().problem, s.value().weights, c.x, 256, 0);
        for (int64_t t = 0; t < 5; ++t)
          for (int64_t j = 0; j < s.value().problem.n; ++j)
            cat[size_t(t * 64 + s.value().n0 + j)] = y[size_t(t * s.value().problem.n + j)];
      }
      EXPECT_EQ(0, std::memcmp(cat.data(), full.data(), full.size() * 4)) << "column parallel";
      // row parallel: the sum of the partial outputs (the all-reduce), bias once
      std::vector<float> sum(full.size(), 0.0f);
      for (int r = 0; r < ranks; ++r) {
        auto s = shard_linear(c.p, c.lw(), LinearParallel::kRow, {r, ranks});
        ASSERT_TRUE(s.ok());
        const std::vector<float> y = run_linear(s.value().problem, s.value().weights, c.x, 256, s.value().k0);
        for (size_t i = 0; i < sum.size(); ++i) sum[i] += y[i];
      }
      EXPECT_LT(rel(sum, full), 1e-6) << "row parallel, " << ranks << " ranks";
    }
}

// describe() is what `mxq explain --tp` and the torch modules print: exact lines, sizes in the
// unit that shows them, the row-parallel bias note only where the layer has a bias.
TEST(ShardLinear, DescribeNamesRangesBytesAndTheBias) {
  const LinearCase c = linear_case(ElemType::kE2M1, 1, 64, 256);  // rows of 128 + 8 bytes
  auto col = shard_linear(c.p, c.lw(), LinearParallel::kColumn, {1, 2});
  ASSERT_TRUE(col.ok()) << col.status().to_string();
  // 32 rows x 136 bytes + 32 f32 bias values
  EXPECT_EQ(col.value().describe(64, 256),
            "rank 1 of 2: column parallel, N [32, 64) of 64, K [0, 256) of 256, 4.4 KiB (view)");
  auto r0 = shard_linear(c.p, c.lw(), LinearParallel::kRow, {0, 2});
  auto r1 = shard_linear(c.p, c.lw(), LinearParallel::kRow, {1, 2});
  ASSERT_TRUE(r0.ok() && r1.ok());
  EXPECT_EQ(r0.value().describe(64, 256),  // 64 x (64 + 4) bytes + 64 f32 bias values
            "rank 0 of 2: row parallel, N [0, 64) of 64, K [0, 128) of 256, 4.5 KiB (copy), bias");
  EXPECT_EQ(r1.value().describe(64, 256),  // the same without the bias: 4.25 KiB
            "rank 1 of 2: row parallel, N [0, 64) of 64, K [128, 256) of 256, 4.2 KiB (copy), "
            "no bias (rank 0 adds it)");
  Problem nb = c.p;
  nb.bias = false;
  auto r0nb = shard_linear(nb, {c.w.view, {}, 1.0f}, LinearParallel::kRow, {0, 4});
  ASSERT_TRUE(r0nb.ok()) << r0nb.status().to_string();
  EXPECT_EQ(r0nb.value().describe(64, 256),  // 64 x (32 + 2) bytes, no bias note
            "rank 0 of 4: row parallel, N [0, 64) of 64, K [0, 64) of 256, 2.1 KiB (copy)");
  const LinearCase tiny = linear_case(ElemType::kE2M1, 1, 8, 32);
  auto t = shard_linear(tiny.p, tiny.lw(), LinearParallel::kColumn, {0, 2});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t.value().bytes(), 4u * (16 + 1) + 4u * 4);
  EXPECT_EQ(t.value().describe(8, 32),
            "rank 0 of 2: column parallel, N [0, 4) of 8, K [0, 32) of 32, 84 B (view)");
}

TEST(ShardLinear, BadSplitsAreErrorsNamingTheRule) {
  const LinearCase c = linear_case(ElemType::kE2M1, 1, 48, 96);
  auto col = shard_linear(c.p, c.lw(), LinearParallel::kColumn, {0, 5});
  ASSERT_FALSE(col.ok());
  EXPECT_NE(col.status().message().find("N = 48 does not split into 5"), std::string::npos)
      << col.status().to_string();
  auto row = shard_linear(c.p, c.lw(), LinearParallel::kRow, {0, 2});  // 48 per rank: no
  ASSERT_FALSE(row.ok());
  EXPECT_NE(row.status().message().find("multiple of 32 x 2 = 64"), std::string::npos)
      << row.status().to_string();
  auto rank = shard_linear(c.p, c.lw(), LinearParallel::kColumn, {2, 2});
  ASSERT_FALSE(rank.ok());
  EXPECT_NE(rank.status().message().find("rank 2 of 2"), std::string::npos);
  const LinearCase f = linear_case(ElemType::kE2M1, 1, 48, 128, ActKey::kFP8DynamicToken);
  auto fp8 = shard_linear(f.p, f.lw(), LinearParallel::kRow, {0, 2});
  ASSERT_FALSE(fp8.ok());
  EXPECT_NE(fp8.status().message().find("fp8-dynamic-token"), std::string::npos);
  EXPECT_TRUE(shard_linear(f.p, f.lw(), LinearParallel::kColumn, {0, 2}).ok())
      << "column parallel keeps each token's whole K";
  // fp8-dynamic-tensor: one amax over the whole x; a K slice would change it, N slices not.
  const LinearCase ft = linear_case(ElemType::kE2M1, 1, 48, 128, ActKey::kFP8DynamicTensor);
  auto fpt = shard_linear(ft.p, ft.lw(), LinearParallel::kRow, {0, 2});
  ASSERT_FALSE(fpt.ok());
  EXPECT_NE(fpt.status().message().find("fp8-dynamic-tensor"), std::string::npos)
      << fpt.status().to_string();
  EXPECT_TRUE(shard_linear(ft.p, ft.lw(), LinearParallel::kColumn, {0, 2}).ok())
      << "column parallel keeps the whole x";
  // fp8-dynamic-group128: K slices of whole 128-column groups keep every scale (and the row
  // shards then sum to the layer); a slice that cuts a group is refused.
  const LinearCase fg = linear_case(ElemType::kE2M1, 3, 48, 384, ActKey::kFP8DynamicGroup128);
  auto cut = shard_linear(fg.p, fg.lw(), LinearParallel::kRow, {0, 2});  // 192 per rank
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("fp8-dynamic-group128"), std::string::npos)
      << cut.status().to_string();
  EXPECT_NE(cut.status().message().find("K / ranks = 192 is not a multiple of 128"),
            std::string::npos) << cut.status().to_string();
  const std::vector<float> full = run_linear(fg.p, fg.lw(), fg.x, 384, 0);
  std::vector<float> sum(full.size(), 0.0f);
  for (int r = 0; r < 3; ++r) {  // 128 per rank: one group each
    auto sh = shard_linear(fg.p, fg.lw(), LinearParallel::kRow, {r, 3});
    ASSERT_TRUE(sh.ok()) << sh.status().to_string();
    const std::vector<float> y = run_linear(sh.value().problem, sh.value().weights, fg.x, 384, sh.value().k0);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += y[i];
  }
  EXPECT_LT(rel(sum, full), 1e-6) << "row parallel over whole groups";
  // weights that do not match the problem: the contract's own error
  LinearWeights bad = c.lw();
  bad.w.n = 32;
  EXPECT_FALSE(shard_linear(c.p, bad, LinearParallel::kColumn, {0, 2}).ok());
}

// ---- MoE -------------------------------------------------------------------------------------

struct MoECase {
  Problem p;
  Weights w13, w1, w3, w2;
  std::vector<float> b13, b1, b3, b2, logits;
  std::vector<uint16_t> x;
  MoEWeights mw() const {
    MoEWeights m;
    const int64_t e = p.moe.experts, h = p.n, i = p.k;
    if (p.moe.layout == io::GateUpLayout::kSeparate) {
      m.w1 = w1.view;
      m.w3 = w3.view;
      m.bias1 = {b1.data(), DType::kF32, e, i};
      m.bias3 = {b3.data(), DType::kF32, e, i};
    } else {
      m.w13 = w13.view;
      m.bias13 = {b13.data(), DType::kF32, e, 2 * i};
    }
    m.w2 = w2.view;
    m.bias2 = {b2.data(), DType::kF32, e, h};
    return m;
  }
};
MoECase moe_case(ElemType el, io::GateUpLayout layout, int64_t experts, int64_t inter,
                 ActKey act = ActKey::kBF16) {
  const int64_t m = 7, h = 64, topk = 2;
  MoECase c;
  c.p = Problem::moe_problem(el, act, m, h, inter, experts, topk);
  c.p.moe.layout = layout;
  c.p.moe.activation = layout == io::GateUpLayout::kInterleaved ? MoEActivation::kSwigluOAI
                                                                : MoEActivation::kSiluAndMul;
  c.p.bias = true;
  c.p.out = DType::kF32;
  c.w13 = random_weights(el, experts, 2 * inter, h, 11, 120, 128);
  c.w1 = random_weights(el, experts, inter, h, 12, 120, 128);
  c.w3 = random_weights(el, experts, inter, h, 13, 120, 128);
  c.w2 = random_weights(el, experts, h, inter, 14, 120, 128);
  c.b13 = random_f32(size_t(experts * 2 * inter), 15);
  c.b1 = random_f32(size_t(experts * inter), 16);
  c.b3 = random_f32(size_t(experts * inter), 17);
  c.b2 = random_f32(size_t(experts * h), 18);
  c.logits = random_f32(size_t(m * experts), 19, 1.0f);
  c.x = random_bf16(size_t(m * h), 20);
  return c;
}
std::vector<float> run_moe(const MoECase& c, const Problem& p, const MoEWeights& w,
                           const int32_t* map) {
  std::vector<float> y(size_t(p.m * p.n));
  MoERouting r;
  r.router_logits = {c.logits.data(), DType::kF32, p.m, p.moe.experts};
  r.expert_map = map;
  const Status s = cpu::reference_moe(p, w, {c.x.data(), DType::kBF16, p.m, p.n}, r,
                                      {y.data(), DType::kF32, p.m, p.n});
  EXPECT_TRUE(s.ok()) << s.to_string();
  return y;
}

constexpr io::GateUpLayout kLayouts[] = {io::GateUpLayout::kChunked, io::GateUpLayout::kInterleaved,
                                         io::GateUpLayout::kSeparate};

TEST(ShardMoE, ExpertParallelRangesMapsAndResults) {
  for (io::GateUpLayout layout : kLayouts)
    for (int ranks : {1, 2, 4, 6}) {
      const MoECase c = moe_case(ElemType::kE2M1, layout, 6, 64);
      const std::vector<float> full = run_moe(c, c.p, c.mw(), nullptr);
      std::vector<float> sum(full.size(), 0.0f);
      std::vector<int> owner(6, -1);
      for (int r = 0; r < ranks; ++r) {
        auto s = shard_moe(c.p, c.mw(), MoEParallel::kExpert, {r, ranks});
        ASSERT_TRUE(s.ok()) << s.status().to_string();
        const MoEShard& sh = s.value();
        EXPECT_TRUE(sh.zero_copy);
        EXPECT_TRUE(sh.problem.moe.expert_map);
        // balanced: 6 experts over 4 ranks = 2, 2, 1, 1
        EXPECT_EQ(sh.e1 - sh.e0, 6 / ranks + (r < 6 % ranks ? 1 : 0));
        ASSERT_EQ(sh.expert_map.size(), 6u);
        for (int64_t e = 0; e < 6; ++e) {
          const bool mine = e >= sh.e0 && e < sh.e1;
          EXPECT_EQ(sh.expert_map[size_t(e)], mine ? int32_t(e - sh.e0) : -1);
          if (mine) {
            EXPECT_EQ(owner[size_t(e)], -1) << "expert " << e << " on two ranks";
            owner[size_t(e)] = r;
          }
        }
        EXPECT_EQ(sh.weights.w2.batch, sh.e1 - sh.e0);
        EXPECT_EQ(sh.weights.w2.packed, c.w2.view.packed + sh.e0 * 64 * packed_bytes(ElemType::kE2M1, 64));
        const std::vector<float> y = run_moe(c, sh.problem, sh.weights, sh.expert_map.data());
        for (size_t i = 0; i < sum.size(); ++i) sum[i] += y[i];
      }
      for (int e = 0; e < 6; ++e) EXPECT_GE(owner[size_t(e)], 0) << "expert " << e << " on no rank";
      EXPECT_LT(rel(sum, full), 1e-6) << io::gate_up_layout_name(layout) << " ranks " << ranks;
    }
}

TEST(ShardMoE, TensorParallelKeepsGateAndUpTogetherAndJoinsToTheLayer) {
  for (ElemType el : {ElemType::kE2M1, ElemType::kE4M3})
    for (io::GateUpLayout layout : kLayouts)
      for (int ranks : {2, 4}) {
        const int64_t inter = 128, per = inter / ranks;
        const MoECase c = moe_case(el, layout, 3, inter);
        const std::vector<float> full = run_moe(c, c.p, c.mw(), nullptr);
        std::vector<float> sum(full.size(), 0.0f);
        for (int r = 0; r < ranks; ++r) {
          auto s = shard_moe(c.p, c.mw(), MoEParallel::kTensor, {r, ranks});
          ASSERT_TRUE(s.ok()) << s.status().to_string();
          const MoEShard& sh = s.value();
          EXPECT_FALSE(sh.zero_copy);
          EXPECT_EQ(sh.problem.k, per);
          EXPECT_EQ(sh.i0, r * per);
          EXPECT_EQ(sh.weights.bias2.data != nullptr, r == 0) << "the down bias on rank 0 only";
          // The bytes: gate/up rows of intermediate column j of expert 1 are the source's.
          const int64_t rb = packed_bytes(el, 64);
          for (int64_t j = 0; j < per; j += 7) {
            const int64_t col = sh.i0 + j;
            if (layout == io::GateUpLayout::kSeparate) {
              EXPECT_EQ(0, std::memcmp(sh.weights.w1.packed + (1 * per + j) * rb,
                                       c.w1.view.packed + (1 * inter + col) * rb, size_t(rb)));
              EXPECT_EQ(0, std::memcmp(sh.weights.w3.packed + (1 * per + j) * rb,
                                       c.w3.view.packed + (1 * inter + col) * rb, size_t(rb)));
            } else {
              const bool chunked = layout == io::GateUpLayout::kChunked;
              const int64_t sg = chunked ? j : 2 * j, su = chunked ? per + j : 2 * j + 1;
              const int64_t fg = chunked ? col : 2 * col, fu = chunked ? inter + col : 2 * col + 1;
              EXPECT_EQ(0, std::memcmp(sh.weights.w13.packed + (2 * per + sg) * rb,
                                       c.w13.view.packed + (2 * inter + fg) * rb, size_t(rb)));
              EXPECT_EQ(0, std::memcmp(sh.weights.w13.packed + (2 * per + su) * rb,
                                       c.w13.view.packed + (2 * inter + fu) * rb, size_t(rb)));
              const float* b = static_cast<const float*>(sh.weights.bias13.data);
              EXPECT_EQ(b[2 * per + sg], c.b13[size_t(2 * inter + fg)]);
              EXPECT_EQ(b[2 * per + su], c.b13[size_t(2 * inter + fu)]);
            }
          }
          // down: columns [i0, i1) of every row, scales with them
          const int64_t pb = packed_bytes(el, per), fb = packed_bytes(el, inter);
          EXPECT_EQ(0, std::memcmp(sh.weights.w2.packed + 70 * pb,
                                   c.w2.view.packed + 70 * fb + packed_bytes(el, sh.i0), size_t(pb)));
          EXPECT_EQ(sh.weights.w2.scales[70 * (per / 32)], c.w2.view.scales[70 * (inter / 32) + sh.i0 / 32]);
          const std::vector<float> y = run_moe(c, sh.problem, sh.weights, nullptr);
          for (size_t i = 0; i < sum.size(); ++i) sum[i] += y[i];
        }
        EXPECT_LT(rel(sum, full), 1e-6) << mx_format_name(el) << " " << io::gate_up_layout_name(layout)
                                        << " ranks " << ranks;
      }
}

TEST(ShardMoE, BadSplitsAreErrorsNamingTheRule) {
  const MoECase c = moe_case(ElemType::kE2M1, io::GateUpLayout::kChunked, 3, 96);
  auto many = shard_moe(c.p, c.mw(), MoEParallel::kExpert, {0, 4});
  ASSERT_FALSE(many.ok());
  EXPECT_NE(many.status().message().find("4 ranks for 3 experts"), std::string::npos);
  auto tp = shard_moe(c.p, c.mw(), MoEParallel::kTensor, {0, 2});  // 48 per rank
  ASSERT_FALSE(tp.ok());
  EXPECT_NE(tp.status().message().find("I = 96 does not split"), std::string::npos)
      << tp.status().to_string();
  EXPECT_TRUE(shard_moe(c.p, c.mw(), MoEParallel::kTensor, {2, 3}).ok()) << "96 = 3 x 32";
  auto ep = shard_moe(c.p, c.mw(), MoEParallel::kExpert, {0, 3});
  ASSERT_TRUE(ep.ok());
  auto again = shard_moe(ep.value().problem, ep.value().weights, MoEParallel::kExpert, {0, 2});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("already has an expert map"), std::string::npos);
  const MoECase f = moe_case(ElemType::kE2M1, io::GateUpLayout::kChunked, 3, 64,
                             ActKey::kFP8DynamicToken);
  auto fp8 = shard_moe(f.p, f.mw(), MoEParallel::kTensor, {0, 2});
  ASSERT_FALSE(fp8.ok());
  EXPECT_NE(fp8.status().message().find("fp8-dynamic-token"), std::string::npos);
  EXPECT_TRUE(shard_moe(f.p, f.mw(), MoEParallel::kExpert, {0, 2}).ok());
  // fp8-dynamic-tensor: the intermediate's one amax spans every pair and all of I, so neither
  // split keeps it (one rank is the whole layer).
  const MoECase ft = moe_case(ElemType::kE2M1, io::GateUpLayout::kChunked, 3, 64,
                              ActKey::kFP8DynamicTensor);
  for (MoEParallel how : {MoEParallel::kTensor, MoEParallel::kExpert}) {
    auto t = shard_moe(ft.p, ft.mw(), how, {0, 2});
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("fp8-dynamic-tensor"), std::string::npos)
        << t.status().to_string();
    EXPECT_TRUE(shard_moe(ft.p, ft.mw(), how, {0, 1}).ok());
  }
  // fp8-dynamic-group128: the down GEMM's K = I slices must be whole 128-column groups (I = 64
  // is one short group: any split cuts it); expert parallel keeps every pair's whole row.
  const MoECase fg = moe_case(ElemType::kE2M1, io::GateUpLayout::kChunked, 3, 64,
                              ActKey::kFP8DynamicGroup128);
  auto cut = shard_moe(fg.p, fg.mw(), MoEParallel::kTensor, {0, 2});
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("I / ranks = 32 is not a multiple of 128"),
            std::string::npos) << cut.status().to_string();
  EXPECT_TRUE(shard_moe(fg.p, fg.mw(), MoEParallel::kExpert, {0, 2}).ok());
}

}  // namespace
}  // namespace mxq
