// The cpu backend's fused MoE layer. Semantics in cpu_backend.h; the per-expert GEMMs are the
// fused kernels of mx_gemv.h.
//
// Work layout for P = sum over active local experts of their routed (token, slot) pairs:
//   xg [P, Hq]   the act-quantized x rows of each active expert's tokens, expert by expert
//   h  [P, 2I]   gate/up outputs (chunked order: gate columns 0..I, up columns I..2I, except
//                interleaved weights, whose rows give gate/up alternately and stay that way)
//   a  [P, Iq]   activation, rounded to the activation dtype and act-quantized (zero past I)
//   o  [P, H]    down outputs + bias2
// Phases 1 (gate/up) and 3 (down) split the concatenated weight rows of all active experts
// into contiguous per-thread ranges, so every expert's weights stream once per call and the
// threads stay busy however the tokens are spread over experts. Phase 4 sums each token's
// pairs in ascending local-expert order.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "contract/debug_assert.h"
#include "contract/weight_checks.h"
#include "core/parallel.h"
#include "cpu/common/act_quant.h"
#include "cpu/common/host_memory.h"
#include "cpu/common/routing.h"
#include "cpu/fast/cpu_backend.h"
#include "cpu/fast/cpu_backend_internal.h"

namespace mxq::cpu::fast {

namespace {

using internal::OwnedWeight;
using io::GateUpLayout;

struct PreparedMoE final : PreparedWeights {
  MoEWeights w;  // the caller's views, with sanitized copies substituted where made
  OwnedWeight w13, w1, w3, w2;
  size_t bytes() const override {
    return w13.copy.size() + w1.copy.size() + w3.copy.size() + w2.copy.size();
  }
};

bool given(const DenseView& v) { return v.data != nullptr; }
bool given(const MXWeightView& w) { return w.packed != nullptr || w.scales != nullptr; }

float bias_at(const DenseView& b, int64_t i) {
  return b.data == nullptr ? 0.0f : load_f32(b.data, b.dtype, i);
}

// Evaluated in double like cpu-reference, on the FP32 gate/up values.
float activation(const MoEParams& q, float gf, float uf) {
  double g = gf, u = uf;
  if (q.activation == MoEActivation::kSiluAndMul) return float(g * (1.0 / (1.0 + std::exp(-g))) * u);
  const double limit = double(q.swiglu_limit), alpha = double(q.swiglu_alpha);
  g = std::min(g, limit);
  u = std::clamp(u, -limit, limit);
  return float(g * (1.0 / (1.0 + std::exp(-alpha * g))) * (u + 1.0));
}

// Calls fn(a, lo, hi) for the part of each active expert a's rows [0, rows) inside the
// flattened range [r0, r1) of n_active * rows rows.
template <typename Fn>
void for_expert_rows(int64_t r0, int64_t r1, int64_t rows, Fn&& fn) {
  for (int64_t a = r0 / rows; a * rows < r1; ++a) {
    const int64_t lo = std::max(r0, a * rows) - a * rows;
    const int64_t hi = std::min(r1, (a + 1) * rows) - a * rows;
    fn(a, lo, hi);
  }
}

}  // namespace

namespace internal {

Status run_moe_impl(const CpuBackendOptions& o, const Problem& p, const MoEWeights& w,
                    const DenseView& x, const MoERouting& r, const DenseMutView& y) {
  const MoEParams& q = p.moe;
  const int64_t m = p.m, h = p.n, inter = p.k, e_local = w.w2.batch;
  const int64_t hq = round_up_32(h), iq = round_up_32(inter);
  MXQ_DEBUG_ASSERT(x.dtype == act_input_dtype(p.act) && x.rows == m && x.cols == h &&
                       y.dtype == p.out && y.rows == m && y.cols == h,
                   "the entry checked x and y");
  MXQ_DEBUG_ASSERT(r.router_logits.rows == m && r.router_logits.cols == q.experts &&
                       q.expert_map == (r.expert_map != nullptr),
                   "the entry checked the routing views");

  TopK topk;  // route() checks its own arguments (it is called directly too); valid ones here
  MXQ_RETURN_IF_ERROR(route(q, r.router_logits, r.correction_bias, topk));

  // Pairs per local expert in token order; then each token's pairs by ascending local expert.
  std::vector<std::vector<int64_t>> tokens_of(static_cast<size_t>(e_local));
  std::vector<std::vector<float>> weights_of(static_cast<size_t>(e_local));
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t j = 0; j < q.topk; ++j) {
      const int32_t e = topk.ids[size_t(t * q.topk + j)];
      const int64_t local = r.expert_map != nullptr ? r.expert_map[e] : e;
      if (local < 0) continue;  // another rank's expert
      if (local >= e_local)
        return invalid_argument("cpu: moe expert_map: expert " + std::to_string(e) +
                                " maps to local " + std::to_string(local) + ", but only " +
                                std::to_string(e_local) + " local experts were prepared");
      tokens_of[size_t(local)].push_back(t);
      weights_of[size_t(local)].push_back(topk.weights[size_t(t * q.topk + j)]);
    }
  }
  std::vector<int64_t> active, offset;  // active local experts (ascending), first pair index
  int64_t n_pairs = 0;
  for (int64_t le = 0; le < e_local; ++le) {
    if (tokens_of[size_t(le)].empty()) continue;
    active.push_back(le);
    offset.push_back(n_pairs);
    n_pairs += int64_t(tokens_of[size_t(le)].size());
  }
  offset.push_back(n_pairs);
  const int64_t n_active = int64_t(active.size());
  const auto np_of = [&](int64_t a) { return offset[size_t(a + 1)] - offset[size_t(a)]; };

