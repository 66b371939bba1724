// mxq sample | quantize | inspect | convert | verify: thin front ends over pipeline.h.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "mxq/layers.h"
#include "mxq/pipeline.h"

namespace mxq::cli {
namespace {

using nlohmann::json;

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string mib(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", double(b) / (1 << 20));
  return buf;
}

template <typename T>
T get(StatusOr<T> v) {
  return std::move(v).value();  // throws mxq::Error, printed by main()
}

void print_report(const char* what, const io::QuantizeReport& r, const std::string& out) {
  std::printf("%s -> %s: %lld tensors quantized, %lld copied, %s -> %s in %.2f s\n", what,
              out.c_str(), (long long)r.quantized, (long long)r.copied, mib(r.bytes_in).c_str(),
              mib(r.bytes_out).c_str(), r.seconds);
  if (!r.ignored.empty()) {
    std::printf("  left unquantized (ignore rules):");
    for (const auto& m : r.ignored) std::printf(" %s", m.c_str());
    std::printf("\n");
  }
}

int inspect(const std::string& path, bool as_json) {
  const io::Checkpoint ck = get(io::Checkpoint::open(path));
  const io::ModelInfo info = get(io::read_model(ck));
  uint64_t mx_bytes = 0, other_bytes = 0;
  for (const auto& w : info.weights) mx_bytes += w.bytes();
  for (const auto& n : info.passthrough) other_bytes += ck.find(n)->info->nbytes();
  // The layers backends run: one per 2-D weight, one MoE layer per block (per-expert tensors
  // assembled); a malformed expert set is an error here too.
  const std::vector<LayerSpec> layers = get(model_layers(ck, info, 1));
  if (as_json) {
    json j = {{"path", path},
              {"format", info.format},
              {"scheme", info.scheme},
              {"activations", io::act_scheme_name(info.act)},
              {"scale_rule", info.scale_rule ? json(scale_rule_name(*info.scale_rule)) : json()},
              {"ignored", info.ignored},
              {"mx_bytes", mx_bytes},
              {"other_bytes", other_bytes},
              {"passthrough", info.passthrough}};
    json ws = json::array();
    for (const auto& w : info.weights)
      ws.push_back({{"module", w.module},
                    {"format", mx_format_name(w.elem)},
                    {"shape", w.shape},
                    {"bytes", w.bytes()},
                    {"packed", w.packed_name},
                    {"scales", w.scale_name},
                    {"bias", w.bias_name},
                    {"gate_up_layout", io::gate_up_layout_name(w.gate_up)}});
    j["weights"] = ws;
    json ls = json::array();
    for (const LayerSpec& l : layers)
      ls.push_back({{"name", l.name},
                    {"op", op_name(l.problem.op)},
                    {"problem", l.problem.to_string()},
                    {"act", act_key_name(l.problem.act)},
                    {"weight", l.w->module},
                    {"up", l.w3 ? l.w3->module : ""},
                    {"down", l.w2 ? l.w2->module : ""},
                    {"router", l.router_weight}});
    j["layers"] = ls;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::printf("checkpoint  %s\n", path.c_str());
  std::printf("format      %s%s%s\n", info.format.c_str(), info.scheme.empty() ? "" : ", ",
              info.scheme.c_str());
  std::printf("activations %s\n", io::act_scheme_name(info.act));
  std::printf("scale rule  %s\n",
              info.scale_rule ? scale_rule_name(*info.scale_rule) : "(not recorded)");
  std::printf("MX weights  %zu\n", info.weights.size());
  if (!info.weights.empty()) {
    std::printf("  %-48s %-11s %-18s %12s  %s\n", "module", "format", "shape", "bytes", "layout");
    for (const auto& w : info.weights)
      std::printf("  %-48s %-11s %-18s %12llu  %s\n", w.module.c_str(), mx_format_name(w.elem),
                  shape_str(w.shape).c_str(), (unsigned long long)w.bytes(),
                  w.gate_up == io::GateUpLayout::kNone ? "" : io::gate_up_layout_name(w.gate_up));
  }
  std::printf("layers      %zu\n", layers.size());
  for (const LayerSpec& l : layers)
    std::printf("  %-48s %s\n", l.name.c_str(), l.problem.to_string().c_str());
  std::printf("ignored     %s\n", info.ignored.empty() ? "(none)" : "");
  for (const auto& m : info.ignored) std::printf("  %s\n", m.c_str());
  std::printf("other tensors %zu (%s)\n", info.passthrough.size(), mib(other_bytes).c_str());
  std::printf("total       MX %s + other %s = %s\n", mib(mx_bytes).c_str(),
              mib(other_bytes).c_str(), mib(mx_bytes + other_bytes).c_str());
  return 0;
}

int verify(const std::string& path, const std::string& against, bool as_json) {
  const io::VerifyReport r = get(io::verify_model(path, against));
  if (as_json) {
    json layers = json::array();
    for (const auto& l : r.layers)
      layers.push_back({{"module", l.module}, {"format", l.format}, {"shape", l.shape},
                        {"nan_blocks", l.nan_blocks}, {"compared", l.compared},
                        {"rel_error", l.rel_error}, {"max_abs_error", l.max_abs_error},
                        {"bit_exact", l.bit_exact < 0 ? json() : json(l.bit_exact == 1)}});
    std::cout << json{{"path", path}, {"format", r.info.format}, {"layers", layers},
                      {"problems", r.problems}, {"ok", r.problems.empty()}}
                     .dump(2)
              << "\n";
    return r.problems.empty() ? 0 : 2;
  }
  std::printf("verify %s (%s, %zu MX weights)%s%s\n", path.c_str(), r.info.format.c_str(),
              r.layers.size(), against.empty() ? "" : " against ", against.c_str());
  std::printf("  %-48s %-11s %10s %12s %9s\n", "module", "format", "rel.err", "max|err|",
              "bit-exact");
  for (const auto& l : r.layers) {
    char rel[32] = "-", mx[32] = "-";
    if (l.compared) {
      std::snprintf(rel, sizeof rel, "%.5f", l.rel_error);
      std::snprintf(mx, sizeof mx, "%.3g", l.max_abs_error);
    }
    std::printf("  %-48s %-11s %10s %12s %9s\n", l.module.c_str(), l.format.c_str(), rel, mx,
                l.bit_exact < 0 ? "-" : (l.bit_exact ? "yes" : "NO"));
  }
  if (r.problems.empty()) {
    std::printf("ok: every weight decodes, shapes match the config%s\n",
                against.empty() ? "" : ", errors above are vs the original");
    return 0;
  }
  for (const auto& p : r.problems) std::printf("problem: %s\n", p.c_str());
  return 2;
}

}  // namespace

void add_model_commands(CLI::App& app) {
  {
    static std::string out;
    static bool overwrite = false;
    auto* c = app.add_subcommand("sample", "Write the embedded deterministic BF16 sample model");
    c->add_option("outdir", out, "output directory")->required();
    c->add_flag("--overwrite", overwrite, "replace an existing output directory");
    c->callback([] {
      throw_if_error(io::write_sample_model(out, overwrite));
      std::printf("sample model written to %s\n", out.c_str());
    });
  }
  {
    static std::string in, out, scheme = "mxfp4", rule = "floor", rounding = "rne", act = "none";
    static std::vector<std::string> ignore;
    static std::string format = "compressed-tensors";
    static bool no_default_ignores = false, overwrite = false;
    static int threads = 0;
    auto* c = app.add_subcommand("quantize", "Quantize a BF16/FP16/FP32 model to an MX format");
    c->add_option("input", in, "safetensors file or model directory")->required();
    c->add_option("-o,--output", out, "output model directory")->required();
    c->add_option("--scheme", scheme, "mxfp4 | mxfp8 | mxfp8-e5m2 | mxfp6-e2m3 | mxfp6-e3m2 | mxint8");
    c->add_option("--scale-rule", rule, "floor | rceil | round_up | even | even_fp4_mantissa");
    c->add_option("--rounding", rounding, "element rounding: rne | half_away | toward_zero_ties");
    c->add_option("--activations", act, "recorded activation scheme: none | mxfp4 | mxfp8 | fp8-static | fp8-dynamic-group128 "
                  "(compressed-tensors' MXFP4XFP8)");
    c->add_option("--ignore", ignore, "module name or re:REGEX to leave unquantized (repeatable)");
    c->add_flag("--no-default-ignores", no_default_ignores,
                "also quantize embeddings, lm_head, norms and routers when eligible");
    c->add_option("--format", format, "output format (compressed-tensors)");
    c->add_option("--threads", threads, "worker threads (0 = all cores)");
    c->add_flag("--overwrite", overwrite, "replace an existing output directory");
    c->callback([] {
      if (format != "compressed-tensors")
        throw Error(invalid_argument("--format " + format + ": only compressed-tensors is written"));
      io::QuantizeModelOptions o;
      o.quant.elem = get(parse_elem_type(scheme));
      o.quant.scale_rule = get(parse_scale_rule(rule));
      o.quant.rounding = get(parse_rounding(rounding));
      o.quant.threads = threads;
      o.act = get(io::parse_act_scheme(act));
      if (o.act == io::ActScheme::kFp8Dynamic || o.act == io::ActScheme::kFp8DynamicTensor)
        throw Error(invalid_argument(std::string("--activations ") + io::act_scheme_name(o.act) +
                                     " is not a compressed-tensors MX preset"));
      o.ignore = ignore;
      o.default_ignores = !no_default_ignores;
      o.progress = ::isatty(2) != 0;
      o.overwrite = overwrite;
      print_report("quantize", get(io::quantize_model(in, out, o)), out);
    });
  }
  {
    static std::string path;
    static bool as_json = false;
    auto* c = app.add_subcommand("inspect", "Describe an MX (or dense) checkpoint");
    c->add_option("path", path, "safetensors file or model directory")->required();
    c->add_flag("--json", as_json, "machine-readable output");
    c->callback([] { exit_code() = inspect(path, as_json); });
  }
  {
    static std::string in, out, to = "compressed-tensors";
    static bool overwrite = false;
    auto* c = app.add_subcommand("convert", "Losslessly convert an MX checkpoint's format");
    c->add_option("input", in, "gpt-oss / Quark / ModelOpt / DeepSeek / compressed-tensors model")
        ->required();
    c->add_option("-o,--output", out, "output model directory")->required();
    c->add_option("--to", to, "target format (compressed-tensors)");
    c->add_flag("--overwrite", overwrite, "replace an existing output directory");
    c->callback([] {
      if (to != "compressed-tensors")
        throw Error(invalid_argument("--to " + to + ": only compressed-tensors is written"));
      print_report("convert", get(io::convert_model(in, out, overwrite, ::isatty(2) != 0)), out);
    });
  }
  {
    static std::string in, out, dtype = "bf16";
    static bool overwrite = false;
    auto* c = app.add_subcommand("dequantize", "Decode an MX checkpoint to a dense model");
    c->add_option("input", in, "MX model directory or safetensors file")->required();
    c->add_option("-o,--output", out, "output model directory")->required();
    c->add_option("--dtype", dtype, "bf16 | f16 | f32");
    c->add_flag("--overwrite", overwrite, "replace an existing output directory");
    c->callback([] {
      print_report("dequantize", get(io::dequantize_model(in, out, get(parse_dtype(dtype)), overwrite)),
                   out);
    });
  }
  {
    static std::string path, against;
    static bool as_json = false;
    auto* c = app.add_subcommand("verify", "Decode every MX weight and check the checkpoint");
    c->add_option("path", path, "MX model directory or safetensors file")->required();
    c->add_option("--against", against, "the original dense model, for per-layer error");
    c->add_flag("--json", as_json, "machine-readable output");
    c->callback([] { exit_code() = verify(path, against, as_json); });
  }
}

}  // namespace mxq::cli
