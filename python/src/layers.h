// mxq._core: the state of prepared Linear / MoE layers (bound in layers.cc, built from
// checkpoints in checkpoints.cc).
#pragma once

#include <memory>

#include "core.h"
#include "oracle.h"

namespace mxq::py {

// ---- prepared layers ---------------------------------------------------------------------

struct Slot {
  const Backend* backend = nullptr;
  std::string how;
  std::unique_ptr<PreparedWeights> prepared;
};

// Shared state of a prepared linear or MoE layer: the problem (M varies per call), the
// canonical weight views, the objects that own their memory, and one prepared form per device
// kind (prepared on first use, or eagerly by prepare()).
struct LayerBase {
  Problem problem;
  std::vector<nb::object> keep;  // owners of every host buffer the views point into
  // C++ owners of the views' storage: experts assembled from per-expert tensors, a rank's
  // shard (include/mxq/shard.h) whose copied slices the views point into.
  std::shared_ptr<const void> hold;
  std::string override_backend;
  bool strict = false, use_env = true;
  Slot slots[2];
  std::mutex mu;

  virtual ~LayerBase() = default;
  virtual StatusOr<std::unique_ptr<PreparedWeights>> do_prepare(const Backend* b) = 0;

  Slot& slot(DevKind kind) {
    std::lock_guard<std::mutex> lock(mu);
    Slot& s = slots[int(kind)];
    if (s.prepared == nullptr) {
      const Choice c = choose(problem, kind, override_backend, strict, use_env);
      auto prepared = get(do_prepare(c.backend));
      s.backend = c.backend;
      s.how = c.how;
      s.prepared = std::move(prepared);
    }
    return s;
  }

  // The problem of one call: the layer's with M = m. Whether the backend runs it (and every
  // view's shape and dtype) is checked by the backend entry (Backend::run_*), once.
  Problem call_problem(int64_t m) const {
    Problem p = problem;
    p.m = m;
    return p;
  }
};

// The view of packed [batch * n, k * bits / 8] and scales [batch * n, k / 32] arrays: only what
// the view cannot carry is checked here (memory, dtype, whole element groups, the scales' count
// for this K); its shape against the problem is checked once, by the backend entry
// (Backend::prepare_*: check_linear_weights / check_moe_weights).
inline MXWeightView weight_view(const Array& packed, const Array& scales, ElemType t, int64_t batch,
                         const char* name) {
  const std::string pn = std::string(name) + " packed", sn = std::string(name) + " scales";
  check_cpu(packed, pn.c_str());
  check_cpu(scales, sn.c_str());
  check_u8(packed, pn.c_str());
  check_u8(scales, sn.c_str());
  check_contiguous(packed, pn.c_str());
  check_contiguous(scales, sn.c_str());
  const auto [rows, bytes] = rows_cols(packed, pn.c_str());
  const int bits = elem_info(t).bits;
  if (bytes * 8 % bits != 0) fail(pn + " has a last dimension of " + std::to_string(bytes) + " bytes, not whole " + elem_type_name(t) + " groups");
  const int64_t k = bytes * 8 / bits;
  if (rows % batch != 0) fail(pn + " has shape " + shape_str(packed) + ", not " + std::to_string(batch) + " experts");
  const int64_t n = rows / batch;
  if (numel(scales) != rows * (k / kBlockSize))
    fail(sn + " has shape " + shape_str(scales) + "; expected " + std::to_string(rows) + " x " + std::to_string(k / kBlockSize) + " for K = " + std::to_string(k));
  return {t, batch, n, k, static_cast<const uint8_t*>(packed.data()),
          static_cast<const uint8_t*>(scales.data())};
}

inline DenseView dense_host(const std::optional<Array>& a, const char* what, int64_t rows, int64_t cols) {
  if (!a) return {};
  check_cpu(*a, what);
  check_contiguous(*a, what);
  const DType d = dense_dtype(*a, what, std::nullopt);
  if (numel(*a) != rows * cols)
    fail(std::string(what) + " has shape " + shape_str(*a) + "; expected " + std::to_string(rows * cols) + " values (" + std::to_string(rows) + " x " + std::to_string(cols) + ")");
  return {a->data(), d, rows, cols};
}

struct DenseArg {
  void* data;
  DType dtype;
  int64_t rows, cols;
  DevKind dev;
};

inline DenseArg dense_arg(const MutArray& a, const char* what, const std::optional<std::string>& as,
                   DevKind* dev) {
  const DevKind d = device_of(a, what);
  if (dev != nullptr) {
    if (d != *dev) fail(std::string(what) + " is a " + dev_kind_name(d) + " array, the input a " + dev_kind_name(*dev) + " one");
  }
  check_contiguous(a, what);
  const DType dt = dense_dtype(a, what, as);
  const auto [r, c] = rows_cols(a, what);
  return {a.data(), dt, r, c, d};
}

struct Linear : LayerBase {
  LinearWeights w;
  // Prepared under LayerBase::mu with the GIL held (releasing it there could deadlock).
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare(const Backend* b) override {
    return b->prepare_linear(problem, w);
  }

