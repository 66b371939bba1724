// mxq._core: problems, the backends, explain / select, and the backend choice of a prepared layer.
#include "oracle.h"

namespace mxq::py {

using namespace nb::literals;

DevKind backend_kind(const Backend* b) {
  return b->memory_kind() == MemoryKind::kCUDA ? DevKind::kCUDA : DevKind::kCPU;
}

MemoryKind memory_of(DevKind kind) {
  return kind == DevKind::kCUDA ? MemoryKind::kCUDA : MemoryKind::kCPU;
}

std::vector<std::string> backend_names() {
  std::vector<std::string> out;
  for (const Backend* b : backends()) out.emplace_back(b->name());
  return out;
}

// The C++ oracle (src/select, select_backend) over the backends taking `kind` arrays: its
// overrides (argument, then MXQ_LINEAR_BACKEND / MXQ_MOE_BACKEND), strict mode and the one-time
// fallback warning.
Choice choose(const Problem& p, DevKind kind, const std::string& override_backend, bool strict,
              bool use_env) {
  SelectOptions o;
  o.override_backend = override_backend;
  o.override_source = "override (backend=)";
  o.use_env = use_env;
  o.strict = strict;
  o.memory = memory_of(kind);
  const Selection sel = get(select_backend(p, this_device(), o));
  return {sel.backend, sel.how};
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
