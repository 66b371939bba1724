// mxq._core: the nanobind binding of mxq's C++ API. Thin: argument checks that name the
// offending array, then calls into the library. The Python package (python/mxq/) allocates
// outputs and adds the convenience layer; nothing numeric is reimplemented here.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "arrays.h"
#include "mxq/layers.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "mxq/pipeline.h"
#include "mxq/quantize.h"
#include "mxq/select.h"
#if defined(MXQ_PY_WITH_CUDA)
#include "cuda/quant/quantize.h"  // the library's GPU quantize / dequantize (mxq_cuda_quant)
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace mxq::py {
namespace {

template <typename T>
T get(StatusOr<T> v) {
  return std::move(v).value();  // throws mxq::Error, translated below
}

[[noreturn]] void fail(std::string msg) { throw Error(invalid_argument(std::move(msg))); }

void* stream_ptr(uintptr_t s) { return reinterpret_cast<void*>(s); }

// Makes a CUDA array's GPU the current device for the call (kernels and backends run on the
// current device), restoring the previous one after; a no-op for CPU arrays. cudaGetDevice /
// cudaSetDevice neither allocate nor synchronise, so this is safe inside graph capture.
class DeviceGuard {
 public:
#if defined(MXQ_PY_WITH_CUDA)
  DeviceGuard(DevKind kind, int device) {
    if (kind == DevKind::kCUDA && cudaGetDevice(&prev_) == cudaSuccess && prev_ != device)
      set_ = cudaSetDevice(device) == cudaSuccess;
  }
  ~DeviceGuard() {
    if (set_) cudaSetDevice(prev_);
  }
#else
  DeviceGuard(DevKind, int) {}
#endif
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
#if defined(MXQ_PY_WITH_CUDA)
  int prev_ = 0;
  bool set_ = false;
#endif
};

#if !defined(MXQ_PY_WITH_CUDA)
[[noreturn]] void no_cuda(const std::string& what) {
  throw Error(unimplemented(what + ": this build of mxq has no CUDA support (built without nvcc); "
                                   "use CPU arrays or rebuild where nvcc is found"));
}
#endif

// ---- element-level numerics (the test interface, vectorised) -----------------------------

ElemType elem_of(const std::string& s) { return get(parse_elem_type(s)); }

void check_cpu(const Array& a, const char* what) {
  if (device_of(a, what) != DevKind::kCPU)
    fail(std::string(what) + " must be a CPU array for this function");
}

// codes (uint8, one per element) -> float32
void decode_codes(const std::string& type, const Array& codes, const MutArray& out) {
  check_cpu(codes, "codes");
  check_cpu(Array(out), "out");
  check_u8(codes, "codes");
  check_contiguous(codes, "codes");
  check_contiguous(out, "out");
  if (dense_dtype(out, "out", std::nullopt) != DType::kF32) fail("out must be float32");
  if (numel(codes) != numel(out))
    fail("out has " + std::to_string(numel(out)) + " elements, codes " + std::to_string(numel(codes)));
  const auto* c = static_cast<const uint8_t*>(codes.data());
  auto* o = static_cast<float*>(out.data());
  const int64_t n = numel(codes);
  if (type == "e8m0") {
    for (int64_t i = 0; i < n; ++i) o[i] = num::e8m0_to_f32(c[i]);
    return;
  }
  const ElemType t = elem_of(type);
  const unsigned limit = 1u << elem_info(t).bits;
  for (int64_t i = 0; i < n; ++i) {
    if (c[i] >= limit)
      fail("codes[" + std::to_string(i) + "] = " + std::to_string(c[i]) + " does not fit " +
           elem_type_name(t) + " (" + std::to_string(elem_info(t).bits) + " bits)");
    o[i] = num::decode_elem(t, c[i]);
  }
}

// float32 values -> element codes of x / 2^(scale-127)
void encode_values(const std::string& type, const Array& x, const MutArray& out, int scale,
                   const std::string& rounding, const std::string& saturation) {
  check_cpu(x, "x");
  check_cpu(Array(out), "out");
  check_contiguous(x, "x");
  check_contiguous(out, "out");
  if (dense_dtype(x, "x", std::nullopt) != DType::kF32) fail("x must be float32");
  check_u8(out, "out");
  if (numel(x) != numel(out))
    fail("out has " + std::to_string(numel(out)) + " elements, x " + std::to_string(numel(x)));
  if (scale < 0 || scale > 254) fail("scale = " + std::to_string(scale) + " is not an E8M0 code in 0..254");
  QuantOptions o;
  o.elem = elem_of(type);
  o.rounding = get(parse_rounding(rounding));
  o.saturation = get(parse_saturation(saturation));
  throw_if_error(validate(o));
  const auto* xv = static_cast<const float*>(x.data());
  auto* c = static_cast<uint8_t*>(out.data());
  for (int64_t i = 0; i < numel(x); ++i) {
    const uint32_t b = num::f32_bits(xv[i]);
    if ((b & num::kF32AbsMask) >= num::kF32Inf)
      fail("x[" + std::to_string(i) + "] is not finite; element encode takes finite values "
           "(a block with NaN/Inf gets scale 0xFF instead)");
    c[i] = num::encode_elem(o.elem, b, scale - 127, o.rounding, o.saturation);
  }
}

// float32 block amaxes -> E8M0 scale codes under a rule
void scale_codes(const std::string& type, const std::string& rule, const Array& amax,
                 const MutArray& out, bool saturate_scale) {
  check_cpu(amax, "amax");
  check_cpu(Array(out), "out");
  check_contiguous(amax, "amax");
  check_contiguous(out, "out");
  if (dense_dtype(amax, "amax", std::nullopt) != DType::kF32) fail("amax must be float32");
  check_u8(out, "out");
  if (numel(amax) != numel(out)) fail("out and amax differ in size");
  const ElemType t = elem_of(type);
  const ScaleRule r = get(parse_scale_rule(rule));
  const auto* a = static_cast<const float*>(amax.data());
  auto* c = static_cast<uint8_t*>(out.data());
  for (int64_t i = 0; i < numel(amax); ++i)
    c[i] = num::scale_code(t, r, num::f32_bits(a[i]) & num::kF32AbsMask, saturate_scale);
}

void pack_or_unpack(const std::string& type, const Array& in, const MutArray& out, bool pack) {
  check_cpu(in, "input");
  check_cpu(Array(out), "out");
  check_u8(in, "input");
  check_u8(out, "out");
  check_contiguous(in, "input");
  check_contiguous(out, "out");
  const ElemType t = elem_of(type);
  const int64_t n = pack ? numel(in) : numel(out);  // element count
  const int64_t bytes = packed_bytes(t, n);
  if ((pack ? numel(out) : numel(in)) != bytes)
    fail(std::string(pack ? "out" : "packed") + " has " +
         std::to_string(pack ? numel(out) : numel(in)) + " bytes, expected " +
         std::to_string(bytes) + " for " + std::to_string(n) + " " + elem_type_name(t) + " elements");
  const auto* src = static_cast<const uint8_t*>(in.data());
  auto* dst = static_cast<uint8_t*>(out.data());
  throw_if_error(pack ? pack_codes(t, src, n, dst) : unpack_codes(t, src, n, dst));
}

// ---- whole-tensor quantize / dequantize (CPU, or CUDA with the CUDA part) ----------------

QuantOptions quant_options(const std::string& fmt, const std::string& scale_rule,
                           const std::string& rounding, const std::string& saturation,
                           bool saturate_scale, bool pad_k, int threads) {
  QuantOptions o;
  o.elem = elem_of(fmt);
  o.scale_rule = get(parse_scale_rule(scale_rule));
  o.rounding = get(parse_rounding(rounding));
  o.saturation = get(parse_saturation(saturation));
  o.saturate_scale = saturate_scale;
  o.pad_k = pad_k;
  o.threads = threads;
  throw_if_error(validate(o));
  return o;
}

void quantize_into(const Array& x, const MutArray& packed, const MutArray& scales,
                   const std::string& fmt, const std::string& scale_rule,
                   const std::string& rounding, const std::string& saturation,
                   bool saturate_scale, bool pad_k, int threads,
                   const std::optional<std::string>& x_dtype, uintptr_t stream) {
  const QuantOptions o =
      quant_options(fmt, scale_rule, rounding, saturation, saturate_scale, pad_k, threads);
  const DevKind dev = device_of(x, "x");
  if (device_of(Array(packed), "packed") != dev || device_of(Array(scales), "scales") != dev)
    fail(std::string("x is a ") + dev_kind_name(dev) +
         " array; packed and scales must be on the same device");
  const DType dt = dense_dtype(x, "x", x_dtype);
  check_contiguous(x, "x");
  check_contiguous(packed, "packed");
  check_contiguous(scales, "scales");
  check_u8(packed, "packed");
  check_u8(scales, "scales");
  const auto [rows, k] = rows_cols(x, "x");
  const int64_t kq = get(quantized_k(k, pad_k));
  if (numel(packed) != rows * packed_bytes(o.elem, kq))
    fail("packed has shape " + shape_str(packed) + "; expected " + std::to_string(rows) +
         " rows x " + std::to_string(packed_bytes(o.elem, kq)) + " bytes (" + std::to_string(kq) +
         " " + elem_type_name(o.elem) + " elements)");
  if (numel(scales) != rows * (kq / kBlockSize))
    fail("scales has shape " + shape_str(scales) + "; expected " + std::to_string(rows) +
         " rows x " + std::to_string(kq / kBlockSize) + " scales");
  if (rows == 0) return;
  auto* p = static_cast<uint8_t*>(packed.data());
  auto* s = static_cast<uint8_t*>(scales.data());
  if (dev == DevKind::kCPU) {
    nb::gil_scoped_release nogil;
    throw_if_error(quantize(x.data(), dt, rows, k, o, p, s));
    return;
  }
#if defined(MXQ_PY_WITH_CUDA)
  const DeviceGuard guard(dev, x.device_id());
  // Asynchronous on `stream`: no allocation, no synchronisation (graph-capturable).
  throw_if_error(cuda::quantize(x.data(), dt, rows, k, o, p, s,
                                static_cast<cudaStream_t>(stream_ptr(stream))));
#else
  (void)stream;
  no_cuda("quantize of a CUDA array");
#endif
}

void dequantize_into(const Array& packed, const Array& scales, const MutArray& out,
                     const std::string& fmt, int threads, const std::optional<std::string>& out_dtype,
                     uintptr_t stream) {
  const ElemType t = elem_of(fmt);
  const DevKind dev = device_of(Array(out), "out");
  if (device_of(packed, "packed") != dev || device_of(scales, "scales") != dev)
    fail(std::string("out is a ") + dev_kind_name(dev) +
         " array; packed and scales must be on the same device");
  const DType dt = dense_dtype(out, "out", out_dtype);
  check_contiguous(out, "out");
  check_contiguous(packed, "packed");
  check_contiguous(scales, "scales");
  check_u8(packed, "packed");
  check_u8(scales, "scales");
  const auto [rows, k] = rows_cols(out, "out");
  if (k % kBlockSize != 0)
    fail("out's last dimension K = " + std::to_string(k) + " is not a multiple of 32");
  if (numel(packed) != rows * packed_bytes(t, k))
    fail("packed has shape " + shape_str(packed) + "; expected " + std::to_string(rows) +
         " rows x " + std::to_string(packed_bytes(t, k)) + " bytes for out " + shape_str(out));
  if (numel(scales) != rows * (k / kBlockSize))
    fail("scales has shape " + shape_str(scales) + "; expected " + std::to_string(rows) +
         " rows x " + std::to_string(k / kBlockSize) + " for out " + shape_str(out));
  if (rows == 0) return;
  const auto* p = static_cast<const uint8_t*>(packed.data());
  const auto* s = static_cast<const uint8_t*>(scales.data());
  if (dev == DevKind::kCPU) {
    nb::gil_scoped_release nogil;
    throw_if_error(dequantize(p, s, t, rows, k, dt, out.data(), threads));
    return;
  }
#if defined(MXQ_PY_WITH_CUDA)
  const DeviceGuard guard(dev, out.device_id());
  throw_if_error(cuda::dequantize(p, s, t, rows, k, dt, out.data(),
                                  static_cast<cudaStream_t>(stream_ptr(stream))));
#else
  (void)stream;
  no_cuda("dequantize of a CUDA array");
#endif
}

// ---- problems, the oracle ----------------------------------------------------------------

// Backends whose names start with "cuda" take device pointers; all others host pointers.
DevKind backend_kind(const Backend* b) {
  return b->name().substr(0, 4) == "cuda" ? DevKind::kCUDA : DevKind::kCPU;
}

std::vector<std::string> backend_names() {
  std::vector<std::string> out;
  for (const Backend* b : backends()) out.emplace_back(b->name());
  return out;
}

struct Choice {
  const Backend* backend = nullptr;
  std::string how;
};

// The oracle's choice among the backends that run on `kind` arrays. Overrides (argument, then
// MXQ_LINEAR_BACKEND / MXQ_MOE_BACKEND) win and must run on that device.
Choice choose(const Problem& p, DevKind kind, const std::string& override_backend, bool strict,
              bool use_env) {
  std::string ov = override_backend, how = "override (backend=)";
  if (ov.empty() && use_env) {
    const char* env = p.op == Op::kMoE ? "MXQ_MOE_BACKEND" : "MXQ_LINEAR_BACKEND";
    if (const char* v = std::getenv(env); v != nullptr && *v != '\0') {
      const Backend* b = find_backend(v);
      // An environment override for the other device kind does not apply to this one.
      if (b == nullptr || backend_kind(b) == kind) {
        ov = v;
        how = std::string("override (") + env + ")";
      }
    }
  }
  if (!ov.empty()) {
    const Backend* b = find_backend(ov);
    if (b == nullptr) {
      std::string names;
      for (const auto& n : backend_names()) names += (names.empty() ? "" : ", ") + n;
      fail("unknown backend '" + ov + "' (built-in backends: " + names + ")");
    }
    if (backend_kind(b) != kind)
      fail("backend '" + ov + "' runs on " + dev_kind_name(backend_kind(b)) + " arrays, but the " +
           "arrays are " + dev_kind_name(kind) + " arrays");
    if (const Verdict v = b->supports(this_device()); !v)
      throw Error(unimplemented("backend '" + ov + "' cannot run on this machine: " + v.reason));
    if (const Verdict v = b->can_implement(p); !v)
      throw Error(unimplemented("backend '" + ov + "' cannot run " + p.to_string() + ": " + v.reason));
    return {b, how};
  }
  SelectOptions o;
  o.use_env = false;
  o.warn = false;
  std::string rejected;
  const Backend* best = nullptr;
  bool faster_exists = false;
  // candidates come in rank order, with every backend's verdict, whether or not any is eligible
  const StatusOr<Selection> sel = select_backend(p, this_device(), o);
  std::vector<Candidate> cands;
  if (sel.ok()) {
    cands = sel.value().candidates;
  } else {
    for (const Backend* b : backends()) {
      Verdict v = b->supports(this_device());
      if (v) v = b->can_implement(p);
      cands.push_back({b, v.ok, v.reason});
    }
  }
  for (const Candidate& c : cands) {
    if (backend_kind(c.backend) != kind) continue;
    if (!c.backend->is_reference()) faster_exists = true;
    if (c.eligible && best == nullptr) best = c.backend;
    if (!c.eligible) rejected += "; " + std::string(c.backend->name()) + ": " + c.reason;
  }
  if (best == nullptr) {
    if (kind == DevKind::kCUDA && rejected.empty())
      throw Error(unimplemented("this build has no CUDA backend for " + p.to_string() +
                                " (built-in backends: " + [] {
                                  std::string s;
                                  for (const auto& n : backend_names()) s += (s.empty() ? "" : ", ") + n;
                                  return s;
                                }() + ")"));
    throw Error(unimplemented("no " + std::string(dev_kind_name(kind)) + " backend can run " +
                              p.to_string() + rejected));
  }
  std::string h = "automatic";
  if (best->is_reference() && faster_exists) {
    if (strict)
      throw Error(unimplemented("strict: only the reference backend '" + std::string(best->name()) +
                                "' can run " + p.to_string() + rejected));
    static std::mutex mu;
    static std::set<std::string> warned;
    std::lock_guard<std::mutex> lock(mu);
    if (warned.insert(p.to_string() + rejected).second)
      std::fprintf(stderr, "mxq: warning: %s falls back to %s%s\n", p.to_string().c_str(),
                   std::string(best->name()).c_str(), rejected.c_str());
    h = "automatic (fallback to reference)";
  }
  return {best, h};
}

// Problems are built from strings in Python (mxq/_problem.py); fields are exposed as names.
void bind_problem(nb::module_& m) {
  nb::class_<Problem>(m, "Problem")
      .def_static(
          "linear",
          [](const std::string& weights, const std::string& act, int64_t m_, int64_t n, int64_t k,
             bool bias, const std::optional<std::string>& out) {
            Problem p = Problem::linear(elem_of(weights), get(parse_act_key(act)), m_, n, k, bias);
            if (out) p.out = get(parse_dtype(*out));
            throw_if_error(p.validate());
            return p;
          },
          "weights"_a, "act"_a = "bf16", "m"_a = 1, "n"_a, "k"_a, "bias"_a = false,
          "out"_a = nb::none())
      .def_static(
          "moe",
          [](const std::string& weights, const std::string& act, int64_t tokens, int64_t hidden,
             int64_t inter, int64_t experts, int64_t topk, const std::string& activation,
             const std::string& layout, const std::string& routing, bool renormalize,
             int64_t n_group, int64_t topk_group, float routed_scaling, bool correction_bias,
             float swiglu_alpha, float swiglu_limit, bool expert_map, bool bias,
             const std::optional<std::string>& out) {
            Problem p = Problem::moe_problem(elem_of(weights), get(parse_act_key(act)), tokens,
                                             hidden, inter, experts, topk);
            p.moe.activation = get(parse_moe_activation(activation));
            p.moe.layout = get(io::parse_gate_up_layout(layout));
            p.moe.routing = get(parse_routing(routing));
            p.moe.renormalize = renormalize;
            p.moe.n_group = n_group;
            p.moe.topk_group = topk_group;
            p.moe.routed_scaling = routed_scaling;
            p.moe.correction_bias = correction_bias;
            p.moe.swiglu_alpha = swiglu_alpha;
            p.moe.swiglu_limit = swiglu_limit;
            p.moe.expert_map = expert_map;
            p.bias = bias;
            if (out) p.out = get(parse_dtype(*out));
            throw_if_error(p.validate());
            return p;
          },
          "weights"_a, "act"_a = "bf16", "tokens"_a = 1, "hidden"_a, "inter"_a, "experts"_a,
          "topk"_a, "activation"_a = "silu", "layout"_a = "chunked", "routing"_a = "softmax-topk",
          "renormalize"_a = true, "n_group"_a = 1, "topk_group"_a = 1, "routed_scaling"_a = 1.0f,
          "correction_bias"_a = false, "swiglu_alpha"_a = 1.702f, "swiglu_limit"_a = 7.0f,
          "expert_map"_a = false, "bias"_a = false, "out"_a = nb::none())
      .def_prop_ro("op", [](const Problem& p) { return std::string(op_name(p.op)); })
      .def_prop_ro("weights", [](const Problem& p) { return std::string(mx_format_name(p.weight)); })
      .def_prop_ro("act", [](const Problem& p) { return std::string(act_key_name(p.act)); })
      .def_prop_ro("out", [](const Problem& p) { return std::string(dtype_name(p.out)); })
      .def_prop_ro("x_dtype", [](const Problem& p) { return std::string(dtype_name(act_input_dtype(p.act))); })
      .def_prop_ro("m", [](const Problem& p) { return p.m; })
      .def_prop_ro("n", [](const Problem& p) { return p.n; })
      .def_prop_ro("k", [](const Problem& p) { return p.k; })
      .def_prop_ro("bias", [](const Problem& p) { return p.bias; })
      .def_prop_ro("experts", [](const Problem& p) { return p.moe.experts; })
      .def_prop_ro("topk", [](const Problem& p) { return p.moe.topk; })
      .def_prop_ro("activation", [](const Problem& p) { return std::string(moe_activation_name(p.moe.activation)); })
      .def_prop_ro("layout", [](const Problem& p) { return std::string(io::gate_up_layout_name(p.moe.layout)); })
      .def_prop_ro("routing", [](const Problem& p) { return std::string(routing_name(p.moe.routing)); })
      .def("with_m",
           [](const Problem& p, int64_t m_) {
             Problem q = p;
             q.m = m_;
             throw_if_error(q.validate());
             return q;
           })
      .def("__str__", &Problem::to_string)
      .def("__repr__", [](const Problem& p) { return "<mxq.Problem " + p.to_string() + ">"; });
}

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

  Problem call_problem(const Slot& s, int64_t m) const {
    Problem p = problem;
    p.m = m;
    if (m > 0) {
      if (const Verdict v = s.backend->can_implement(p); !v)
        throw Error(unimplemented("backend '" + std::string(s.backend->name()) +
                                  "' (prepared for this layer) cannot run " + p.to_string() + ": " +
                                  v.reason));
    }
    return p;
  }
};

MXWeightView weight_view(const Array& packed, const Array& scales, ElemType t, int64_t batch,
                         const char* name, int64_t n_expect = -1, int64_t k_expect = -1) {
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
  if (n_expect >= 0 && n != n_expect)
    fail(pn + " has shape " + shape_str(packed) + ": N = " + std::to_string(n) + ", expected " + std::to_string(n_expect));
  if (k_expect >= 0 && k != k_expect)
    fail(pn + " has shape " + shape_str(packed) + ": K = " + std::to_string(k) + " (" + std::to_string(bytes) + " bytes of " + elem_type_name(t) + "), expected K = " + std::to_string(k_expect));
  if (numel(scales) != rows * (k / kBlockSize))
    fail(sn + " has shape " + shape_str(scales) + "; expected " + std::to_string(rows) + " x " + std::to_string(k / kBlockSize) + " for K = " + std::to_string(k));
  return {t, batch, n, k, static_cast<const uint8_t*>(packed.data()),
          static_cast<const uint8_t*>(scales.data())};
}

DenseView dense_host(const std::optional<Array>& a, const char* what, int64_t rows, int64_t cols) {
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

DenseArg dense_arg(const MutArray& a, const char* what, const std::optional<std::string>& as,
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

void expect_dense(const DenseArg& a, const char* what, DType dt, int64_t rows, int64_t cols) {
  if (a.dtype != dt)
    fail(std::string(what) + " has dtype " + dtype_name(a.dtype) + "; this layer expects " + dtype_name(dt));
  if (a.rows != rows || a.cols != cols)
    fail(std::string(what) + " is " + std::to_string(a.rows) + " x " + std::to_string(a.cols) +
         " (rows x last dim); expected " + std::to_string(rows) + " x " + std::to_string(cols));
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
    expect_dense(xa, "x", act_input_dtype(problem.act), xa.rows, problem.k);
    expect_dense(ya, "out", problem.out, xa.rows, problem.n);
    const DeviceGuard guard(dev, x.device_id());  // before slot(): prepare on x's GPU
    Slot& s = slot(dev);
    const Problem p = call_problem(s, xa.rows);
    if (xa.rows == 0) return;
    nb::gil_scoped_release nogil;
    throw_if_error(s.backend->run_linear(p, *s.prepared, {xa.data, xa.dtype, xa.rows, xa.cols},
                                         {ya.data, ya.dtype, ya.rows, ya.cols}, stream_ptr(stream)));
  }

  // Raw-pointer entry for the torch ops (shapes and dtypes checked by the caller in Python).
  void run_ptr(uintptr_t x, uintptr_t y, int64_t m, bool cuda, uintptr_t stream) {
    Slot& s = slot(cuda ? DevKind::kCUDA : DevKind::kCPU);
    const Problem p = call_problem(s, m);
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
    expect_dense(xa, "x", act_input_dtype(problem.act), xa.rows, problem.n);
    expect_dense(la, "router_logits", la.dtype, xa.rows, e);
    expect_dense(ya, "out", problem.out, xa.rows, problem.n);
    MoERouting r{{la.data, la.dtype, la.rows, la.cols}, {}, nullptr};
    if (problem.moe.correction_bias != correction_bias.has_value())
      fail(problem.moe.correction_bias ? "this MoE layer was prepared with correction_bias=True: pass correction_bias [E] float32"
                                       : "correction_bias given, but the layer was prepared without it");
    if (correction_bias) {
      const DenseArg cb = dense_arg(*correction_bias, "correction_bias", std::nullopt, &dev);
      if (cb.dtype != DType::kF32 || cb.rows * cb.cols != e) fail("correction_bias must be float32 with " + std::to_string(e) + " values");
      r.correction_bias = {cb.data, cb.dtype, 1, e};
    }
    if (problem.moe.expert_map != expert_map.has_value())
      fail(problem.moe.expert_map ? "this MoE layer was prepared with expert_map=True: pass expert_map [E] int32"
                                  : "expert_map given, but the layer was prepared without it");
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
    const Problem p = call_problem(s, xa.rows);
    if (xa.rows == 0) return;
    nb::gil_scoped_release nogil;
    throw_if_error(s.backend->run_moe(p, *s.prepared, {xa.data, xa.dtype, xa.rows, xa.cols}, r,
                                      {ya.data, ya.dtype, ya.rows, ya.cols}, stream_ptr(stream)));
  }

  void run_ptr(uintptr_t x, uintptr_t logits, const std::string& logits_dtype, uintptr_t y,
               int64_t m, uintptr_t correction_bias, uintptr_t expert_map, bool cuda,
               uintptr_t stream) {
    Slot& s = slot(cuda ? DevKind::kCUDA : DevKind::kCPU);
    const Problem p = call_problem(s, m);
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

DevKind parse_device(const std::string& d) {
  if (d == "cpu") return DevKind::kCPU;
  if (d == "cuda" || d.rfind("cuda:", 0) == 0) return DevKind::kCUDA;
  fail("device '" + d + "' (expected 'cpu' or 'cuda')");
}

template <typename L>
void bind_layer_common(nb::class_<L>& c) {
  c.def("prepare", [](L& l, const std::string& device) {
       const Slot& s = l.slot(parse_device(device));
       return std::string(s.backend->name());
     }, "device"_a = "cpu", "Prepares the weights for `device` ('cpu' or 'cuda') now; returns the backend name.")
      .def("backend_for", [](L& l, const std::string& device) -> std::optional<std::string> {
        std::lock_guard<std::mutex> lock(l.mu);
        const Slot& s = l.slots[int(parse_device(device))];
        if (s.backend == nullptr) return std::nullopt;
        return std::string(s.backend->name());
      }, "device"_a)
      .def("how_for", [](L& l, const std::string& device) {
        std::lock_guard<std::mutex> lock(l.mu);
        return l.slots[int(parse_device(device))].how;
      }, "device"_a)
      .def("prepared_bytes", [](L& l, const std::string& device) -> int64_t {
        std::lock_guard<std::mutex> lock(l.mu);
        const Slot& s = l.slots[int(parse_device(device))];
        return s.prepared ? int64_t(s.prepared->bytes()) : 0;
      }, "device"_a)
      .def_prop_ro("problem", [](const L& l) { return l.problem; })
      .def("explain", [](const L& l, int64_t m) {
        SelectOptions o;
        o.override_backend = l.override_backend;
        o.strict = l.strict;
        o.use_env = l.use_env;
        o.warn = false;
        Problem p = l.problem;
        if (m > 0) p.m = m;
        return explain(p, this_device(), o);
      }, "m"_a = 0);
}

// ---- checkpoints -------------------------------------------------------------------------

struct Model {
  std::unique_ptr<io::Checkpoint> ck;
  io::ModelInfo info;
  std::string path;
};

nb::object bytes_array(nb::handle owner, std::span<const uint8_t> bytes,
                       const std::vector<int64_t>& shape) {
  std::vector<size_t> sh(shape.begin(), shape.end());
  nb::ndarray<nb::numpy, const uint8_t> a(bytes.data(), sh.size(), sh.data(), owner);
  return nb::cast(a, nb::rv_policy::reference);
}

// Shape of a weight's packed bytes / scales: the logical shape with K replaced.
std::vector<int64_t> packed_shape(const io::MXWeight& w) {
  std::vector<int64_t> s = w.shape;
  s.back() = packed_bytes(w.elem, w.k());
  return s;
}
std::vector<int64_t> scales_shape(const io::MXWeight& w) {
  std::vector<int64_t> s = w.shape;
  s.back() = w.k() / kBlockSize;
  return s;
}

// A tensor of the checkpoint as a numpy array view (no copy). Dtypes numpy lacks come back as
// raw integer views; the Python layer reinterprets them (mxq/_checkpoint.py).
nb::object tensor_view(nb::handle owner, const io::Checkpoint::Entry& e) {
  const io::TensorInfo& t = *e.info;
  const auto bytes = e.bytes();
  std::vector<size_t> sh(t.shape.begin(), t.shape.end());
  auto make = [&](auto* ptr) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(ptr)>>;
    nb::ndarray<nb::numpy, const T> a(reinterpret_cast<const T*>(bytes.data()), sh.size(), sh.data(), owner);
    return nb::cast(a, nb::rv_policy::reference);
  };
  switch (t.dtype) {
    case io::StDType::kBool: return make(static_cast<const bool*>(nullptr));
    case io::StDType::kU8: return make(static_cast<const uint8_t*>(nullptr));
    case io::StDType::kI8: return make(static_cast<const int8_t*>(nullptr));
    case io::StDType::kU16: return make(static_cast<const uint16_t*>(nullptr));
    case io::StDType::kI16: return make(static_cast<const int16_t*>(nullptr));
    case io::StDType::kU32: return make(static_cast<const uint32_t*>(nullptr));
    case io::StDType::kI32: return make(static_cast<const int32_t*>(nullptr));
    case io::StDType::kU64: return make(static_cast<const uint64_t*>(nullptr));
    case io::StDType::kI64: return make(static_cast<const int64_t*>(nullptr));
    case io::StDType::kF32: return make(static_cast<const float*>(nullptr));
    case io::StDType::kF64: return make(static_cast<const double*>(nullptr));
    default: break;
  }
  // F16 / BF16 -> uint16; F8_* / E8M0 -> uint8; F4 / F6 -> packed uint8 bytes [nbytes]
  if (t.dtype == io::StDType::kF16 || t.dtype == io::StDType::kBF16)
    return make(static_cast<const uint16_t*>(nullptr));
  if (st_dtype_bits(t.dtype) == 8) return make(static_cast<const uint8_t*>(nullptr));
  std::vector<size_t> flat{size_t(t.nbytes())};
  nb::ndarray<nb::numpy, const uint8_t> a(bytes.data(), 1, flat.data(), owner);
  return nb::cast(a, nb::rv_policy::reference);
}

LayerSpec find_layer(const Model& md, const std::string& name, int64_t tokens) {
  std::string names;
  for (const LayerSpec& l : get(model_layers(*md.ck, md.info, tokens))) {
    if (l.name == name) return l;
    names += (names.empty() ? "" : ", ") + l.name;
  }
  throw Error(Status(StatusCode::kNotFound, "no MX layer '" + name + "' in " + md.path +
                                                " (layers: " + names + ")"));
}

nb::dict report_dict(const io::QuantizeReport& r) {
  nb::dict d;
  d["quantized"] = r.quantized;
  d["copied"] = r.copied;
  d["bytes_in"] = r.bytes_in;
  d["bytes_out"] = r.bytes_out;
  d["seconds"] = r.seconds;
  d["ignored"] = r.ignored;
  return d;
}

}  // namespace
}  // namespace mxq::py

NB_MODULE(_core, m) {
  using namespace mxq;
  using namespace mxq::py;
  m.doc() = "mxq C++ core (nanobind). Use the `mxq` package, not this module directly.";

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const mxq::Error& e) {
      const std::string msg = e.what();
      switch (e.status().code()) {
        case StatusCode::kInvalidArgument:
        case StatusCode::kDataLoss: PyErr_SetString(PyExc_ValueError, msg.c_str()); break;
        case StatusCode::kNotFound: PyErr_SetString(PyExc_LookupError, msg.c_str()); break;
        case StatusCode::kUnimplemented: PyErr_SetString(PyExc_NotImplementedError, msg.c_str()); break;
        default: PyErr_SetString(PyExc_RuntimeError, msg.c_str()); break;
      }
    }
  });

