// The cuda-mma MoE layer (moe_layer.h): prepare and run around the GPU routing, dispatch,
// grouped GEMMs and combine.
#include "cuda/moe/moe_layer.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "contract/debug_assert.h"
#include "contract/weight_checks.h"
#include "cuda/common/cuda_check.h"
#include "cuda/common/device_memory.h"
#include "cuda/common/stream_workspace.h"
#include "cuda/gemm/frag_layout.h"
#include "cuda/gemm/mx_gemm.h"
#include "cuda/gemm/repack.h"
#include "cuda/mma_claims.h"
#include "cuda/moe/dispatch.h"
#include "cuda/moe/grouped_gemm.h"
#include "cuda/moe/kernels.h"
#include "cuda/moe/routing.h"
#include "cuda/quant/act_operand.h"
#include "mxq/numerics.h"
#if MXQ_WITH_HOPPER
#include "cuda/hopper/gemm.h"
#include "cuda/hopper/layout.h"
#endif

namespace mxq::cuda {
namespace {

using io::GateUpLayout;

struct PreparedMoE final : PreparedWeights {
  MoEKernels kernels = MoEKernels::kMma;
  int device = 0;
  ElemType elem = ElemType::kE2M1;
  int64_t local = 0, hidden = 0, inter = 0;
  DeviceBuffer w13, s13, w2, s2;             // fragment layout (kHopper: hopper layout, scales
                                             // inside, s13 / s2 empty); w13 in the gate/up order
  DeviceBuffer bias_gate, bias_up, bias2;    // FP32 [local, I], [local, I], [local, H] or empty
  RepackStats stats13, stats2;
  size_t staging = 0;
  size_t bytes() const override {
    return w13.bytes() + s13.bytes() + w2.bytes() + s2.bytes() + bias_gate.bytes() +
           bias_up.bytes() + bias2.bytes();
  }
};

bool on_device(const MXWeightView& w) {
  return is_device_pointer(w.packed) && is_device_pointer(w.scales);
}
size_t row_code_bytes(const MXWeightView& w) {
  return size_t(w.elem == ElemType::kE2M1 ? w.k / 2 : w.k);
}
size_t expert_bytes(const MXWeightView& w) {
  return size_t(w.n) * (row_code_bytes(w) + size_t(w.k / 32));
}

// Repacks `src` into `packed` / `scales` (allocated here; kHopper: the hopper layout, scales
// inside the chunks, `scales` left empty). Device weights: one launch. Host weights: through a
// staging buffer of at most `stage_limit` bytes (at least one expert), a chunk of experts at a
// time; `staged` gets the staging buffer's size.
Status repack_staged(const FragSource& src, size_t stage_limit, MoEKernels kernels,
                     DeviceBuffer& packed, DeviceBuffer& scales, RepackStats& stats, size_t& staged) {
  MXQ_RETURN_IF_ERROR(check_frag_layout(src));
  const FragLayout l = src.layout();
  DeviceBuffer dstats;
  MXQ_RETURN_IF_ERROR(dstats.allocate(sizeof(RepackStats), "the repack statistics"));
  const RepackStats init;
  MXQ_CUDA_TRY(cudaMemcpy(dstats.get(), &init, sizeof init, cudaMemcpyHostToDevice));
  // One expert's bytes in the destination layout, and the repack of `part` (experts b0..).
  size_t expert_packed = 0, expert_scales = 0;
  std::function<Status(const FragSource&, int64_t)> repack;
  if (kernels == MoEKernels::kHopper) {
#if MXQ_WITH_HOPPER
    expert_packed = hopper::hopper_layout(src.experts(0, 1)).bytes();
    MXQ_RETURN_IF_ERROR(packed.allocate(expert_packed * size_t(src.w.batch), "the cuda-hopper expert chunks"));
    repack = [&](const FragSource& part, int64_t b0) {
      return hopper::repack_hopper(part, packed.get() + size_t(b0) * expert_packed,
                                   dstats.get<RepackStats>(), nullptr);
    };
#else
    return unimplemented("this build has no cuda-hopper kernels");
#endif
  } else {
    const FragLayout one{l.elem, 1, l.n, l.k};
    expert_packed = one.packed_bytes();
    expert_scales = one.scale_bytes();
    MXQ_RETURN_IF_ERROR(packed.allocate(l.packed_bytes()));
    MXQ_RETURN_IF_ERROR(scales.allocate(l.scale_bytes()));
    repack = [&](const FragSource& part, int64_t b0) {
      return repack_frag(part, packed.get() + size_t(b0) * expert_packed,
                         scales.get() + size_t(b0) * expert_scales, dstats.get<RepackStats>(), nullptr);
    };
  }
  const bool sep = src.order == RowOrder::kSeparate;
  if (on_device(src.w) && (!sep || on_device(src.up))) {
    MXQ_RETURN_IF_ERROR(repack(src, 0));
  } else {
    const size_t per_expert = expert_bytes(src.w) * (sep ? 2 : 1);
    const int64_t chunk =
        std::clamp<int64_t>(int64_t(stage_limit / per_expert), 1, src.w.batch);
    DeviceBuffer stage;
    MXQ_RETURN_IF_ERROR(stage.allocate(size_t(chunk) * per_expert, "the expert staging buffer"));
    staged = std::max(staged, stage.bytes());
    for (int64_t b0 = 0; b0 < src.w.batch; b0 += chunk) {
      const int64_t c = std::min(chunk, src.w.batch - b0);
      FragSource part = src.experts(b0, c);
      uint8_t* dst = stage.get();
      auto put = [&](MXWeightView& v) -> Status {
        const size_t pb = size_t(c * v.n) * row_code_bytes(v), sb = size_t(c * v.n * (v.k / 32));
        MXQ_CUDA_TRY(cudaMemcpy(dst, v.packed, pb, cudaMemcpyDefault));
        v.packed = dst;
        dst += pb;
        MXQ_CUDA_TRY(cudaMemcpy(dst, v.scales, sb, cudaMemcpyDefault));
        v.scales = dst;
        dst += sb;
        return Status::Ok();
      };
      MXQ_RETURN_IF_ERROR(put(part.w));
      if (sep) MXQ_RETURN_IF_ERROR(put(part.up));
      MXQ_RETURN_IF_ERROR(repack(part, b0));
      MXQ_CUDA_TRY(cudaDeviceSynchronize());  // the next chunk overwrites the staging buffer
    }
  }
  MXQ_CUDA_TRY(cudaMemcpy(&stats, dstats.get(), sizeof stats, cudaMemcpyDeviceToHost));
  return Status::Ok();
}

// A bias view (host or device memory, F32/BF16/F16) as host floats; empty when not given.
Status read_bias(const DenseView& b, std::vector<float>& out) {
  out.clear();
  if (b.data == nullptr) return Status::Ok();
  const int64_t n = b.rows * b.cols;
  std::vector<uint8_t> raw(size_t(n) * size_t(dtype_bytes(b.dtype)));
  MXQ_CUDA_TRY(cudaMemcpy(raw.data(), b.data, raw.size(), cudaMemcpyDefault));
  out.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = num::load_dense(raw.data(), b.dtype, i);
  return Status::Ok();
}

Status upload(const std::vector<float>& v, DeviceBuffer& d) {
  if (v.empty()) return Status::Ok();
  MXQ_RETURN_IF_ERROR(d.allocate(v.size() * sizeof(float)));
  MXQ_CUDA_TRY(cudaMemcpy(d.get(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
  return Status::Ok();
}

// Gate and up biases [local, I] from the layout's views (fused bias13 rows are in the weights'
// chunked or interleaved order).
Status gate_up_biases(const Problem& p, const MoEWeights& w, int64_t local,
                      std::vector<float>& gate, std::vector<float>& up) {
  const int64_t inter = p.k;
  if (p.moe.layout == GateUpLayout::kSeparate) {
    MXQ_RETURN_IF_ERROR(read_bias(w.bias1, gate));
    return read_bias(w.bias3, up);
  }
  std::vector<float> b13;
  MXQ_RETURN_IF_ERROR(read_bias(w.bias13, b13));
  gate.clear();
  up.clear();
  if (b13.empty()) return Status::Ok();
  gate.resize(size_t(local * inter));
  up.resize(size_t(local * inter));
  const bool inter_leaved = p.moe.layout == GateUpLayout::kInterleaved;
  for (int64_t e = 0; e < local; ++e)
    for (int64_t i = 0; i < inter; ++i) {
      const float* row = b13.data() + e * 2 * inter;
      gate[size_t(e * inter + i)] = row[inter_leaved ? 2 * i : i];
      up[size_t(e * inter + i)] = row[inter_leaved ? 2 * i + 1 : inter + i];
    }
  return Status::Ok();
}

}  // namespace

Verdict moe_layer_can_implement(const Problem& p) {
  const MoEParams& q = p.moe;
  if (p.act == ActKey::kFP8StaticTensor || p.act == ActKey::kFP8DynamicToken ||
      p.act == ActKey::kFP8DynamicTensor || p.act == ActKey::kFP8DynamicGroup128)
    return Verdict::no(std::string("activation key ") + act_key_name(p.act) +
                       ": cuda-mma's MoE layer would have to apply the FP8 scale inside the "
                       "fused gate/up epilogue, before the activation (not built; cuda-mma runs "
                       "this key for linear layers)");
  if (Verdict v = mma_types_verdict(p, /*mx_act=*/true); !v) return v;
  if (p.n % 32 != 0 || p.k % 32 != 0)
    return Verdict::no("hidden " + std::to_string(p.n) + ", intermediate " + std::to_string(p.k) +
                       ": cuda-mma MoE needs both multiples of 32");
  // The GPU routing kernel's limits (moe/kernels.h, the one definition; moe_route checks them
  // again for its direct callers).
  using moe_detail::kMaxRouteExperts, moe_detail::kMaxRouteTopK, moe_detail::kMaxRouteGroups;
  if (q.experts > kMaxRouteExperts || q.topk > kMaxRouteTopK ||
      (q.routing == Routing::kSigmoidGroupedTopK && q.n_group > kMaxRouteGroups))
    return Verdict::no("experts " + std::to_string(q.experts) + ", topk " +
                       std::to_string(q.topk) + ", groups " + std::to_string(q.n_group) +
                       ": the GPU routing supports experts <= " + std::to_string(kMaxRouteExperts) +
                       ", topk <= " + std::to_string(kMaxRouteTopK) + ", groups <= " +
                       std::to_string(kMaxRouteGroups));
  if (p.m * q.topk >= (int64_t(1) << 30) || p.n > (1 << 20) || p.k > (1 << 20))
    return Verdict::no("shape too large for one launch");
  return Verdict::yes();
}

bool moe_hopper_built() { return MXQ_WITH_HOPPER != 0; }

MoEKernels moe_layer_kernels(const PreparedWeights& w) {
  const auto* m = dynamic_cast<const PreparedMoE*>(&w);
  return m != nullptr ? m->kernels : MoEKernels::kMma;
}

// The backend whose kernels the layer runs, for its error messages.
static const char* family_name(MoEKernels k) { return k == MoEKernels::kHopper ? "cuda-hopper" : "cuda-mma"; }

StatusOr<std::unique_ptr<PreparedWeights>> prepare_moe_layer(const Problem& p, const MoEWeights& w,
                                                             size_t stage_bytes, MoEKernels kernels) {
  // Checked by the entry (Backend::prepare_moe; tests that call this directly pass valid ones).
  MXQ_DEBUG_ASSERT(moe_layer_can_implement(p).ok, "the backend's can_implement passed");
  MXQ_DEBUG_ASSERT(contract::check_moe_weights(p, w).ok(), "check_moe_weights passed");
  auto out = std::make_unique<PreparedMoE>();
  out->kernels = kernels;
  MXQ_CUDA_TRY(cudaGetDevice(&out->device));
  out->elem = p.weight;
  out->local = w.w2.batch;
  out->hidden = p.n;
  out->inter = p.k;

  FragSource s13;
  switch (p.moe.layout) {
    case GateUpLayout::kSeparate: s13 = {w.w1, RowOrder::kSeparate, w.w3}; break;
    case GateUpLayout::kInterleaved: s13 = {w.w13, RowOrder::kInterleaved, {}}; break;
    default: s13 = {w.w13, RowOrder::kChunked, {}}; break;
  }
  MXQ_RETURN_IF_ERROR(repack_staged(s13, stage_bytes, kernels, out->w13, out->s13, out->stats13,
                                    out->staging));
  MXQ_RETURN_IF_ERROR(repack_staged(FragSource::plain(w.w2), stage_bytes, kernels, out->w2, out->s2,
                                    out->stats2, out->staging));
  const char* who = family_name(kernels);
  if (out->stats13.nan != 0 || out->stats2.nan != 0)
    return invalid_argument(std::string(who) + ": the E4M3 expert weights (" +
                            (out->stats13.nan != 0 ? "gate/up" : "down") +
                            ") contain NaN codes (0x7F / 0xFF); the GEMMs' decode has no NaN, "
                            "refusing (the cpu backends propagate NaN)");
  if (kernels == MoEKernels::kHopper) {
    // The hopper kernels fold every scale into the 16-bit weights; codes outside the exact
    // range go to cuda-mma's FP32 per-block scale path (the same numbers), said once.
    const ScaleRange r = scale_in_weights_range(p.weight, act_input_dtype(p.act));
    const int lo = std::min(out->stats13.scale_min, out->stats2.scale_min);
    const int hi = std::max(out->stats13.scale_max, out->stats2.scale_max);
    if (lo < r.lo || hi > r.hi) {
      out.reset();
      static std::mutex mu;
      static bool said = false;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!said)
          std::fprintf(stderr,
                       "mxq: note: cuda-hopper: MoE %s: scale codes [%d, %d] lie outside [%d, %d] "
                       "(exact when folded into %s weights): running this layer on the cuda-mma "
                       "kernels' FP32 scale path\n",
                       p.to_string().c_str(), lo, hi, r.lo, r.hi, dtype_name(act_input_dtype(p.act)));
        said = true;
      }
      return prepare_moe_layer(p, w, stage_bytes, MoEKernels::kMma);
    }
  }

  std::vector<float> gate, up, b2;
  MXQ_RETURN_IF_ERROR(gate_up_biases(p, w, out->local, gate, up));
  MXQ_RETURN_IF_ERROR(read_bias(w.bias2, b2));
  MXQ_RETURN_IF_ERROR(upload(gate, out->bias_gate));
  MXQ_RETURN_IF_ERROR(upload(up, out->bias_up));
  MXQ_RETURN_IF_ERROR(upload(b2, out->bias2));
  MXQ_CUDA_TRY(cudaDeviceSynchronize());
  return std::unique_ptr<PreparedWeights>(std::move(out));
}

size_t moe_layer_staging_bytes(const PreparedWeights& w) {
  const auto* m = dynamic_cast<const PreparedMoE*>(&w);
  return m != nullptr ? m->staging : 0;
}

Status run_moe_layer(const Problem& p, const PreparedWeights& pw, const DenseView& x,
                     const MoERouting& r, const DenseMutView& y, cudaStream_t stream) {
  // The arguments were checked by the entry (Backend::run_moe: the prepared weights come from
  // this backend's prepare_moe of this layer, can_implement, x, y and the routing views,
  // contract::check_moe_call); the device is this function's business.
  MXQ_DEBUG_ASSERT(dynamic_cast<const PreparedMoE*>(&pw) != nullptr,
                   "the entry checked that pw comes from a cuda MoE prepare");
  const auto* w = static_cast<const PreparedMoE*>(&pw);
  const std::string who = family_name(w->kernels);
  const MoEParams& q = p.moe;
  MXQ_DEBUG_ASSERT(w->elem == p.weight && w->hidden == p.n && w->inter == p.k &&
                       (q.expert_map ? w->local <= q.experts : w->local == q.experts),
                   "the entry checked that pw was prepared for this layer");
  MXQ_DEBUG_ASSERT(contract::check_moe_call(p, x, r, y).ok(), "the entry checked the call views");
  const DType act = act_input_dtype(p.act);
  const int64_t m = p.m, h = p.n, inter = p.k, k = q.topk;
  const DenseView& lg = r.router_logits;
  const bool want_corr = q.routing == Routing::kSigmoidGroupedTopK && q.correction_bias;
  int dev = 0;
  MXQ_CUDA_TRY(cudaGetDevice(&dev));
  if (dev != w->device)
    return invalid_argument(who + ": MoE weights were prepared on GPU " +
                            std::to_string(w->device) + ", the current device is GPU " +
                            std::to_string(dev));

  // Inputs in host memory are staged (the synchronous convenience path).
  DeviceBuffer tx, tl, tc, tm, ty;
  const void *xd = nullptr, *ld = nullptr, *cd = nullptr, *md = nullptr;
  const size_t xbytes = size_t(m * h) * size_t(dtype_bytes(act));
  const size_t ybytes = size_t(m * h) * size_t(dtype_bytes(p.out));
  MXQ_RETURN_IF_ERROR(to_device(x.data, xbytes, tx, &xd));
  MXQ_RETURN_IF_ERROR(to_device(lg.data, size_t(m * q.experts) * size_t(dtype_bytes(lg.dtype)), tl, &ld));
  if (want_corr)
    MXQ_RETURN_IF_ERROR(to_device(r.correction_bias.data, size_t(q.experts) * 4, tc, &cd));
  if (r.expert_map != nullptr)
    MXQ_RETURN_IF_ERROR(to_device(r.expert_map, size_t(q.experts) * 4, tm, &md));
  const bool y_dev = is_device_pointer(y.data);
  void* yd = y.data;
  if (!y_dev) {
    MXQ_RETURN_IF_ERROR(ty.allocate(ybytes));
    yd = ty.get();
  }
  const bool staged = tx.bytes() + tl.bytes() + tc.bytes() + tm.bytes() + ty.bytes() > 0;
  // MX activation keys: x quantized on the GPU before the gate/up GEMM (act_operand.h), the
  // intermediate activation in place before the down GEMM, as cpu-reference defines the layer.
  StreamBuffer xq(stream);
  MXQ_RETURN_IF_ERROR(act_operand(p.act, p.act_rule, xd, act, m, h, xq, &xd, stream));

  const ScaleRange sr = scale_in_weights_range(p.weight, act);
  auto fast = [&](const RepackStats& s) { return s.scale_min >= sr.lo && s.scale_max <= sr.hi; };
  const bool fast13 = fast(w->stats13), fast2 = fast(w->stats2);

  // Workspace: routing, dispatch, intermediate, per-pair outputs.
  // (the wgmma variant also needs 16-byte aligned activation rows: H % 32 == 0 gives the stride)
  const bool x16 = reinterpret_cast<uintptr_t>(xd) % 16 == 0;
  const bool hopper = w->kernels == MoEKernels::kHopper;
#if MXQ_WITH_HOPPER
  const int block = hopper ? hopper::hopper_grouped_block(m, k, w->local)
                           : moe_block_size(m, k, q.experts, fast13 && fast2 && x16);
#else
  const int block = moe_block_size(m, k, q.experts, fast13 && fast2 && x16);
#endif
  const MoEDispatchShape ds{m, k, q.experts, w->local, block};
  const int64_t cap = moe_dispatch_capacity(ds);
  StreamWorkspace ws(stream);
  const size_t o_ids = ws.reserve(size_t(m * k) * 4), o_tw = ws.reserve(size_t(m * k) * 4),
               o_off = ws.reserve(size_t(w->local + 1) * 4), o_sorted = ws.reserve(size_t(cap) * 4),
               o_bexp = ws.reserve(size_t(cap / block) * 4),
               o_dws = ws.reserve(moe_dispatch_workspace_bytes(ds)),
               o_a = ws.reserve(size_t(cap * inter) * size_t(dtype_bytes(act))),
               o_o = ws.reserve(size_t(m * k * h) * 4),
               // cuda-hopper: x's rows in dispatch order (its TMA tiles are dense rows)
               o_xg = ws.reserve(hopper ? size_t(cap * h) * size_t(dtype_bytes(act)) : 0);
  MXQ_RETURN_IF_ERROR(
      ws.allocate("the MoE workspace (routing, dispatch, intermediate, outputs)"));
  auto* ids = ws.at<int32_t>(o_ids);
  auto* tw = ws.at<float>(o_tw);
  auto* sorted = ws.at<int32_t>(o_sorted);
  auto* bexp = ws.at<int32_t>(o_bexp);
  const auto* map = static_cast<const int32_t*>(md);

  MXQ_RETURN_IF_ERROR(moe_route(q, ld, lg.dtype, m, static_cast<const float*>(cd), ids, tw, stream));
  MXQ_RETURN_IF_ERROR(moe_dispatch(ds, ids, map, ws.at<int32_t>(o_off), sorted, bexp, nullptr,
                                   ws.at<void>(o_dws), stream));
#if !MXQ_WITH_HOPPER
  (void)o_xg;  // no cuda-hopper kernels in this build: `hopper` is never true here
#endif
  if (hopper) {
#if MXQ_WITH_HOPPER
    void* xg = ws.at<void>(o_xg);
    void* inter_rows = ws.at<void>(o_a);
    // Padding rows stay as they are: the swap-AB GEMM reads them as their own token columns
    // and stores none of their results (moe_gather_rows).
    MXQ_RETURN_IF_ERROR(moe_gather_rows(xd, h, h, dtype_bytes(act), sorted, cap, k,
                                        /*zero_padding=*/false, xg, stream));
    hopper::HopperGroupedArgs g;
    g.shape.elem = p.weight;
    g.shape.act = act;
    g.shape.n = 2 * inter;
    g.shape.k = h;
    g.shape.block = block;
    g.shape.capacity = cap;
    g.shape.live_blocks = hopper::expected_live_blocks(m * k, w->local, block);
    g.w = w->w13.get();
    g.block_expert = bexp;
    g.pairs = sorted;
    g.x = xg;
    g.ldx = h;
    g.gate_up = true;
    g.swiglu = q.activation == MoEActivation::kSwigluOAI;
    g.alpha = q.swiglu_alpha;
    g.limit = q.swiglu_limit;
    g.bias = w->bias_gate.bytes() ? w->bias_gate.get<float>() : nullptr;
    g.bias_up = w->bias_up.bytes() ? w->bias_up.get<float>() : nullptr;
    g.y = inter_rows;
    g.ldy = inter;
    MXQ_RETURN_IF_ERROR(hopper::hopper_grouped_gemm(g, stream));
    MXQ_RETURN_IF_ERROR(act_quantize_in_place(p.act, p.act_rule, inter_rows, act, cap, inter, stream));
    hopper::HopperGroupedArgs d = g;
    d.shape.n = h;
    d.shape.k = inter;
    d.w = w->w2.get();
    d.x = inter_rows;
    d.ldx = inter;
    d.gate_up = false;
    d.bias = w->bias2.bytes() ? w->bias2.get<float>() : nullptr;
    d.bias_up = nullptr;
    d.topk_weights = tw;
    d.y = ws.at<float>(o_o);
    d.ldy = h;
    MXQ_RETURN_IF_ERROR(hopper::hopper_grouped_gemm(d, stream));
    MXQ_RETURN_IF_ERROR(moe_combine(ws.at<float>(o_o), ids, map, q.experts, w->local, m, k, h, yd,
                                    p.out, stream));
    if (!y_dev) MXQ_CUDA_TRY(cudaMemcpyAsync(y.data, yd, ybytes, cudaMemcpyDeviceToHost, stream));
    if (staged) MXQ_CUDA_TRY(cudaStreamSynchronize(stream));
    return Status::Ok();
#else
    return unimplemented("this build has no cuda-hopper kernels");
#endif
  }

  MoEGemmCommon c;
  c.elem = p.weight;
  c.act = act;
  c.topk = k;
  c.block = block;
  c.capacity = cap;
  c.sorted_token_pairs = sorted;
  c.block_expert = bexp;
  MoEGateUpArgs g;
  g.c = c;
  g.c.w = w->w13.get();
  g.c.w_scales = w->s13.get();
  g.c.scale_in_weights = fast13;
  g.c.n = 2 * inter;
  g.c.k = h;
  g.x = xd;
  g.ldx = h;
  g.bias_gate = w->bias_gate.bytes() ? w->bias_gate.get<float>() : nullptr;
  g.bias_up = w->bias_up.bytes() ? w->bias_up.get<float>() : nullptr;
  g.a = ws.at<void>(o_a);
  g.lda = inter;
  g.activation = q.activation == MoEActivation::kSwigluOAI ? MoEGemmAct::kSwigluOAI
                                                            : MoEGemmAct::kSiluAndMul;
  g.alpha = q.swiglu_alpha;
  g.limit = q.swiglu_limit;
  MXQ_RETURN_IF_ERROR(moe_gate_up_gemm(g, stream));
  // Every row of the dispatch capacity (padding rows hold no pair and are never read back).
  MXQ_RETURN_IF_ERROR(act_quantize_in_place(p.act, p.act_rule, g.a, act, cap, inter, stream));

  MoEDownArgs d;
  d.c = c;
  d.c.w = w->w2.get();
  d.c.w_scales = w->s2.get();
  d.c.scale_in_weights = fast2;
  d.c.n = h;
  d.c.k = inter;
  d.a = g.a;
  d.lda = inter;
  d.bias = w->bias2.bytes() ? w->bias2.get<float>() : nullptr;
  d.topk_weights = tw;
  d.o = ws.at<float>(o_o);
  MXQ_RETURN_IF_ERROR(moe_down_gemm(d, stream));
  MXQ_RETURN_IF_ERROR(
      moe_combine(d.o, ids, map, q.experts, w->local, m, k, h, yd, p.out, stream));

  if (!y_dev) MXQ_CUDA_TRY(cudaMemcpyAsync(y.data, yd, ybytes, cudaMemcpyDeviceToHost, stream));
  if (staged) MXQ_CUDA_TRY(cudaStreamSynchronize(stream));
  return Status::Ok();
}

std::string moe_launch_plan(const Problem& p, MoEKernels kernels) {
  if (p.op != Op::kMoE) return {};
  const MoEParams& q = p.moe;
  const int64_t m = p.m, k = q.topk, local = q.experts;  // (an expert map: the local count is
                                                           // known at prepare, not here)
  const DType act = act_input_dtype(p.act);
  if (kernels == MoEKernels::kHopper) {
#if MXQ_WITH_HOPPER
    const int block = hopper::hopper_grouped_block(m, k, local);
    const int64_t cap = moe_dispatch_capacity({m, k, q.experts, local, block});
    std::string out = "dispatch blocks of " + std::to_string(block) + " tokens (capacity " +
                      std::to_string(cap) + "); ";
    const char* names[2] = {"gate/up: ", "; down: "};
    for (int gemm = 0; gemm < 2; ++gemm) {
      hopper::HopperGroupedShape g;
      g.elem = p.weight;
      g.act = act;
      g.n = gemm == 0 ? 2 * p.k : p.n;
      g.k = gemm == 0 ? p.n : p.k;
      g.block = block;
      g.capacity = cap;
      g.live_blocks = hopper::expected_live_blocks(m * k, local, block);
      auto c = hopper::choose_hopper_grouped_config(g);
      out += names[gemm] + (c.ok() ? c.value().to_string() : "(no launch: " + c.status().to_string() + ")");
    }
    return out;
#else
    (void)local;
    (void)act;
    return "(this build has no cuda-hopper kernels)";
#endif
  }
  return "dispatch blocks of " + std::to_string(moe_block_size(m, k, q.experts, true)) +
         " tokens (when both GEMMs' scales fold and x is 16-byte aligned; mma.sync or the wgmma "
         "variant by block, grouped_gemm_io.cuh)";
}

}  // namespace mxq::cuda
