// mxq._core: the Linear and MoE layer classes.
#include "core.h"
#include "layers.h"

namespace mxq::py {
namespace {

using namespace nb::literals;

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
        o.override_source = "override (backend=)";
        o.strict = l.strict;
        o.use_env = l.use_env;
        o.warn = false;
        Problem p = l.problem;
        if (m > 0) p.m = m;
        return explain(p, this_device(), o);
      }, "m"_a = 0);
}

}  // namespace

void bind_layers(nb::module_& m) {
  // layers
  auto lin = nb::class_<Linear>(m, "Linear");
  lin.def("__init__", [](Linear* self, const Problem& p, const Array& packed, const Array& scales,
                         const std::optional<Array>& bias, float input_scale, nb::list keep,
                         const std::string& backend, bool strict, bool use_env) {
        new (self) Linear();
        if (p.op != Op::kLinear) fail("Linear needs a linear problem, got " + p.to_string());
        self->problem = p;
        self->w.w = weight_view(packed, scales, p.weight, 1, "weight");
        // A bias given iff the problem has one: checked by the entry (Backend::prepare_linear,
        // contract::check_linear_weights), as for MoE.
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
        // With an expert map (expert parallelism) the weights hold this rank's local experts
        // (w2's first dimension; the contract checks 1..E), else all E.
        const int64_t e = p.moe.expert_map && w2p.ndim() >= 1 ? int64_t(w2p.shape(0)) : p.moe.experts;
        const int64_t h = p.n, i = p.k;
        if (p.moe.layout == io::GateUpLayout::kSeparate) {
          if (!w1p || !w1s || !w3p || !w3s) fail("layout 'separate' needs w1 and w3 (gate, up) packed and scales");
          self->w.w1 = weight_view(*w1p, *w1s, p.weight, e, "w1");
          self->w.w3 = weight_view(*w3p, *w3s, p.weight, e, "w3");
          self->w.bias1 = dense_host(b1, "bias1", e, i);
          self->w.bias3 = dense_host(b3, "bias3", e, i);
        } else {
          if (!w13p || !w13s) fail("layout '" + std::string(io::gate_up_layout_name(p.moe.layout)) + "' needs w13 (fused gate/up) packed and scales");
          self->w.w13 = weight_view(*w13p, *w13s, p.weight, e, "w13");
          self->w.bias13 = dense_host(b13, "bias13", e, 2 * i);
        }
        self->w.w2 = weight_view(w2p, w2s, p.weight, e, "w2");
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

}

}  // namespace mxq::py