  std::vector<float> xq;  // [M, Hq]
  MXQ_RETURN_IF_ERROR(quantize_activations(p.act, x, w.input_scale13, hq, xq, p.act_rule));
  std::vector<float> xg(size_t(n_pairs * hq));
  for (int64_t a = 0; a < n_active; ++a) {
    const auto& toks = tokens_of[size_t(active[size_t(a)])];
    for (size_t i = 0; i < toks.size(); ++i)
      std::copy_n(xq.data() + toks[i] * hq, hq, xg.data() + (offset[size_t(a)] + int64_t(i)) * hq);
  }

  // Phase 1: gate/up. Rows [0, 2I) of each active expert: w13's rows, or w1's then w3's.
  const bool separate = q.layout == GateUpLayout::kSeparate;
  std::vector<float> hbuf(static_cast<size_t>(n_pairs * 2 * inter));
  std::vector<PackedX> xp;  // each active expert's rows of x, packed once for all threads
  xp.reserve(size_t(n_active));
  for (int64_t a = 0; a < n_active; ++a)
    xp.emplace_back(o.isa, p.weight, xg.data() + offset[size_t(a)] * hq, np_of(a), hq, hq);
  const int64_t min_rows1 = min_rows_per_thread(o, packed_bytes(p.weight, hq));
  parallel_chunks(n_active * 2 * inter, o.threads, min_rows1, [&](int64_t r0, int64_t r1) {
    for_expert_rows(r0, r1, 2 * inter, [&](int64_t a, int64_t lo, int64_t hi) {
      const int64_t le = active[size_t(a)];
      float* ha = hbuf.data() + offset[size_t(a)] * 2 * inter;
      if (!separate) {
        mx_gemm_rows(matrix(w.w13, le), xp[size_t(a)], ha, 2 * inter, lo, hi);
        return;
      }
      if (lo < inter)
        mx_gemm_rows(matrix(w.w1, le), xp[size_t(a)], ha, 2 * inter, lo, std::min(hi, inter));
      if (hi > inter)
        mx_gemm_rows(matrix(w.w3, le), xp[size_t(a)], ha + inter, 2 * inter,
                     std::max(lo, inter) - inter, hi - inter);
    });
  });
  xp.clear();

  // Phase 2: bias, activation, rounding to the activation dtype, act quantization per pair.
  const DType inter_dtype = act_input_dtype(p.act);
  std::vector<float> abuf(size_t(n_pairs * iq), 0.0f);
  std::vector<int64_t> expert_of_pair(static_cast<size_t>(n_pairs));
  for (int64_t a = 0; a < n_active; ++a)
    std::fill(expert_of_pair.begin() + offset[size_t(a)], expert_of_pair.begin() + offset[size_t(a + 1)],
              a);
  std::vector<uint8_t> failed(size_t(n_pairs) + 1, 0);
  const bool per_tensor = act_key_is_per_tensor_dynamic(p.act);
  mxq::detail::parallel_for(n_pairs, o.threads, std::max<int64_t>(1, 8192 / inter),
                       [&](int64_t p0, int64_t p1) {
    std::vector<float> gb(static_cast<size_t>(inter)), ub(static_cast<size_t>(inter));
    int64_t bias_expert = -1;
    for (int64_t pi = p0; pi < p1; ++pi) {
      const int64_t le = active[size_t(expert_of_pair[size_t(pi)])];
      if (le != bias_expert) {  // this expert's gate and up biases, in gate/up order
        for (int64_t i = 0; i < inter; ++i) {
          switch (q.layout) {
            case GateUpLayout::kInterleaved:
              gb[size_t(i)] = bias_at(w.bias13, le * 2 * inter + 2 * i);
              ub[size_t(i)] = bias_at(w.bias13, le * 2 * inter + 2 * i + 1);
              break;
            case GateUpLayout::kSeparate:
              gb[size_t(i)] = bias_at(w.bias1, le * inter + i);
              ub[size_t(i)] = bias_at(w.bias3, le * inter + i);
              break;
            default:
              gb[size_t(i)] = bias_at(w.bias13, le * 2 * inter + i);
              ub[size_t(i)] = bias_at(w.bias13, le * 2 * inter + inter + i);
          }
        }
        bias_expert = le;
      }
      const float* hr = hbuf.data() + pi * 2 * inter;
      float* ar = abuf.data() + pi * iq;
      const bool il = q.layout == GateUpLayout::kInterleaved;
      for (int64_t i = 0; i < inter; ++i) {
        const float g = (il ? hr[2 * i] : hr[i]) + gb[size_t(i)];
        const float u = (il ? hr[2 * i + 1] : hr[inter + i]) + ub[size_t(i)];
        ar[i] = round_to_dtype(activation(q, g, u), inter_dtype);
      }
      if (!per_tensor)
        failed[size_t(pi)] = act_quantize_row(p.act, ar, inter, w.input_scale2, ar, p.act_rule).ok() ? 0 : 1;
    }
  });
  // fp8-dynamic-tensor: one scale over the whole intermediate of the call (every pair's row),
  // as cpu-reference defines it; the padded columns [inter, iq) stay zero.
  if (per_tensor && !act_quantize_rows(p.act, abuf.data(), n_pairs, inter, iq, w.input_scale2,
                                       p.act_rule).ok())
    failed[0] = 1;
  if (std::find(failed.begin(), failed.end(), 1) != failed.end())
    return invalid_argument("cpu: moe: activation quantization of the intermediate failed (" +
                            p.to_string() + ")");

