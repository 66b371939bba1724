// mxq explain | run: which backend each problem or layer gets, and running layers on it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "commands.h"
#include "contract/fp8_fold.h"
#include "mxq/numerics.h"
#include "mxq/pipeline.h"
#include "mxq/layers.h"
#include "mxq/select.h"
#include "mxq/shard.h"

namespace mxq::cli {
namespace {

template <typename T>
T get(StatusOr<T> v) {
  return std::move(v).value();
}

// --tp / --ep / --rank / --row-parallel of `explain MODEL`: each rank's shard of every layer,
// as the C++ sharding (include/mxq/shard.h) computes it.
struct ShardArgs {
  int tp = 1, ep = 1, rank = -1;  // rank -1: every rank
  std::string row_parallel = "o_proj,down_proj,out_proj,wo,w2";
  bool any() const { return tp > 1 || ep > 1; }
};

// Whether linear module `name` splits K (row parallel): its last dotted component is one of
// the comma-separated `list`; every other linear layer splits N (column parallel).
bool is_row_parallel(const std::string& name, const std::string& list) {
  const size_t dot = name.rfind('.');
  const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    if (list.compare(start, comma - start, leaf) == 0 && comma - start == leaf.size()) return true;
    start = comma + 1;
  }
  return false;
}

// The backend the oracle picks for a shard's problem ("-" with the reason when none).
std::string shard_backend(const Problem& p, const SelectOptions& o) {
  SelectOptions q = o;
  q.warn = false;
  const auto sel = select_backend(p, this_device(), q);
  return sel.ok() ? std::string(sel.value().backend->name()) : "- (" + sel.status().message() + ")";
}

// Prints "  shard <describe>; backend <name>" for each selected rank of layer `l`; returns
// false (after printing "  shard error: ...") when the split is refused.
bool print_shards(const io::Checkpoint& ck, const LayerSpec& l, const ShardArgs& sa,
                  const SelectOptions& o) {
  if (l.problem.op == Op::kLinear) {
    if (sa.tp <= 1) return true;
    const LinearParallel how = is_row_parallel(l.name, sa.row_parallel) ? LinearParallel::kRow
                                                                        : LinearParallel::kColumn;
    const LinearWeights w = get(linear_weights(ck, l));
    for (int r = 0; r < sa.tp; ++r) {
      if (sa.rank >= 0 && r != sa.rank) continue;
      auto s = shard_linear(l.problem, w, how, {r, sa.tp});
      if (!s.ok()) {
        std::printf("  shard error: %s\n", s.status().message().c_str());
        return false;
      }
      std::printf("  shard %s; backend %s\n", s.value().describe(l.problem.n, l.problem.k).c_str(),
                  shard_backend(s.value().problem, o).c_str());
    }
    return true;
  }
  const int ranks = sa.ep > 1 ? sa.ep : sa.tp;
  if (ranks <= 1) return true;
  const MoEParallel how = sa.ep > 1 ? MoEParallel::kExpert : MoEParallel::kTensor;
  const MoEWeights w = get(moe_weights(ck, l));
  for (int r = 0; r < ranks; ++r) {
    if (sa.rank >= 0 && r != sa.rank) continue;
    auto s = shard_moe(l.problem, w, how, {r, ranks});
    if (!s.ok()) {
      std::printf("  shard error: %s\n", s.status().message().c_str());
      return false;
    }
    std::printf("  shard %s; backend %s\n",
                s.value().describe(l.problem.moe.experts, l.problem.k).c_str(),
                shard_backend(s.value().problem, o).c_str());
  }
  return true;
}

// `act`: an explicit --act (overrides the checkpoint's activation scheme), or "" for its own.
// For an FP8 activation key: how many of the layer's weight rows fold into exact E4M3 operands
// (src/contract/fp8_fold.h), the rows the FP8 tensor-core path can take; the rest need
// per-32-block promotion. Reads the layer's weights (MX formats whose elements E4M3 can hold).
void print_fp8_fold(const io::Checkpoint& ck, const LayerSpec& l) {
  if (l.problem.act != ActKey::kFP8StaticTensor && l.problem.act != ActKey::kFP8DynamicToken) return;
  if (l.problem.weight != ElemType::kE2M1 && l.problem.weight != ElemType::kE4M3) return;
  std::vector<MXWeightView> views;
  if (l.problem.op == Op::kLinear) {
    auto lw = linear_weights(ck, l);
    if (!lw.ok()) {
      std::printf("  fp8 fold: not counted: %s\n", lw.status().message().c_str());
      return;
    }
    views.push_back(lw.value().w);
  } else {
    auto mw = moe_weights(ck, l);
    if (!mw.ok()) {
      std::printf("  fp8 fold: not counted: %s\n", mw.status().message().c_str());
      return;
    }
    for (const MXWeightView* v : {&mw.value().w13, &mw.value().w1, &mw.value().w3, &mw.value().w2})
      if (v->packed != nullptr) views.push_back(*v);
  }
  contract::Fp8FoldStats total;
  for (const MXWeightView& v : views) {
    auto st = contract::fp8_fold_stats(v);
    if (!st.ok()) {
      std::printf("  fp8 fold: %s\n", st.status().message().c_str());
      return;
    }
    total.rows += st.value().rows;
    total.folded += st.value().folded;
  }
  std::printf("  fp8 fold: %s (rows that fold run as exact E4M3 operands on the FP8 tensor "
              "cores; the FP8 wgmma path is issue 17, not built yet)\n", total.summary().c_str());
}

int explain_model(const std::string& path, int64_t tokens, const SelectOptions& o,
                  const std::string& act, const ShardArgs& sa) {
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
  if (sa.any())
    std::printf("shards   --tp %d (linear: row parallel for %s, column for the rest%s), --ep %d%s\n",
                sa.tp, sa.row_parallel.c_str(), sa.ep > 1 ? "" : "; MoE: tensor parallel", sa.ep,
                sa.rank >= 0 ? (", rank " + std::to_string(sa.rank)).c_str() : ", every rank");
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
    print_fp8_fold(ck, l);
    if (sa.any() && !print_shards(ck, l, sa, o)) rc = 1;
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
                                        "fp8-dynamic-tensor | fp8-dynamic-group128 | mxfp8-dynamic | mxfp4-dynamic | "
                                        "mxfp6-e2m3-dynamic | mxfp6-e3m2-dynamic (model: overrides the "
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
  static ShardArgs sa;
  e->add_option("--tp", sa.tp, "model: each rank's shard of every linear layer (and of MoE "
                               "layers without --ep: their intermediate split) for tensor "
                               "parallelism over N ranks")->check(CLI::PositiveNumber);
  e->add_option("--ep", sa.ep, "model: each rank's experts of every MoE layer for expert "
                               "parallelism over N ranks")->check(CLI::PositiveNumber);
  e->add_option("--rank", sa.rank, "with --tp / --ep: print this rank's shards only")
      ->check(CLI::NonNegativeNumber);
  e->add_option("--row-parallel", sa.row_parallel,
                "with --tp: comma-separated last name components of the linear layers split "
                "along K (the rest split N)");
  e->callback([] {
    SelectOptions o;
    o.override_backend = backend;
    o.strict = strict;
    if (sa.rank >= 0 && sa.rank >= std::max(sa.tp, sa.ep))
      throw Error(invalid_argument("--rank " + std::to_string(sa.rank) + " is not a rank of --tp " +
                                   std::to_string(sa.tp) + " / --ep " + std::to_string(sa.ep)));
    if (!model.empty()) {
      exit_code() = explain_model(model, tokens, o, act_opt->count() > 0 ? a.act : std::string(), sa);
      return;
    }
    if (sa.any())
      throw Error(invalid_argument("--tp / --ep print the shards of a model's layers: give a "
                                   "model directory (a problem has no weights to split)"));
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
