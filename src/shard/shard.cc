#include "mxq/shard.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "contract/weight_checks.h"

namespace mxq {

namespace {

using contract::round_up_32;

Status check_spec(const char* what, ShardSpec s) {
  if (s.ranks < 1 || s.rank < 0 || s.rank >= s.ranks)
    return invalid_argument(std::string(what) + ": rank " + std::to_string(s.rank) + " of " +
                            std::to_string(s.ranks) + " ranks is not a rank (need 0 <= rank < ranks)");
  return Status::Ok();
}

// "8.5 MiB", "12.0 KiB", "640 B": a shard of a small layer reads as more than "0.0 MiB".
std::string mib(uint64_t b) {
  char buf[32];
  if (b >= (uint64_t(1) << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(b) / (1024.0 * 1024.0));
  else if (b >= 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", double(b) / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

// Bytes of one canonical row of `k` elements (k a multiple of 32) and of its scales.
int64_t row_bytes(ElemType e, int64_t k) { return packed_bytes(e, k); }
int64_t scale_bytes(int64_t k) { return k / 32; }

uint64_t view_bytes(const MXWeightView& w) {
  if (w.packed == nullptr) return 0;
  return uint64_t(w.batch * w.n) * uint64_t(row_bytes(w.elem, w.k) + scale_bytes(w.k));
}
uint64_t dense_bytes(const DenseView& d) {
  return d.data == nullptr ? 0 : uint64_t(d.rows * d.cols) * uint64_t(dtype_bytes(d.dtype));
}

// Rows of every batch entry of `w` picked by `ranges` (start, count) into packed / scales
// buffers: the result has w.batch entries of sum(count) rows, in the order of the ranges.
MXWeightView gather_rows(const MXWeightView& w, const std::vector<std::pair<int64_t, int64_t>>& ranges,
                         std::vector<uint8_t>& packed, std::vector<uint8_t>& scales) {
  int64_t rows = 0;
  for (const auto& r : ranges) rows += r.second;
  const int64_t rb = row_bytes(w.elem, w.k), sb = scale_bytes(w.k);
  packed.resize(size_t(w.batch * rows * rb));
  scales.resize(size_t(w.batch * rows * sb));
  uint8_t* p = packed.data();
  uint8_t* s = scales.data();
  for (int64_t b = 0; b < w.batch; ++b)
    for (const auto& [start, count] : ranges) {
      const int64_t row = b * w.n + start;
      std::memcpy(p, w.packed + row * rb, size_t(count * rb));
      std::memcpy(s, w.scales + row * sb, size_t(count * sb));
      p += count * rb;
      s += count * sb;
    }
  return {w.elem, w.batch, rows, w.k, packed.data(), scales.data()};
}

// Columns [k0, k0 + kn) of every row of `w` (k0, kn multiples of 32).
MXWeightView slice_k(const MXWeightView& w, int64_t k0, int64_t kn, std::vector<uint8_t>& packed,
                     std::vector<uint8_t>& scales) {
  const int64_t rows = w.batch * w.n;
  const int64_t rb = row_bytes(w.elem, w.k), sb = scale_bytes(w.k);
  const int64_t off = row_bytes(w.elem, k0), len = row_bytes(w.elem, kn);
  packed.resize(size_t(rows * len));
  scales.resize(size_t(rows * scale_bytes(kn)));
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(packed.data() + r * len, w.packed + r * rb + off, size_t(len));
    std::memcpy(scales.data() + r * scale_bytes(kn), w.scales + r * sb + scale_bytes(k0),
                size_t(scale_bytes(kn)));
  }
  return {w.elem, w.batch, w.n, kn, packed.data(), scales.data()};
}

// Values of every row of a bias [E, n] picked by `ranges` (columns), into `out`.
DenseView gather_cols(const DenseView& d, const std::vector<std::pair<int64_t, int64_t>>& ranges,
                      std::vector<uint8_t>& out) {
  if (d.data == nullptr) return d;
  int64_t cols = 0;
  for (const auto& r : ranges) cols += r.second;
  const int64_t eb = dtype_bytes(d.dtype);
  out.resize(size_t(d.rows * cols * eb));
  uint8_t* o = out.data();
  const uint8_t* src = static_cast<const uint8_t*>(d.data);
  for (int64_t row = 0; row < d.rows; ++row)
    for (const auto& [start, count] : ranges) {
      std::memcpy(o, src + (row * d.cols + start) * eb, size_t(count * eb));
      o += count * eb;
    }
  return {out.data(), d.dtype, d.rows, cols};
}

MXWeightView slice_batch(const MXWeightView& w, int64_t b0, int64_t nb) {
  if (w.packed == nullptr) return w;
  const int64_t per = w.n;
  return {w.elem, nb, w.n, w.k, w.packed + b0 * per * row_bytes(w.elem, w.k),
          w.scales + b0 * per * scale_bytes(w.k)};
}
DenseView slice_rows(const DenseView& d, int64_t r0, int64_t nr) {
  if (d.data == nullptr) return d;
  return {static_cast<const uint8_t*>(d.data) + r0 * d.cols * dtype_bytes(d.dtype), d.dtype, nr,
          d.cols};
}

}  // namespace

const char* linear_parallel_name(LinearParallel p) {
  return p == LinearParallel::kColumn ? "column" : "row";
}
const char* moe_parallel_name(MoEParallel p) { return p == MoEParallel::kExpert ? "expert" : "tensor"; }

void expert_range(int64_t experts, ShardSpec s, int64_t& first, int64_t& last) {
  const int64_t base = experts / s.ranks, extra = experts % s.ranks;
  first = s.rank * base + std::min<int64_t>(s.rank, extra);
  last = first + base + (s.rank < extra ? 1 : 0);
}

uint64_t LinearShard::bytes() const { return view_bytes(weights.w) + dense_bytes(weights.bias); }

std::string LinearShard::describe(int64_t full_n, int64_t full_k) const {
  return "rank " + std::to_string(spec.rank) + " of " + std::to_string(spec.ranks) + ": " +
         linear_parallel_name(how) + " parallel, N [" + std::to_string(n0) + ", " +
         std::to_string(n1) + ") of " + std::to_string(full_n) + ", K [" + std::to_string(k0) +
         ", " + std::to_string(k1) + ") of " + std::to_string(full_k) + ", " + mib(bytes()) +
         (zero_copy ? " (view)" : " (copy)") +
         (how == LinearParallel::kRow && layer_bias
              ? (problem.bias ? ", bias" : ", no bias (rank 0 adds it)")
              : "");
}

StatusOr<LinearShard> shard_linear(const Problem& p, const LinearWeights& w, LinearParallel how,
                                   ShardSpec s) {
  MXQ_RETURN_IF_ERROR(check_spec("shard linear", s));
  MXQ_RETURN_IF_ERROR(contract::check_linear_weights(p, w));
  LinearShard out;
  out.spec = s;
  out.how = how;
  out.problem = p;
  out.weights = w;
  out.layer_bias = p.bias;
  out.n0 = 0, out.n1 = p.n, out.k0 = 0, out.k1 = p.k;
  const std::string layer = p.to_string();
  if (how == LinearParallel::kColumn) {
    if (p.n % s.ranks != 0)
      return invalid_argument("shard linear (column parallel): N = " + std::to_string(p.n) +
                              " does not split into " + std::to_string(s.ranks) +
                              " equal row ranges (" + layer + ")");
    const int64_t per = p.n / s.ranks;
    out.n0 = s.rank * per;
    out.n1 = out.n0 + per;
    const int64_t rb = row_bytes(w.w.elem, w.w.k), sb = scale_bytes(w.w.k);
    out.weights.w = {w.w.elem, 1, per, w.w.k, w.w.packed + out.n0 * rb, w.w.scales + out.n0 * sb};
    if (w.bias.data != nullptr)
      out.weights.bias = {static_cast<const uint8_t*>(w.bias.data) + out.n0 * dtype_bytes(w.bias.dtype),
                          w.bias.dtype, 1, per};
    out.problem.n = per;
    return out;
  }
  // Row parallel: K in whole 32-blocks per rank.
  if (p.act == ActKey::kFP8DynamicTensor && s.ranks > 1)
    return invalid_argument("shard linear (row parallel): fp8-dynamic-tensor scales x by its "
                            "amax over all rows and the whole K; a K slice per rank would change "
                            "that scale (" + layer + "): use column parallel or another key");
  if (p.act == ActKey::kFP8DynamicToken)
    return invalid_argument("shard linear (row parallel): fp8-dynamic-token scales each token by "
                            "its amax over the whole K; a K slice per rank would change that "
                            "scale (" + layer + "): use column parallel or another key");
  if (p.k % (32 * int64_t(s.ranks)) != 0)
    return invalid_argument("shard linear (row parallel): K = " + std::to_string(p.k) +
                            " does not split into whole 32-element blocks per rank (K must be a "
                            "multiple of 32 x " + std::to_string(s.ranks) + " = " +
                            std::to_string(32 * s.ranks) + "; " + layer + ")");
  const int64_t per = p.k / s.ranks;
  if (p.act == ActKey::kFP8DynamicGroup128 && s.ranks > 1 && per % kFp8ActGroup != 0)
    return invalid_argument("shard linear (row parallel): fp8-dynamic-group128 scales x per "
                            "group of 128 columns; a rank's K slice must start on a group "
                            "boundary, but K / ranks = " + std::to_string(per) +
                            " is not a multiple of 128 (" + layer + ")");
  out.k0 = s.rank * per;
  out.k1 = out.k0 + per;
  out.zero_copy = s.ranks == 1;
  if (!out.zero_copy) out.weights.w = slice_k(w.w, out.k0, per, out.own_packed, out.own_scales);
  out.problem.k = per;
  if (s.rank != 0) {  // the partial sums are added up: the bias once, on rank 0
    out.weights.bias = {};
    out.problem.bias = false;
  }
  return out;
}

uint64_t MoEShard::bytes() const {
  return view_bytes(weights.w13) + view_bytes(weights.w1) + view_bytes(weights.w3) +
         view_bytes(weights.w2) + dense_bytes(weights.bias13) + dense_bytes(weights.bias1) +
         dense_bytes(weights.bias3) + dense_bytes(weights.bias2);
}

std::string MoEShard::describe(int64_t full_experts, int64_t full_inter) const {
  return "rank " + std::to_string(spec.rank) + " of " + std::to_string(spec.ranks) + ": " +
         moe_parallel_name(how) + " parallel, experts [" + std::to_string(e0) + ", " +
         std::to_string(e1) + ") of " + std::to_string(full_experts) + ", I [" +
         std::to_string(i0) + ", " + std::to_string(i1) + ") of " + std::to_string(full_inter) +
         ", " + mib(bytes()) + (zero_copy ? " (view)" : " (copy)");
}

StatusOr<MoEShard> shard_moe(const Problem& p, const MoEWeights& w, MoEParallel how, ShardSpec s) {
  MXQ_RETURN_IF_ERROR(check_spec("shard moe", s));
  if (p.op == Op::kMoE && p.moe.expert_map)
    return invalid_argument("shard moe: the layer already has an expert map (it is a shard): "
                            "shard the whole layer (" + p.to_string() + ")");
  MXQ_RETURN_IF_ERROR(contract::check_moe_weights(p, w));
  const int64_t experts = p.moe.experts, inter = p.k;
  MoEShard out;
  out.spec = s;
  out.how = how;
  out.problem = p;
  out.weights = w;
  out.e0 = 0, out.e1 = experts, out.i0 = 0, out.i1 = inter;
  const std::string layer = p.to_string();
  if (how == MoEParallel::kExpert) {
    if (p.act == ActKey::kFP8DynamicTensor && s.ranks > 1)
      return invalid_argument("shard moe (expert parallel): fp8-dynamic-tensor scales the "
                              "intermediate by its amax over every (token, expert) pair of the "
                              "layer; a rank's experts would see only their own pairs' amax (" +
                              layer + "): use another key");
    if (s.ranks > experts)
      return invalid_argument("shard moe (expert parallel): " + std::to_string(s.ranks) +
                              " ranks for " + std::to_string(experts) +
                              " experts leave a rank without experts (" + layer + ")");
    expert_range(experts, s, out.e0, out.e1);
    const int64_t n = out.e1 - out.e0;
    MoEWeights& v = out.weights;
    v.w13 = slice_batch(w.w13, out.e0, n);
    v.w1 = slice_batch(w.w1, out.e0, n);
    v.w3 = slice_batch(w.w3, out.e0, n);
    v.w2 = slice_batch(w.w2, out.e0, n);
    v.bias13 = slice_rows(w.bias13, out.e0, n);
    v.bias1 = slice_rows(w.bias1, out.e0, n);
    v.bias3 = slice_rows(w.bias3, out.e0, n);
    v.bias2 = slice_rows(w.bias2, out.e0, n);
    out.expert_map.assign(size_t(experts), -1);
    for (int64_t e = out.e0; e < out.e1; ++e) out.expert_map[size_t(e)] = int32_t(e - out.e0);
    out.problem.moe.expert_map = true;
    return out;
  }
  // Tensor parallel inside the experts: intermediate columns [i0, i1).
  if (p.act == ActKey::kFP8DynamicTensor && s.ranks > 1)
    return invalid_argument("shard moe (tensor parallel): fp8-dynamic-tensor scales the "
                            "intermediate by its amax over all pairs and all I columns; a slice "
                            "per rank would change that scale (" + layer + "): use another key");
  if (p.act == ActKey::kFP8DynamicToken)
    return invalid_argument("shard moe (tensor parallel): fp8-dynamic-token scales each token's "
                            "intermediate by its amax over all I columns; a slice per rank would "
                            "change that scale (" + layer + "): use expert parallel or another key");
  if (inter % (32 * int64_t(s.ranks)) != 0)
    return invalid_argument("shard moe (tensor parallel): I = " + std::to_string(inter) +
                            " does not split into whole 32-element blocks per rank (I must be a "
                            "multiple of 32 x " + std::to_string(s.ranks) + " = " +
                            std::to_string(32 * s.ranks) + "; " + layer + ")");
  const int64_t per = inter / s.ranks;
  if (p.act == ActKey::kFP8DynamicGroup128 && s.ranks > 1 && per % kFp8ActGroup != 0)
    return invalid_argument("shard moe (tensor parallel): fp8-dynamic-group128 scales the "
                            "intermediate per group of 128 columns; a rank's I slice must start "
                            "on a group boundary, but I / ranks = " + std::to_string(per) +
                            " is not a multiple of 128 (" + layer + ")");
  out.i0 = s.rank * per;
  out.i1 = out.i0 + per;
  out.problem.k = per;
  if (s.ranks == 1) return out;
  out.zero_copy = false;
  MoEWeights& v = out.weights;
  using Ranges = std::vector<std::pair<int64_t, int64_t>>;
  const Ranges mine = {{out.i0, per}};
  switch (p.moe.layout) {
    case io::GateUpLayout::kChunked: {  // gate rows [0, I), up rows [I, 2I)
      const Ranges rows = {{out.i0, per}, {inter + out.i0, per}};
      v.w13 = gather_rows(w.w13, rows, out.own_w13p, out.own_w13s);
      v.bias13 = gather_cols(w.bias13, rows, out.own_b13);
      break;
    }
    case io::GateUpLayout::kInterleaved: {  // gate j = row 2j, up j = row 2j + 1
      const Ranges rows = {{2 * out.i0, 2 * per}};
      v.w13 = gather_rows(w.w13, rows, out.own_w13p, out.own_w13s);
      v.bias13 = gather_cols(w.bias13, rows, out.own_b13);
      break;
    }
    case io::GateUpLayout::kSeparate:
      v.w1 = gather_rows(w.w1, mine, out.own_w1p, out.own_w1s);
      v.w3 = gather_rows(w.w3, mine, out.own_w3p, out.own_w3s);
      v.bias1 = gather_cols(w.bias1, mine, out.own_b1);
      v.bias3 = gather_cols(w.bias3, mine, out.own_b3);
      break;
    case io::GateUpLayout::kNone:
      return invalid_argument("shard moe: the layer has no gate/up layout (" + layer + ")");
  }
  v.w2 = slice_k(w.w2, out.i0, per, out.own_w2p, out.own_w2s);
  if (s.rank != 0) v.bias2 = {};  // the partial sums are added up: the down bias once
  out.problem.bias = v.bias13.data != nullptr || v.bias1.data != nullptr ||
                     v.bias3.data != nullptr || v.bias2.data != nullptr;
  return out;
}

}  // namespace mxq