  void run(const MutArray& x, const MutArray& y, const std::optional<std::string>& x_dtype,
           const std::optional<std::string>& y_dtype, uintptr_t stream) {
    DevKind dev = device_of(x, "x");
    const DenseArg xa = dense_arg(x, "x", x_dtype, &dev);
    const DenseArg ya = dense_arg(y, "out", y_dtype, &dev);
    // x [M, K] and out [M, N] (named x and y by the entry) are checked by Backend::run_linear.
    const DeviceGuard guard(dev, x.device_id());  // before slot(): prepare on x's GPU
    Slot& s = slot(dev);
    const Problem p = call_problem(xa.rows);
    if (xa.rows == 0) return;
    nb::gil_scoped_release nogil;
    throw_if_error(s.backend->run_linear(p, *s.prepared, {xa.data, xa.dtype, xa.rows, xa.cols},
                                         {ya.data, ya.dtype, ya.rows, ya.cols}, stream_ptr(stream)));
  }

  // Raw-pointer entry for the torch ops (shapes and dtypes checked by the caller in Python).
  void run_ptr(uintptr_t x, uintptr_t y, int64_t m, bool cuda, uintptr_t stream) {
    Slot& s = slot(cuda ? DevKind::kCUDA : DevKind::kCPU);
    const Problem p = call_problem(m);
    if (m == 0) return;
    nb::gil_scoped_release nogil;
    throw_if_error(s.backend->run_linear(
        p, *s.prepared, {reinterpret_cast<const void*>(x), act_input_dtype(p.act), m, p.k},
        {reinterpret_cast<void*>(y), p.out, m, p.n}, stream_ptr(stream)));
  }
};

struct MoE : LayerBase {
  MoEWeights w;
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare(const Backend* b) override {
    return b->prepare_moe(problem, w);
  }

  void run(const MutArray& x, const MutArray& logits, const MutArray& y,
           const std::optional<MutArray>& correction_bias, const std::optional<MutArray>& expert_map,
           const std::optional<std::string>& x_dtype, const std::optional<std::string>& logits_dtype,
           const std::optional<std::string>& y_dtype, uintptr_t stream) {
    DevKind dev = device_of(x, "x");
    const DenseArg xa = dense_arg(x, "x", x_dtype, &dev);
    const DenseArg la = dense_arg(logits, "router_logits", logits_dtype, &dev);
    const DenseArg ya = dense_arg(y, "out", y_dtype, &dev);
    const int64_t e = problem.moe.experts;
    // x, router_logits, out (y) and correction_bias: shapes, dtypes and presence are checked by
    // Backend::run_moe (contract::check_moe_call), once. The expert map is a raw int32 pointer
    // there, so its dtype and length are checked here, the only place that sees the array.
    MoERouting r{{la.data, la.dtype, la.rows, la.cols}, {}, nullptr};
    if (correction_bias) {
      const DenseArg cb = dense_arg(*correction_bias, "correction_bias", std::nullopt, &dev);
      r.correction_bias = {cb.data, cb.dtype, cb.rows, cb.cols};
    }
    if (expert_map) {
      const MutArray& em = *expert_map;
      if (device_of(em, "expert_map") != dev) fail("expert_map must be on the same device as x");
      check_contiguous(em, "expert_map");
      const auto d = em.dtype();
      if (!(nb::dlpack::dtype_code(d.code) == nb::dlpack::dtype_code::Int && d.bits == 32) || numel(em) != e)
        fail("expert_map has dtype " + dtype_str(em) + " and shape " + shape_str(em) + "; expected int32 [" + std::to_string(e) + "]");
      r.expert_map = static_cast<const int32_t*>(em.data());
    }
    Slot& s = slot(dev);
    const Problem p = call_problem(xa.rows);
    if (xa.rows == 0) return;
    nb::gil_scoped_release nogil;
    throw_if_error(s.backend->run_moe(p, *s.prepared, {xa.data, xa.dtype, xa.rows, xa.cols}, r,
                                      {ya.data, ya.dtype, ya.rows, ya.cols}, stream_ptr(stream)));
  }

  void run_ptr(uintptr_t x, uintptr_t logits, const std::string& logits_dtype, uintptr_t y,
               int64_t m, uintptr_t correction_bias, uintptr_t expert_map, bool cuda,
               uintptr_t stream) {
    Slot& s = slot(cuda ? DevKind::kCUDA : DevKind::kCPU);
    const Problem p = call_problem(m);
    if (m == 0) return;
    const int64_t e = p.moe.experts;
    MoERouting r{{reinterpret_cast<const void*>(logits), get(parse_dtype(logits_dtype)), m, e}, {}, nullptr};
    if (p.moe.correction_bias) r.correction_bias = {reinterpret_cast<const void*>(correction_bias), DType::kF32, 1, e};
    if (p.moe.expert_map) r.expert_map = reinterpret_cast<const int32_t*>(expert_map);
    nb::gil_scoped_release nogil;
    throw_if_error(s.backend->run_moe(p, *s.prepared,
                                      {reinterpret_cast<const void*>(x), act_input_dtype(p.act), m, p.n},
                                      r, {reinterpret_cast<void*>(y), p.out, m, p.n}, stream_ptr(stream)));
  }
};

template <typename L>
void configure(L& l, const std::string& backend, bool strict, bool use_env) {
  l.override_backend = backend;
  l.strict = strict;
  l.use_env = use_env;
}

}  // namespace mxq::py
