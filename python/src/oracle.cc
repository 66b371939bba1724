// mxq._core: problems, the backends, explain / select, and the backend choice of a prepared layer.
#include "oracle.h"

namespace mxq::py {

using namespace nb::literals;

DevKind backend_kind(const Backend* b) {
  return b->name().substr(0, 4) == "cuda" ? DevKind::kCUDA : DevKind::kCPU;
}

std::vector<std::string> backend_names() {
  std::vector<std::string> out;
  for (const Backend* b : backends()) out.emplace_back(b->name());
  return out;
}

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
    if (const Verdict v = b->check_problem(p); !v)
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
      if (v) v = b->check_problem(p);
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

DevKind parse_device(const std::string& d) {
  if (d == "cpu") return DevKind::kCPU;
  if (d == "cuda" || d.rfind("cuda:", 0) == 0) return DevKind::kCUDA;
  fail("device '" + d + "' (expected 'cpu' or 'cuda')");
}

namespace {

// Problems are built from strings in Python (mxq/_problem.py); fields are exposed as names.
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
      .def_prop_ro("act_rule", [](const Problem& p) { return std::string(scale_rule_name(p.act_rule)); })
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

}  // namespace

void bind_oracle(nb::module_& m) {
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
}

}  // namespace mxq::py
