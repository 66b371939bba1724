// mxq explain | run: which backend each problem or layer gets, and running layers on it.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "commands.h"
#include "mxq/numerics.h"
#include "mxq/pipeline.h"
#include "mxq/layers.h"
#include "mxq/select.h"

namespace mxq::cli {
namespace {

template <typename T>
T get(StatusOr<T> v) {
  return std::move(v).value();
}

// `act`: an explicit --act (overrides the checkpoint's activation scheme), or "" for its own.
int explain_model(const std::string& path, int64_t tokens, const SelectOptions& o,
                  const std::string& act) {
  const io::Checkpoint ck = get(io::Checkpoint::open(path));
  const io::ModelInfo info = get(io::read_model(ck));
  std::printf("model    %s (%s, %s)\n", path.c_str(), info.format.c_str(), info.scheme.c_str());
  std::string dev = this_device().to_string();
  for (size_t i = dev.find('\n'); i != std::string::npos && i + 1 < dev.size(); i = dev.find('\n', i + 1))
    dev.insert(i + 1, "         ");
  std::printf("device   %s", dev.c_str());
  std::printf("act      checkpoint: %s", io::act_scheme_name(info.act));
  if (info.act_scale_rule) std::printf(" (scale rule %s)", scale_rule_name(*info.act_scale_rule));
  const bool forced = !act.empty();
  const ActKey forced_act = forced ? get(parse_act_key(act)) : ActKey::kBF16;
  if (forced) std::printf("; override --act %s", act_key_name(forced_act));
  std::printf("\n");
  std::printf("%-40s %-7s %-14s %s\n", "layer", "op", "backend",
              "problem (weights x act key, shape); how; rejected backends");
  int rc = 0;
  for (LayerSpec l : get(model_layers(ck, info, tokens))) {
    if (forced) {
      l.problem.act = forced_act;
      l.problem.out = act_input_dtype(forced_act);
    }
    const auto sel = select_backend(l.problem, this_device(), o);
    std::string why;
    if (sel.ok()) {
      why = sel.value().how;
      for (const Candidate& c : sel.value().candidates)
        if (!c.eligible) why += "; " + std::string(c.backend->name()) + ": " + c.reason;
    } else {
      why = sel.status().message();
      rc = 1;
    }
    std::printf("%-40s %-7s %-14s %s; %s\n", l.name.c_str(), op_name(l.problem.op),
                sel.ok() ? std::string(sel.value().backend->name()).c_str() : "-",
                l.problem.to_string().c_str(), why.c_str());
  }
  return rc;
}

}  // namespace

Problem make_problem(const ProblemArgs& a) {
  const ElemType w = get(parse_elem_type(a.weights));
  const ActKey act = get(parse_act_key(a.act));
  Problem p = a.op == "moe" ? Problem::moe_problem(w, act, a.m, a.n, a.k, a.experts, a.topk)
                            : Problem::linear(w, act, a.m, a.n, a.k, a.bias);
  if (a.op != "linear" && a.op != "moe")
    throw Error(invalid_argument("--op " + a.op + " (expected linear or moe)"));
  p.bias = a.bias;
  if (!a.out.empty()) p.out = get(parse_dtype(a.out));
  if (p.op == Op::kMoE) {
    p.moe.activation = get(parse_moe_activation(a.activation));
    p.moe.layout = get(io::parse_gate_up_layout(a.layout));
    p.moe.routing = get(parse_routing(a.routing));
    p.moe.n_group = a.n_group;
    p.moe.topk_group = a.topk_group;
  }
  return p;
}

ProblemOptions add_problem_options(CLI::App* e, ProblemArgs& a) {
  ProblemOptions o;
  o.shape.push_back(e->add_option("--op", a.op, "linear | moe"));
  o.shape.push_back(e->add_option("--weights", a.weights, "mxfp4 | mxfp8 | mxfp8-e5m2 | mxfp6-e2m3 | ..."));
  o.act = e->add_option("--act", a.act, "bf16 | fp16 | fp8-static-tensor | fp8-dynamic-token | "
                                        "mxfp8-dynamic | mxfp4-dynamic | mxfp6-e2m3-dynamic | "
                                        "mxfp6-e3m2-dynamic (model: overrides the "
                                        "checkpoint's activation scheme)");
  o.shape.push_back(e->add_option("--out", a.out, "output dtype (default: the activations')"));
  o.shape.push_back(e->add_option("--m", a.m, "tokens"));
  o.shape.push_back(e->add_option("--n", a.n, "output features (MoE: hidden size)"));
  o.shape.push_back(e->add_option("--k", a.k, "input features (MoE: intermediate size)"));
  o.shape.push_back(e->add_option("--experts", a.experts, "MoE experts"));
  o.shape.push_back(e->add_option("--topk", a.topk, "MoE experts per token"));
  o.shape.push_back(e->add_option("--activation", a.activation, "MoE: silu | swigluoai"));
  o.shape.push_back(e->add_option("--layout", a.layout, "MoE gate/up: chunked | interleaved | separate"));
  o.shape.push_back(e->add_option("--routing", a.routing, "softmax-topk | topk-softmax | sigmoid-grouped-topk"));
  o.shape.push_back(e->add_option("--n-group", a.n_group, "grouped top-k: groups"));
  o.shape.push_back(e->add_option("--topk-group", a.topk_group, "grouped top-k: groups kept"));
  o.shape.push_back(e->add_flag("--bias", a.bias, "with bias"));
  return o;
}

void add_backend_commands(CLI::App& app) {
  static ProblemArgs a;
  static std::string model, backend;
  static bool strict = false;
  static int64_t tokens = 1;
  auto* e = app.add_subcommand("explain", "Which backend runs a problem (or each layer of a "
                                          "model) on this machine, and why");
  e->add_option("model", model, "model directory (instead of --op ...)");
  static CLI::Option* act_opt = nullptr;
  act_opt = add_problem_options(e, a).act;
  e->add_option("--tokens", tokens, "tokens per layer call (model mode)");
  e->add_option("--backend", backend, "force a backend (an override that cannot run is an error)");
  e->add_flag("--strict", strict, "a fallback to a reference backend is an error");
  e->callback([] {
    SelectOptions o;
    o.override_backend = backend;
    o.strict = strict;
    if (!model.empty()) {
      exit_code() = explain_model(model, tokens, o, act_opt->count() > 0 ? a.act : std::string());
      return;
    }
    const Problem p = make_problem(a);
    std::printf("%s", explain(p, this_device(), o).c_str());
    exit_code() = select_backend(p, this_device(), [&] {
                    SelectOptions q = o;
                    q.warn = false;
                    return q;
                  }()).ok() ? 0 : 1;
  });
  add_run_command(app);
  add_bench_command(app);
}

}  // namespace mxq::cli
