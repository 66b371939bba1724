// mxq._core: checkpoints (tensors, model layers) and the pipelines.
#include "core.h"
#include "layers.h"
#include "mxq/shard.h"

namespace mxq::py {
namespace {

using namespace nb::literals;

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

void bind_checkpoints(nb::module_& m) {
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
          d["up"] = l.w3 ? l.w3->module : std::string();  // layout separate: w = gate
          d["correction_bias"] = l.correction_bias;
          d["act"] = std::string(act_key_name(l.problem.act));
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
        LayerSpec l = find_layer(md, name, tokens);
        if (l.problem.op != Op::kLinear) fail("layer '" + name + "' is an MoE layer; use Model.moe");
        if (!act.empty()) l.problem.act = get(parse_act_key(act));  // "": the checkpoint's
        auto lin_ = std::make_unique<Linear>();
        lin_->problem = l.problem;
        lin_->problem.out = out ? get(parse_dtype(*out)) : act_input_dtype(lin_->problem.act);
        lin_->w = get(linear_weights(*md.ck, l));  // with the static input_scale when present
        lin_->keep.push_back(nb::borrow(self));
        configure(*lin_, backend, strict, use_env);
        return lin_;
      }, "name"_a, "act"_a = "", "out"_a = nb::none(), "tokens"_a = 1, "backend"_a = "",
         "strict"_a = false, "use_env"_a = true)
      .def("moe", [](nb::handle self, const std::string& name, const std::string& act,
                     const std::optional<std::string>& out, int64_t tokens,
                     const std::string& backend, bool strict, bool use_env) {
        const Model& md = nb::cast<const Model&>(self);
        LayerSpec l = find_layer(md, name, tokens);
        if (l.problem.op != Op::kMoE) fail("layer '" + name + "' is a linear layer; use Model.linear");
        if (!act.empty()) l.problem.act = get(parse_act_key(act));  // "": the checkpoint's
        auto moe_ = std::make_unique<MoE>();
        moe_->problem = l.problem;
        moe_->problem.out = out ? get(parse_dtype(*out)) : act_input_dtype(moe_->problem.act);
        moe_->w = get(moe_weights(*md.ck, l));
        moe_->hold = l.assembled;
        moe_->keep.push_back(nb::borrow(self));
        configure(*moe_, backend, strict, use_env);
        return moe_;
      }, "name"_a, "act"_a = "", "out"_a = nb::none(), "tokens"_a = 1, "backend"_a = "",
         "strict"_a = false, "use_env"_a = true)
      // One rank's shard of a checkpoint layer (include/mxq/shard.h), prepared like
      // Model.linear / Model.moe: (layer, info) with info the ranges, bytes and describe().
      .def("linear_shard", [](nb::handle self, const std::string& name, const std::string& how,
                              int rank, int ranks, const std::string& act,
                              const std::optional<std::string>& out, int64_t tokens,
                              const std::string& backend, bool strict, bool use_env) {
        const Model& md = nb::cast<const Model&>(self);
        LayerSpec l = find_layer(md, name, tokens);
        if (l.problem.op != Op::kLinear) fail("layer '" + name + "' is an MoE layer; use Model.moe_shard");
        LinearParallel par;
        if (how == "column") par = LinearParallel::kColumn;
        else if (how == "row") par = LinearParallel::kRow;
        else fail("linear_shard: how must be 'column' or 'row', got '" + how + "'");
        if (!act.empty()) l.problem.act = get(parse_act_key(act));
        l.problem.out = out ? get(parse_dtype(*out)) : act_input_dtype(l.problem.act);
        const LinearWeights w = get(linear_weights(*md.ck, l));
        auto shard = std::make_shared<LinearShard>(get(shard_linear(l.problem, w, par, {rank, ranks})));
        auto lin_ = std::make_unique<Linear>();
        lin_->problem = shard->problem;
        lin_->w = shard->weights;
        lin_->hold = shard;
        lin_->keep.push_back(nb::borrow(self));
        configure(*lin_, backend, strict, use_env);
        nb::dict d;
        d["n0"] = shard->n0, d["n1"] = shard->n1, d["k0"] = shard->k0, d["k1"] = shard->k1;
        d["n"] = l.problem.n, d["k"] = l.problem.k;
        d["bias"] = l.problem.bias;
        d["zero_copy"] = shard->zero_copy;
        d["bytes"] = shard->bytes();
        d["describe"] = shard->describe(l.problem.n, l.problem.k);
        return nb::make_tuple(nb::cast(lin_.release(), nb::rv_policy::take_ownership), d);
      }, "name"_a, "how"_a, "rank"_a, "ranks"_a, "act"_a = "", "out"_a = nb::none(),
         "tokens"_a = 1, "backend"_a = "", "strict"_a = false, "use_env"_a = true)
      .def("moe_shard", [](nb::handle self, const std::string& name, const std::string& how,
                           int rank, int ranks, const std::string& act,
                           const std::optional<std::string>& out, int64_t tokens,
                           const std::string& backend, bool strict, bool use_env) {
        const Model& md = nb::cast<const Model&>(self);
        LayerSpec l = find_layer(md, name, tokens);
        if (l.problem.op != Op::kMoE) fail("layer '" + name + "' is a linear layer; use Model.linear_shard");
        MoEParallel par;
        if (how == "expert") par = MoEParallel::kExpert;
        else if (how == "tensor") par = MoEParallel::kTensor;
        else fail("moe_shard: how must be 'expert' or 'tensor', got '" + how + "'");
        if (!act.empty()) l.problem.act = get(parse_act_key(act));
        l.problem.out = out ? get(parse_dtype(*out)) : act_input_dtype(l.problem.act);
        const MoEWeights w = get(moe_weights(*md.ck, l));
        // The shard's views point into the assembled experts (expert parallel) or its own copies.
        struct Held {
          std::shared_ptr<AssembledExperts> assembled;
          MoEShard shard;
        };
        auto held = std::make_shared<Held>(Held{l.assembled, get(shard_moe(l.problem, w, par, {rank, ranks}))});
        const MoEShard& s = held->shard;
        auto moe_ = std::make_unique<MoE>();
        moe_->problem = s.problem;
        moe_->w = s.weights;
        moe_->hold = held;
        moe_->keep.push_back(nb::borrow(self));
        configure(*moe_, backend, strict, use_env);
        nb::dict d;
        d["e0"] = s.e0, d["e1"] = s.e1, d["i0"] = s.i0, d["i1"] = s.i1;
        d["experts"] = l.problem.moe.experts, d["inter"] = l.problem.k;
        d["zero_copy"] = s.zero_copy;
        d["bytes"] = s.bytes();
        d["describe"] = s.describe(l.problem.moe.experts, l.problem.k);
        d["expert_map"] = s.expert_map;  // [] for tensor parallel
        return nb::make_tuple(nb::cast(moe_.release(), nb::rv_policy::take_ownership), d);
      }, "name"_a, "how"_a, "rank"_a, "ranks"_a, "act"_a = "", "out"_a = nb::none(),
         "tokens"_a = 1, "backend"_a = "", "strict"_a = false, "use_env"_a = true)
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

}  // namespace mxq::py