  // Phase 3: down, + bias2.
  std::vector<float> obuf(size_t(n_pairs * h));
  const int64_t min_rows3 = min_rows_per_thread(o, packed_bytes(p.weight, iq));
  for (int64_t a = 0; a < n_active; ++a)
    xp.emplace_back(o.isa, p.weight, abuf.data() + offset[size_t(a)] * iq, np_of(a), iq, iq);
  parallel_chunks(n_active * h, o.threads, min_rows3, [&](int64_t r0, int64_t r1) {
    for_expert_rows(r0, r1, h, [&](int64_t a, int64_t lo, int64_t hi) {
      const int64_t le = active[size_t(a)], np = np_of(a);
      float* oa = obuf.data() + offset[size_t(a)] * h;
      mx_gemm_rows(matrix(w.w2, le), xp[size_t(a)], oa, h, lo, hi);
      if (!given(w.bias2)) return;
      for (int64_t pi = 0; pi < np; ++pi)
        for (int64_t c = lo; c < hi; ++c) oa[pi * h + c] += bias_at(w.bias2, le * h + c);
    });
  });

  // Phase 4: weighted combine per token, ascending local expert (pairs were built that way).
  // The only writer of y, and it allocates nothing: a call that fails on a host allocation
  // (every buffer above) leaves y untouched.
  std::vector<std::vector<std::pair<int64_t, float>>> pairs_of(static_cast<size_t>(m));  // (pair, weight)
  for (int64_t a = 0; a < n_active; ++a) {
    const int64_t le = active[size_t(a)];
    for (int64_t i = 0; i < np_of(a); ++i)
      pairs_of[size_t(tokens_of[size_t(le)][size_t(i)])].push_back(
          {offset[size_t(a)] + i, weights_of[size_t(le)][size_t(i)]});
  }
  mxq::detail::parallel_for(m, o.threads, std::max<int64_t>(1, 8192 / h), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const auto& ps = pairs_of[size_t(t)];
      for (int64_t c = 0; c < h; ++c) {
        float acc = 0.0f;  // the pairs in order, as before (same bits)
        for (const auto& [pi, wt] : ps) acc += wt * obuf[size_t(pi * h + c)];
        store_f32(y.data, y.dtype, t * h + c, acc);
      }
    }
  });
  return Status::Ok();
}

}  // namespace internal

StatusOr<std::unique_ptr<PreparedWeights>> CpuBackend::do_prepare_moe(
    const Problem& p, const MoEWeights& w) const try {
  auto prepared = std::make_unique<PreparedMoE>();
  prepared->w = w;
  const auto sanitize = [&](const MXWeightView& v, int64_t k, OwnedWeight& own, MXWeightView& dst) {
    if (!given(v)) return;
    own = internal::sanitize_padding(v, k);
    dst = own.view;
  };
  sanitize(w.w13, p.n, prepared->w13, prepared->w.w13);
  sanitize(w.w1, p.n, prepared->w1, prepared->w.w1);
  sanitize(w.w3, p.n, prepared->w3, prepared->w.w3);
  sanitize(w.w2, p.k, prepared->w2, prepared->w.w2);
  return std::unique_ptr<PreparedWeights>(std::move(prepared));
} catch (const std::bad_alloc&) {
  return host_out_of_memory(name(), "prepare_moe", p);
}

Status CpuBackend::do_run_moe(const Problem& p, const PreparedWeights& pw, const DenseView& x,
                              const MoERouting& r, const DenseMutView& y, void*) const try {
  MXQ_DEBUG_ASSERT(dynamic_cast<const PreparedMoE*>(&pw) != nullptr,
                   "the entry checked that pw comes from this backend's prepare_moe");
  return internal::run_moe_impl(opts_, p, static_cast<const PreparedMoE&>(pw).w, x, r, y);
} catch (const std::bad_alloc&) {
  return host_out_of_memory(name(), "run_moe", p);
}

}  // namespace mxq::cpu::fast