#if defined(MXQ_PY_WITH_CUDA)
  m.attr("cuda_built") = true;
#else
  m.attr("cuda_built") = false;
#endif

  // element numerics
  m.def("decode_codes", &decode_codes, "type"_a, "codes"_a, "out"_a);
  m.def("encode_values", &encode_values, "type"_a, "x"_a, "out"_a, "scale"_a = 127,
        "rounding"_a = "rne", "saturation"_a = "saturate");
  m.def("scale_codes", &scale_codes, "type"_a, "rule"_a, "amax"_a, "out"_a, "saturate_scale"_a = false);
  m.def("pack_codes", [](const std::string& t, const Array& codes, const MutArray& out) {
    pack_or_unpack(t, codes, out, true);
  }, "type"_a, "codes"_a, "out"_a);
  m.def("unpack_codes", [](const std::string& t, const Array& packed, const MutArray& out) {
    pack_or_unpack(t, packed, out, false);
  }, "type"_a, "packed"_a, "out"_a);
  m.def("elem_info", [](const std::string& t) {
    const ElemType e = elem_of(t);
    const ElemInfo i = elem_info(e);
    nb::dict d;
    d["elem"] = std::string(elem_type_name(e));
    d["format"] = std::string(mx_format_name(e));
    d["bits"] = i.bits;
    d["max_normal"] = i.max_normal;
    d["is_int"] = i.is_int;
    d["pack_group"] = pack::pack_group(e);
    return d;
  }, "type"_a);
  m.def("quantized_k", [](int64_t k, bool pad_k) { return get(quantized_k(k, pad_k)); }, "k"_a, "pad_k"_a = false);
  m.def("check_quant_options", [](const std::string& fmt, const std::string& scale_rule,
                                  const std::string& rounding, const std::string& saturation,
                                  bool saturate_scale) {
    return describe(quant_options(fmt, scale_rule, rounding, saturation, saturate_scale, false, 0));
  }, "fmt"_a, "scale_rule"_a, "rounding"_a, "saturation"_a, "saturate_scale"_a);

  // tensors
  m.def("quantize_into", &quantize_into, "x"_a, "packed"_a, "scales"_a, "fmt"_a, "scale_rule"_a,
        "rounding"_a, "saturation"_a, "saturate_scale"_a, "pad_k"_a, "threads"_a,
        "x_dtype"_a = nb::none(), "stream"_a = 0);
  m.def("dequantize_into", &dequantize_into, "packed"_a, "scales"_a, "out"_a, "fmt"_a,
        "threads"_a = 0, "out_dtype"_a = nb::none(), "stream"_a = 0);

  // the oracle
  bind_problem(m);
  m.def("backends", [] {
    std::vector<nb::dict> out;
    for (const Backend* b : backends()) {
      nb::dict d;
      const Verdict v = b->supports(this_device());
      d["name"] = std::string(b->name());
      d["priority"] = b->priority();
      d["reference"] = b->is_reference();
      d["device"] = std::string(dev_kind_name(backend_kind(b)));
      d["supported"] = v.ok;
      d["reason"] = v.reason;
      out.push_back(d);
    }
    return out;
  });
  m.def("device", [] { return this_device().to_string(); });
  m.def("explain", [](const Problem& p, const std::string& backend, bool strict, bool use_env) {
    SelectOptions o;
    o.override_backend = backend;
    o.strict = strict;
    o.use_env = use_env;
    o.warn = false;
    return explain(p, this_device(), o);
  }, "problem"_a, "backend"_a = "", "strict"_a = false, "use_env"_a = true);
  m.def("select", [](const Problem& p, const std::string& device, const std::string& backend,
                     bool strict, bool use_env) {
    const Choice c = choose(p, parse_device(device), backend, strict, use_env);
    return std::make_pair(std::string(c.backend->name()), c.how);
  }, "problem"_a, "device"_a = "cpu", "backend"_a = "", "strict"_a = false, "use_env"_a = true);

  // layers
  auto lin = nb::class_<Linear>(m, "Linear");
  lin.def("__init__", [](Linear* self, const Problem& p, const Array& packed, const Array& scales,
                         const std::optional<Array>& bias, float input_scale, nb::list keep,
                         const std::string& backend, bool strict, bool use_env) {
        new (self) Linear();
        if (p.op != Op::kLinear) fail("Linear needs a linear problem, got " + p.to_string());
        self->problem = p;
        self->w.w = weight_view(packed, scales, p.weight, 1, "weight", p.n, p.k);
        if (p.bias != bias.has_value()) fail(p.bias ? "the problem has a bias but none was given" : "a bias was given but the problem has none");
        self->w.bias = dense_host(bias, "bias", 1, p.n);
        self->w.input_scale = input_scale;
        for (auto o : keep) self->keep.push_back(nb::borrow(o));
        configure(*self, backend, strict, use_env);
      }, "problem"_a, "packed"_a, "scales"_a, "bias"_a.none(), "input_scale"_a, "keep"_a,
      "backend"_a, "strict"_a, "use_env"_a)
      .def("run", &Linear::run, "x"_a, "out"_a, "x_dtype"_a = nb::none(), "out_dtype"_a = nb::none(),
           "stream"_a = 0)
      .def("run_ptr", &Linear::run_ptr, "x"_a, "out"_a, "m"_a, "cuda"_a, "stream"_a);
  bind_layer_common(lin);

  auto moe = nb::class_<MoE>(m, "MoE");
  moe.def("__init__", [](MoE* self, const Problem& p, const std::optional<Array>& w13p,
                         const std::optional<Array>& w13s, const std::optional<Array>& w1p,
                         const std::optional<Array>& w1s, const std::optional<Array>& w3p,
                         const std::optional<Array>& w3s, const Array& w2p, const Array& w2s,
                         const std::optional<Array>& b13, const std::optional<Array>& b1,
                         const std::optional<Array>& b3, const std::optional<Array>& b2,
                         float input_scale13, float input_scale2, nb::list keep,
                         const std::string& backend, bool strict, bool use_env) {
        new (self) MoE();
        if (p.op != Op::kMoE) fail("MoE needs a moe problem, got " + p.to_string());
        self->problem = p;
        const int64_t e = p.moe.experts, h = p.n, i = p.k;
        if (p.moe.layout == io::GateUpLayout::kSeparate) {
          if (!w1p || !w1s || !w3p || !w3s) fail("layout 'separate' needs w1 and w3 (gate, up) packed and scales");
          self->w.w1 = weight_view(*w1p, *w1s, p.weight, e, "w1", i, h);
          self->w.w3 = weight_view(*w3p, *w3s, p.weight, e, "w3", i, h);
          self->w.bias1 = dense_host(b1, "bias1", e, i);
          self->w.bias3 = dense_host(b3, "bias3", e, i);
        } else {
          if (!w13p || !w13s) fail("layout '" + std::string(io::gate_up_layout_name(p.moe.layout)) + "' needs w13 (fused gate/up) packed and scales");
          self->w.w13 = weight_view(*w13p, *w13s, p.weight, e, "w13", 2 * i, h);
          self->w.bias13 = dense_host(b13, "bias13", e, 2 * i);
        }
        self->w.w2 = weight_view(w2p, w2s, p.weight, e, "w2", h, i);
        self->w.bias2 = dense_host(b2, "bias2", e, h);
        self->w.input_scale13 = input_scale13;
        self->w.input_scale2 = input_scale2;
        for (auto o : keep) self->keep.push_back(nb::borrow(o));
        configure(*self, backend, strict, use_env);
      }, "problem"_a, "w13_packed"_a.none(), "w13_scales"_a.none(), "w1_packed"_a.none(),
      "w1_scales"_a.none(), "w3_packed"_a.none(), "w3_scales"_a.none(), "w2_packed"_a,
      "w2_scales"_a, "bias13"_a.none(), "bias1"_a.none(), "bias3"_a.none(), "bias2"_a.none(),
      "input_scale13"_a, "input_scale2"_a, "keep"_a, "backend"_a, "strict"_a, "use_env"_a)
      .def("run", &MoE::run, "x"_a, "router_logits"_a, "out"_a, "correction_bias"_a.none(),
           "expert_map"_a.none(), "x_dtype"_a = nb::none(), "logits_dtype"_a = nb::none(),
           "out_dtype"_a = nb::none(), "stream"_a = 0)
      .def("run_ptr", &MoE::run_ptr, "x"_a, "router_logits"_a, "logits_dtype"_a, "out"_a, "m"_a,
           "correction_bias"_a, "expert_map"_a, "cuda"_a, "stream"_a);
  bind_layer_common(moe);

  // checkpoints
  nb::class_<io::MXWeight>(m, "MXWeight")
      .def_ro("module", &io::MXWeight::module)
      .def_prop_ro("format", [](const io::MXWeight& w) { return std::string(mx_format_name(w.elem)); })
      .def_prop_ro("elem", [](const io::MXWeight& w) { return std::string(elem_type_name(w.elem)); })
      .def_ro("shape", &io::MXWeight::shape)
      .def_ro("packed_name", &io::MXWeight::packed_name)
      .def_ro("scale_name", &io::MXWeight::scale_name)
      .def_ro("bias_name", &io::MXWeight::bias_name)
      .def_ro("input_scale_name", &io::MXWeight::input_scale_name)
      .def_prop_ro("gate_up_layout", [](const io::MXWeight& w) { return std::string(io::gate_up_layout_name(w.gate_up)); })
      .def_prop_ro("nbytes", [](const io::MXWeight& w) { return w.bytes(); })
      .def_prop_ro("packed", [](nb::handle self) {
        const auto& w = nb::cast<const io::MXWeight&>(self);
        return bytes_array(self, w.packed, packed_shape(w));
      }, "Packed elements [.., N, K * bits / 8] (uint8 view into the memory-mapped file).")
      .def_prop_ro("scales", [](nb::handle self) {
        const auto& w = nb::cast<const io::MXWeight&>(self);
        return bytes_array(self, w.scales, scales_shape(w));
      }, "E8M0 scale codes [.., N, K / 32] (uint8 view into the memory-mapped file).")
      .def("__repr__", [](const io::MXWeight& w) {
        std::string s;
        for (size_t i = 0; i < w.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(w.shape[i]);
        return "<mxq.MXWeight " + w.module + " " + mx_format_name(w.elem) + " [" + s + "]>";
      });

  nb::class_<Model>(m, "Model")
      .def_static("open", [](const std::string& path) {
        auto md = std::make_unique<Model>();
        md->ck = std::make_unique<io::Checkpoint>(get(io::Checkpoint::open(path)));
        md->info = get(io::read_model(*md->ck));
        md->path = path;
        return md;
      }, "path"_a)
      .def_ro("path", &Model::path)
      .def_prop_ro("format", [](const Model& md) { return md.info.format; })
      .def_prop_ro("scheme", [](const Model& md) { return md.info.scheme; })
      .def_prop_ro("activations", [](const Model& md) { return std::string(io::act_scheme_name(md.info.act)); })
      .def_prop_ro("scale_rule", [](const Model& md) -> std::optional<std::string> {
        if (!md.info.scale_rule) return std::nullopt;
        return std::string(scale_rule_name(*md.info.scale_rule));
      })
      .def_prop_ro("ignored", [](const Model& md) { return md.info.ignored; })
      .def_prop_ro("passthrough", [](const Model& md) { return md.info.passthrough; })
      .def_prop_ro("config_json", [](const Model& md) { return md.ck->config_json(); })
      .def_prop_ro("hf_quant_config_json", [](const Model& md) { return md.ck->hf_quant_config_json(); })
      .def_prop_ro("names", [](const Model& md) { return md.ck->names(); })
      .def_prop_ro("weights", [](nb::handle self) {
        const Model& md = nb::cast<const Model&>(self);
        nb::list out;
        for (const io::MXWeight& w : md.info.weights) {
          // each weight keeps the model (whose mappings it views) alive
          out.append(nb::cast(&w, nb::rv_policy::reference_internal, self));
        }
        return out;
      })
      .def("tensor_info", [](const Model& md, const std::string& name) {
        const io::Checkpoint::Entry* e = md.ck->find(name);
        if (e == nullptr) throw Error(Status(StatusCode::kNotFound, "tensor '" + name + "' is not in " + md.path));
        return std::make_pair(std::string(io::st_dtype_name(e->info->dtype)), e->info->shape);
      }, "name"_a)
      .def("tensor_raw", [](nb::handle self, const std::string& name) {
        const Model& md = nb::cast<const Model&>(self);
        const io::Checkpoint::Entry* e = md.ck->find(name);
        if (e == nullptr) throw Error(Status(StatusCode::kNotFound, "tensor '" + name + "' is not in " + md.path));
        return tensor_view(self, *e);
      }, "name"_a)
      .def("layers", [](const Model& md, int64_t tokens) {
        std::vector<nb::dict> out;
        for (const LayerSpec& l : get(model_layers(*md.ck, md.info, tokens))) {
          nb::dict d;
          d["name"] = l.name;
          d["op"] = std::string(op_name(l.problem.op));
          d["problem"] = l.problem;
          d["weight"] = l.w->module;
          d["down"] = l.w2 ? l.w2->module : std::string();
          d["router_weight"] = l.router_weight;
          d["router_bias"] = l.router_bias;
          out.push_back(d);
        }
        return out;
      }, "tokens"_a = 1)
      .def("linear", [](nb::handle self, const std::string& name, const std::string& act,
                        const std::optional<std::string>& out, int64_t tokens,
                        const std::string& backend, bool strict, bool use_env) {
        const Model& md = nb::cast<const Model&>(self);
        const LayerSpec l = find_layer(md, name, tokens);
        if (l.problem.op != Op::kLinear) fail("layer '" + name + "' is an MoE layer; use Model.moe");
        auto lin_ = std::make_unique<Linear>();
        lin_->problem = l.problem;
        lin_->problem.act = get(parse_act_key(act));
        lin_->problem.out = out ? get(parse_dtype(*out)) : act_input_dtype(lin_->problem.act);
        lin_->w = get(linear_weights(*md.ck, l));
        if (!l.w->input_scale_name.empty()) {
          const io::Checkpoint::Entry* e = md.ck->find(l.w->input_scale_name);
          if (e != nullptr && e->info->numel() == 1 &&
              (e->info->dtype == io::StDType::kF32 || e->info->dtype == io::StDType::kBF16 || e->info->dtype == io::StDType::kF16))
            lin_->w.input_scale = num::load_dense(e->bytes().data(),
                e->info->dtype == io::StDType::kF32 ? DType::kF32 : (e->info->dtype == io::StDType::kBF16 ? DType::kBF16 : DType::kF16), 0);
        }
        lin_->keep.push_back(nb::borrow(self));
        configure(*lin_, backend, strict, use_env);
        return lin_;
      }, "name"_a, "act"_a = "bf16", "out"_a = nb::none(), "tokens"_a = 1, "backend"_a = "",
         "strict"_a = false, "use_env"_a = true)
      .def("moe", [](nb::handle self, const std::string& name, const std::string& act,
                     const std::optional<std::string>& out, int64_t tokens,
                     const std::string& backend, bool strict, bool use_env) {
        const Model& md = nb::cast<const Model&>(self);
        const LayerSpec l = find_layer(md, name, tokens);
        if (l.problem.op != Op::kMoE) fail("layer '" + name + "' is a linear layer; use Model.linear");
        auto moe_ = std::make_unique<MoE>();
        moe_->problem = l.problem;
        moe_->problem.act = get(parse_act_key(act));
        moe_->problem.out = out ? get(parse_dtype(*out)) : act_input_dtype(moe_->problem.act);
        moe_->w = get(moe_weights(*md.ck, l));
        moe_->keep.push_back(nb::borrow(self));
        configure(*moe_, backend, strict, use_env);
        return moe_;
      }, "name"_a, "act"_a = "bf16", "out"_a = nb::none(), "tokens"_a = 1, "backend"_a = "",
         "strict"_a = false, "use_env"_a = true)
      .def("router_logits", [](const Model& md, const std::string& name, const Array& x) {
        check_cpu(x, "x");
        check_contiguous(x, "x");
        const auto d = x.dtype();
        if (!(d.bits == 16 && (nb::dlpack::dtype_code(d.code) == nb::dlpack::dtype_code::UInt ||
                               nb::dlpack::dtype_code(d.code) == nb::dlpack::dtype_code::Bfloat)))
          fail("x has dtype " + dtype_str(x) + "; expected bfloat16 bits (uint16)");
        const auto [rows, cols] = rows_cols(x, "x");
        const LayerSpec l = find_layer(md, name, rows);
        if (l.problem.op != Op::kMoE) fail("layer '" + name + "' is not an MoE layer");
        if (cols != l.problem.n) fail("x has " + std::to_string(cols) + " columns; the layer's hidden size is " + std::to_string(l.problem.n));
        const auto* p = static_cast<const uint16_t*>(x.data());
        const std::vector<uint16_t> xv(p, p + rows * cols);
        const std::vector<float> logits = get(router_logits(*md.ck, l, xv));
        auto* buf = new std::vector<float>(logits);
        nb::capsule owner(buf, [](void* q) noexcept { delete static_cast<std::vector<float>*>(q); });
        const size_t shape[2] = {size_t(rows), size_t(l.problem.moe.experts)};
        return nb::ndarray<nb::numpy, float>(buf->data(), 2, shape, owner);
      }, "name"_a, "x"_a)
      .def("__repr__", [](const Model& md) {
        return "<mxq.Model " + md.path + " (" + md.info.format + ", " + std::to_string(md.info.weights.size()) + " MX weights)>";
      });

  // pipelines (outputs are written atomically by the library)
  m.def("quantize_model", [](const std::string& input, const std::string& output,
                             const std::string& scheme, const std::string& scale_rule,
                             const std::string& rounding, const std::string& activations,
                             const std::vector<std::string>& ignore, bool default_ignores,
                             bool overwrite, int threads, bool progress) {
    io::QuantizeModelOptions o;
    o.quant.elem = elem_of(scheme);
    o.quant.scale_rule = get(parse_scale_rule(scale_rule));
    o.quant.rounding = get(parse_rounding(rounding));
    o.quant.threads = threads;
    o.act = get(io::parse_act_scheme(activations));
    o.ignore = ignore;
    o.default_ignores = default_ignores;
    o.overwrite = overwrite;
    o.progress = progress;
    io::QuantizeReport r;
    {
      nb::gil_scoped_release nogil;
      r = get(io::quantize_model(input, output, o));
    }
    return report_dict(r);
  }, "input"_a, "output"_a, "scheme"_a = "mxfp4", "scale_rule"_a = "floor", "rounding"_a = "rne",
     "activations"_a = "none", "ignore"_a = std::vector<std::string>{}, "default_ignores"_a = true,
     "overwrite"_a = false, "threads"_a = 0, "progress"_a = false);
  m.def("convert_model", [](const std::string& input, const std::string& output, bool overwrite) {
    io::QuantizeReport r;
    {
      nb::gil_scoped_release nogil;
      r = get(io::convert_model(input, output, overwrite, false));
    }
    return report_dict(r);
  }, "input"_a, "output"_a, "overwrite"_a = false);
  m.def("dequantize_model", [](const std::string& input, const std::string& output,
                               const std::string& dtype, bool overwrite) {
    const DType d = get(parse_dtype(dtype));
    io::QuantizeReport r;
    {
      nb::gil_scoped_release nogil;
      r = get(io::dequantize_model(input, output, d, overwrite));
    }
    return report_dict(r);
  }, "input"_a, "output"_a, "dtype"_a = "bf16", "overwrite"_a = false);
  m.def("verify_model", [](const std::string& path, const std::string& against, int threads) {
    io::VerifyReport r;
    {
      nb::gil_scoped_release nogil;
      r = get(io::verify_model(path, against, threads));
    }
    std::vector<nb::dict> layers;
    for (const auto& l : r.layers) {
      nb::dict d;
      d["module"] = l.module;
      d["format"] = l.format;
      d["shape"] = l.shape;
      d["nan_blocks"] = l.nan_blocks;
      d["compared"] = l.compared;
      d["rel_error"] = l.rel_error;
      d["max_abs_error"] = l.max_abs_error;
      d["bit_exact"] = l.bit_exact < 0 ? nb::object(nb::none()) : nb::object(nb::bool_(l.bit_exact == 1));
      layers.push_back(d);
    }
    nb::dict d;
    d["path"] = path;
    d["format"] = r.info.format;
    d["layers"] = layers;
    d["problems"] = r.problems;
    d["ok"] = r.problems.empty();
    return d;
  }, "path"_a, "against"_a = "", "threads"_a = 0);
  m.def("write_sample_model", [](const std::string& outdir, bool overwrite) {
    nb::gil_scoped_release nogil;
    throw_if_error(io::write_sample_model(outdir, overwrite));
  }, "outdir"_a, "overwrite"_a = false);
}
